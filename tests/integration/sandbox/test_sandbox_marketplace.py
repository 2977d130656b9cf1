"""Marketplace v2 assets: links, artifacts (upload + fetch), images, %2F names, delete rules."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from sandbox.testing import SandboxControl
from tests.integration.sandbox.util import image_bytes, jar_bytes, sha256

ASSETS = "/rest/2/assets"


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[str]:
    """A tiny loopback HTTP server serving tmp_path."""
    (tmp_path / "plugin.jar").write_bytes(jar_bytes())

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_asset_links(sandbox: SandboxControl) -> None:
    links = requests.get(f"{sandbox.url}{ASSETS}", timeout=5).json()["_links"]
    assert {"self", "artifact", "fetchArtifact", "imageByType"} <= set(links)
    assert "{imageType}" in links["imageByType"]["template"]


def test_artifact_upload_and_encoded_slash_names(sandbox: SandboxControl) -> None:
    response = requests.post(
        f"{sandbox.url}{ASSETS}/artifact",
        files={"file": ("my-plugin.jar", jar_bytes(), "application/java-archive")},
        auth=sandbox.basic,
        timeout=5,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    self_href = body["_links"]["self"]["href"]
    assert "/rest/2/assets/artifacts%2F" in self_href and self_href.endswith(".jar")
    assert body["fileInfo"] == {"logicalFileName": "my-plugin.jar", "size": len(jar_bytes())}
    details = requests.get(self_href, timeout=5)
    assert details.status_code == 200 and details.json()["fileInfo"]["size"] == len(jar_bytes())
    decoded = self_href.replace("%2F", "/")
    assert requests.get(decoded, timeout=5).status_code == 404
    assert sandbox.uploads()[0]["sha256"] == sha256(jar_bytes())


@pytest.mark.parametrize(
    ("filename", "data"),
    [("notes.txt", b"hello"), ("fake.jar", b"not a zip at all"), ("plugin.zip", jar_bytes())],
)
def test_non_jar_artifacts_are_refused(sandbox: SandboxControl, filename: str, data: bytes) -> None:
    response = requests.post(
        f"{sandbox.url}{ASSETS}/artifact",
        files={"file": (filename, data)},
        auth=sandbox.basic,
        timeout=5,
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"]


def test_artifact_upload_needs_auth_and_field_file(sandbox: SandboxControl) -> None:
    url = f"{sandbox.url}{ASSETS}/artifact"
    assert requests.post(url, files={"file": ("a.jar", jar_bytes())}).status_code == 401
    wrong = requests.post(url, files={"artifact": ("a.jar", jar_bytes())}, auth=sandbox.basic)
    assert wrong.status_code == 400


def test_artifact_fetch_from_loopback(sandbox: SandboxControl, file_server: str) -> None:
    uri = f"{file_server}/plugin.jar"
    response = requests.post(
        f"{sandbox.url}{ASSETS}/artifact/fetch", params={"uri": uri}, auth=sandbox.basic, timeout=10
    )
    assert response.status_code == 200, response.text
    assert response.json()["_links"]["remote"]["href"] == uri
    assert sandbox.file_bytes(sha256(jar_bytes())) == jar_bytes()
    missing = requests.post(
        f"{sandbox.url}{ASSETS}/artifact/fetch",
        params={"uri": f"{file_server}/missing.jar"},
        auth=sandbox.basic,
    )
    assert missing.status_code == 400
    outside = requests.post(
        f"{sandbox.url}{ASSETS}/artifact/fetch",
        params={"uri": "https://example.com/plugin.jar"},
        auth=sandbox.basic,
    )
    assert outside.status_code == 400 and "loopback" in outside.json()["errors"][0]["message"]


def test_image_upload_and_delete_rules(sandbox: SandboxControl) -> None:
    png = image_bytes()
    url = f"{sandbox.url}{ASSETS}/image/logo"
    headers = {"Content-Type": "image/png"}
    response = requests.post(url, params={"file": "logo.png"}, data=png, headers=headers, auth=sandbox.basic)
    assert response.status_code == 200, response.text
    self_href = response.json()["_links"]["self"]["href"]
    assert "/rest/2/assets/images%2F" in self_href and self_href.endswith(".png")
    unknown = requests.post(
        f"{sandbox.url}{ASSETS}/image/wallpaper",
        params={"file": "a.png"},
        data=png,
        headers=headers,
        auth=sandbox.basic,
    )
    assert unknown.status_code == 400
    not_image = requests.post(url, params={"file": "a.png"}, data=b"nope", headers=headers, auth=sandbox.basic)
    assert not_image.status_code == 400
    sandbox.configure(extra_basic=[["other@example.com", "other-token"]])
    other = requests.delete(self_href, auth=("other@example.com", "other-token"))
    assert other.status_code == 403
    name = sandbox.assets()[0]["name"]
    sandbox.mark_asset_used(name)
    assert requests.delete(self_href, auth=sandbox.basic).status_code == 409
    sandbox.mark_asset_used(name, used=False)
    assert requests.delete(self_href, auth=sandbox.basic).status_code == 204
    assert requests.get(self_href).status_code == 404
