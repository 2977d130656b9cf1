"""A live ``ferry api`` for the contract tests: uvicorn over real HTTP, a real Redis database of
its own (no worker consumes it, so submitted jobs stay queued), ``[files] roots`` holding a file
every kind accepts, and one bearer token."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from producers.client import Ferry
from producers.config import load_config
from producers.embedded import RedisLocation
from tests.fixtures.api import LiveApi
from tests.fixtures.worker import write_config
from tests.integration.helpers import png

TOKEN = "contract-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CONTRACT_DB = 9  # other tests use 0 and 3-6
MAX_BODY = 64_000


@dataclass
class ContractApi:
    url: str
    root: Path
    ferry: Ferry

    def example_jobs(self) -> dict[str, dict[str, Any]]:
        """One valid POST /jobs body per kind."""
        logo, doc, jar = (str(self.root / n) for n in ("logo.png", "doc.pdf", "app-1.0.jar"))
        target = {"type": "project", "owner": "10000"}
        return {
            "assets-avatar": {"connection": "acme", "file": logo,
                              "params": {"object_type": 7, "object": "12"}},
            "assets-attachment": {"connection": "acme", "file": doc,
                                  "params": {"object": "88", "comment": "scan"}},
            "jira-avatar": {"connection": "acme", "file": logo,
                            "params": {**target, "size": 32, "set_current": True}},
            "jira-avatar-delete": {"connection": "acme", "params": {**target, "avatar": "10100"}},
            "marketplace-artifact": {"connection": "marketplace", "file": jar},
            "marketplace-image": {"connection": "marketplace", "file": logo,
                                  "params": {"image_type": "logo"}},
            "marketplace-asset-delete": {"connection": "marketplace",
                                         "params": {"asset": "images/abc.png"}},
            "awork-image": {"connection": "awork", "file": logo,
                            "params": {"entity": "users", "id": "u-1"}},
            "awork-image-delete": {"connection": "awork", "params": {"entity": "users", "id": "u-1"}},
        }


def files_root(root: Path) -> Path:
    png(root / "logo.png")
    (root / "doc.pdf").write_bytes(b"%PDF-1.4\n" + b"x" * 2000 + b"\n%%EOF\n")
    jar = io.BytesIO()
    with zipfile.ZipFile(jar, "w") as archive:
        archive.writestr("atlassian-plugin.xml", "<atlassian-plugin key='x'/>")
    (root / "app-1.0.jar").write_bytes(jar.getvalue())
    return root


@pytest.fixture(scope="module")
def contract_api(tmp_path_factory: pytest.TempPathFactory,
                 redis_location: RedisLocation) -> Iterator[ContractApi]:
    home = tmp_path_factory.mktemp("contract")
    root = files_root(tmp_path_factory.mktemp("contract-files"))
    config = write_config(home / "ferry.toml", "http://127.0.0.1:9", "ferry@example.com")
    with config.open("a") as fh:
        fh.write(f"\n[files]\nroots = [{json.dumps(str(root))}]\n\n[api]\nmax_body_bytes = {MAX_BODY}\n")
    socket = Path(urlsplit(redis_location.url).path)
    ferry = Ferry(RedisLocation.from_socket(socket, CONTRACT_DB).url, config=load_config(config))
    ferry.redis.flushdb()
    with LiveApi(ferry, tokens=[TOKEN]) as server:
        yield ContractApi(server.url, root, ferry)
    ferry.redis.flushdb()
    ferry.close()
