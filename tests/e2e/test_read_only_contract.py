"""A token with only the ``read`` scope changes nothing, whatever it sends: schemathesis generates
requests for every operation of the document (boundary, invalid and random ones) with that token
and finds no 2xx answer to a request that would change state (``read_only_check.py``), no server
error, and only documented statuses. The same check, run with a full-access token against one
state-changing operation, does find one: it is not vacuous."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from producers.client import Ferry
from producers.config import load_config
from producers.embedded import RedisLocation
from tests.e2e.conftest import MAX_BODY, files_root
from tests.fixtures.api import LiveApi
from tests.fixtures.worker import write_config

READ_ONLY, FULL = "reader-contract-token", "full-contract-token"
READ_ONLY_DB = 12  # other tests use 0, 3-6 and 9-11
SEED = 20_261
EXAMPLES = 5  # per operation and phase: a few hundred requests in all
REPO = Path(__file__).resolve().parents[2]
NOT_FUZZED = ("/events", "/readyz")  # a stream never ends; /readyz is 503 with no worker


@pytest.fixture(scope="module")
def reader_api(tmp_path_factory: pytest.TempPathFactory, redis_location: RedisLocation) -> Iterator[str]:
    home = tmp_path_factory.mktemp("reader")
    root = files_root(tmp_path_factory.mktemp("reader-files"))
    config = write_config(home / "ferry.toml", "http://127.0.0.1:9", "ferry@example.com")
    with config.open("a") as fh:
        fh.write(f"\n[files]\nroots = [{json.dumps(str(root))}]\n\n[api]\nmax_body_bytes = {MAX_BODY}\n"
                 '\n[api.tokens.reader]\ntoken_env = "FERRY_TEST_READER"\nscopes = ["read"]\n'
                 '\n[api.tokens.all]\ntoken_env = "FERRY_TEST_ALL"\n'
                 'scopes = ["read", "submit", "operate", "admin"]\n')
    socket = Path(urlsplit(redis_location.url).path)
    ferry = Ferry(RedisLocation.from_socket(socket, READ_ONLY_DB).url, config=load_config(config))
    ferry.redis.flushdb()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FERRY_TEST_READER", READ_ONLY)
        mp.setenv("FERRY_TEST_ALL", FULL)
        with LiveApi(ferry) as server:
            yield server.url
    ferry.redis.flushdb()
    ferry.close()


def document(url: str, token: str) -> dict[str, Any]:
    served = requests.get(f"{url}/openapi.json", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert served.status_code == 200, served.text
    return dict(served.json())


def fuzz(url: str, token: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(document(url, token)))
    st = Path(sys.executable).with_name("st")
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.e2e.read_only_check",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        [str(st), "--no-color", "run", str(path), "--url", url, "--header", f"Authorization: Bearer {token}",
         "--checks", "not_a_server_error,status_code_conformance,no_change_by_a_reader",
         "--seed", str(SEED), "--max-examples", str(EXAMPLES), "--workers", "2",
         "--phases", "examples,coverage,fuzzing", "--request-timeout", "20",
         *(arg for p in NOT_FUZZED for arg in ("--exclude-path", p)), *extra],
        capture_output=True, text=True, timeout=240, cwd=tmp_path, env=env)


def test_a_read_only_token_gets_no_2xx_on_any_route_that_changes_state(reader_api, tmp_path):
    run = fuzz(reader_api, READ_ONLY, tmp_path)
    assert run.returncode == 0, run.stdout[-12_000:] + run.stderr[-3000:]
    paths = document(reader_api, READ_ONLY)["paths"]
    operations = sum(len(item) for path, item in paths.items() if path not in NOT_FUZZED)
    changing = [m for path, item in paths.items() for m in item if m not in ("get", "head", "options")]
    assert f"Tested: {operations}" in run.stdout and len(changing) >= 10, run.stdout[-3000:]


def test_the_check_finds_a_change_made_with_a_full_access_token(reader_api, tmp_path):
    run = fuzz(reader_api, FULL, tmp_path, "--include-path", "/jobs:purge")
    assert run.returncode != 0 and "answered 200 to a read-only token" in run.stdout, run.stdout[-3000:]
