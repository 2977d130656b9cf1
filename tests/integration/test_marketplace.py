"""Marketplace assets end to end: artifacts (file and --uri), images, deletes, and the reads."""

from __future__ import annotations

import threading
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.integration.helpers import job_json, png, read_json, sha256, uploads_with


def jar(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("atlassian-plugin.xml", "<atlassian-plugin key='ferry.test'/>")
        archive.writestr("ferry/Plugin.class", bytes(range(256)) * 20)
    return path


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server for tmp_path; yields its URL and the User-Agent of every GET."""
    agents: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def do_GET(self) -> None:
            agents.append(self.headers.get("User-Agent", ""))
            super().do_GET()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", agents
    server.shutdown()
    server.server_close()


def stored(sandbox: Any, name: str) -> dict[str, Any] | None:
    return next((a for a in sandbox.assets() if a["name"] == name), None)


def test_artifact_upload_returns_the_link_for_the_app_version(ferry_env, ferry, sandbox, tmp_path):
    artifact = jar(tmp_path / "ferry-plugin-1.0.jar")
    code, job = job_json(ferry_env, "marketplace-artifact", "-c", "marketplace", str(artifact))
    assert code == 0, job
    result = job["result"]
    assert result["asset_name"].startswith("artifacts/") and "%2F" in result["asset_link"]
    assert result["logical_file_name"] == "ferry-plugin-1.0.jar"
    assert result["size"] == artifact.stat().st_size and result["fetched_from"] is None
    assert uploads_with(sandbox, sha256(artifact))
    assert stored(sandbox, result["asset_name"]) is not None


def test_artifact_by_uri_is_fetched_by_marketplace_not_the_worker(ferry_env, ferry, sandbox, tmp_path,
                                                                  file_server):
    url, agents = file_server
    artifact = jar(tmp_path / "remote-plugin.obr")
    code, job = job_json(ferry_env, "marketplace-artifact", "-c", "marketplace",
                         "--uri", f"{url}/remote-plugin.obr")
    assert code == 0, job
    assert job["result"]["fetched_from"] == f"{url}/remote-plugin.obr"
    assert uploads_with(sandbox, sha256(artifact))
    assert len(agents) == 1 and "requests" not in agents[0], agents  # only the sandbox fetched it


def test_artifact_that_is_not_an_archive_fails_with_marketplaces_message(ferry_env, ferry, sandbox,
                                                                         tmp_path):
    fake = tmp_path / "fake.jar"
    fake.write_text("not a zip")
    code, job = job_json(ferry_env, "marketplace-artifact", "-c", "marketplace", str(fake))
    assert code == 1
    assert job["error"]["step"] == "upload_artifact" and job["error"]["status"] == 400
    assert "Artifact 'fake.jar' is not a valid jar archive" in job["error"]["message"]


def test_image_upload_and_an_image_type_marketplace_refuses(ferry_env, ferry, sandbox, tmp_path):
    logo = png(tmp_path / "logo.png", (144, 144))
    code, job = job_json(ferry_env, "marketplace-image", "-c", "marketplace", "--image-type", "logo",
                         str(logo))
    assert code == 0, job
    assert job["result"]["asset_name"].startswith("images/") and job["result"]["image_type"] == "logo"
    received = uploads_with(sandbox, sha256(logo))
    assert len(received) == 1 and received[0]["filename"] == "logo.png"

    sandbox.configure(marketplace_image_types=["logo"])  # a type we declare but this host refuses
    code, job = job_json(ferry_env, "marketplace-image", "-c", "marketplace", "--image-type", "banner",
                         str(logo))
    assert code == 1
    assert job["error"]["step"] == "upload_image" and job["error"]["status"] == 400
    assert "Unknown image type 'banner'" in job["error"]["message"]


def test_delete_asset_by_name_or_link_and_refusal_while_in_use(ferry_env, ferry, sandbox, tmp_path):
    names = []
    for n in range(3):
        _, job = job_json(ferry_env, "marketplace-image", "-c", "marketplace", "--image-type", "screenshot",
                          str(png(tmp_path / f"i{n}.png", (16, 16), ("red", "blue", "green")[n])))
        names.append((job["result"]["asset_name"], job["result"]["asset_link"]))

    code, job = job_json(ferry_env, "marketplace-asset-delete", "-c", "marketplace", "--asset", names[0][0])
    assert code == 0, job
    assert stored(sandbox, names[0][0]) is None
    code, job = job_json(ferry_env, "marketplace-asset-delete", "-c", "marketplace", "--asset", names[1][1])
    assert code == 0, job
    assert stored(sandbox, names[1][0]) is None

    sandbox.mark_asset_used(names[2][0])
    code, job = job_json(ferry_env, "marketplace-asset-delete", "-c", "marketplace", "--asset", names[2][0])
    assert code == 1
    assert job["error"]["step"] == "delete_asset" and job["error"]["status"] == 409
    assert "The asset is in use by another resource" in job["error"]["message"]
    assert stored(sandbox, names[2][0]) is not None


def test_reads_return_what_the_sandbox_holds(ferry_env, ferry, sandbox, tmp_path):
    links = read_json(ferry_env, "marketplace", "links")["_links"]
    assert {"self", "artifact", "fetchArtifact", "imageByType"} <= set(links)
    assert "{imageType}" in links["imageByType"]["template"]

    artifact = jar(tmp_path / "read-me.jar")
    _, job = job_json(ferry_env, "marketplace-artifact", "-c", "marketplace", str(artifact))
    name, link = job["result"]["asset_name"], job["result"]["asset_link"]
    for ref in (name, link):
        found = read_json(ferry_env, "marketplace", "asset", ref)
        assert found["_links"]["self"]["href"] == link
        assert found["fileInfo"] == {"logicalFileName": "read-me.jar", "size": artifact.stat().st_size}

    missing = ferry_env.cli("marketplace", "asset", "images/nope.png")
    assert missing.returncode == 1 and "Asset 'images/nope.png' not found" in missing.stderr
