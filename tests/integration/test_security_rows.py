"""docs/security.md's table, row by row: each hostile input is tried for real and Ferry's answer
checked. Submit-side rows go through the live HTTP API (uvicorn, a real Redis database of their
own, ``[files] roots``); the queue row puts a pickle message in front of the real worker.

Rows backed elsewhere: huge JSON (tests/integration/test_http_api.py::test_413_…), bad token
(test_http_api.py::test_auth_401_…), CSRF-less dashboard action (test_replay.py::
test_dashboard_session_needs_its_csrf_token), the worker's own re-checks (test_hostile_input.py),
inner addresses inside IPv6 (tests/unit/test_uri_checks.py), open event streams, the
Idempotency-Key header, forwarded headers and the health routes (test_http_api.py), the workers'
metrics bind (test_metrics_flower.py).
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from producers.client import Ferry
from producers.config import load_config
from producers.embedded import RedisLocation
from producers.kinds import AWORK_MAX_BYTES
from producers.queue import queue_of, task_name
from producers.records import StepError
from tests import jobs
from tests.fixtures.api import LiveApi
from tests.fixtures.worker import write_config
from tests.integration.helpers import png

DB = 10  # other tests use 0 and 3-9
TOKEN = "security-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("uploads")
    png(root / "logo.png")
    (root / "folder").mkdir()
    (root / "escape.png").symlink_to("/etc/hostname")
    (root / "report.png").write_bytes(b"%PDF-1.4\n" + b"x" * 500 + b"\n%%EOF\n")  # a PDF named .png
    with (root / "huge.png").open("wb") as fh:  # sparse: over awork's limit without the bytes
        fh.write(png(root / "small.png").read_bytes())
        fh.truncate(AWORK_MAX_BYTES + 1)
    return root


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, redis_location: RedisLocation, root: Path) -> Iterator[LiveApi]:
    config = write_config(tmp_path_factory.mktemp("security") / "ferry.toml", "http://127.0.0.1:9",
                          "ferry@example.com")
    with config.open("a") as fh:
        fh.write(f"\n[files]\nroots = [{json.dumps(str(root))}]\n")
    location = RedisLocation.from_socket(Path(urlsplit(redis_location.url).path), DB)
    ferry = Ferry(location.url, config=load_config(config))
    ferry.redis.flushdb()
    with LiveApi(ferry, tokens=[TOKEN]) as server:
        yield server
    ferry.redis.flushdb()
    ferry.close()


def submit(api: LiveApi, file: str, kind: str = "awork-image") -> requests.Response:
    params: dict[str, Any] = {"entity": "users", "id": "u-1"}
    return requests.post(f"{api.url}/jobs", headers=AUTH, timeout=10,
                         json={"kind": kind, "connection": "awork", "file": file, "params": params})


def refused_file(response: requests.Response) -> str:
    assert response.status_code == 422, response.text
    problems = {p["field"]: p["message"] for p in response.json()["problems"]}
    assert set(problems) == {"file"}, problems
    return problems["file"]


def nothing_stored(api: LiveApi) -> bool:
    return int(api.ferry.redis.zcard("ferry:idx:all")) == 0


# ---- files named at submit ------------------------------------------------------------------------
def test_path_traversal_out_of_the_roots_is_refused(api, root):
    message = refused_file(submit(api, f"{root}/../../../../etc/hostname"))
    assert "outside the allowed roots" in message
    assert nothing_stored(api)


def test_a_symlink_inside_a_root_pointing_out_of_it_is_refused(api, root):
    assert "outside the allowed roots" in refused_file(submit(api, str(root / "escape.png")))
    assert nothing_stored(api)


def test_a_device_file_is_refused(api, root):
    device = root / "zero.png"
    try:
        os.mknod(device, stat.S_IFCHR | 0o600, os.makedev(1, 5))  # /dev/zero's numbers
    except PermissionError:
        pytest.skip("creating a device node needs root (CI runs as root)")
    try:
        assert "no such file" in refused_file(submit(api, str(device)))  # not a regular file
    finally:
        device.unlink()
    assert "outside the allowed roots" in refused_file(submit(api, "/dev/zero"))
    assert nothing_stored(api)


def test_a_directory_is_refused(api, root):
    assert "no such file" in refused_file(submit(api, str(root / "folder")))
    assert nothing_stored(api)


def test_a_file_over_the_kinds_limit_is_refused_without_reading_it(api, root):
    message = refused_file(submit(api, str(root / "huge.png")))
    assert f"the limit is {AWORK_MAX_BYTES} bytes" in message
    assert nothing_stored(api)


def test_the_type_is_read_from_the_content_not_the_name(api, root):
    message = refused_file(submit(api, str(root / "report.png")))
    assert "application/pdf" in message
    assert nothing_stored(api)


# ---- bodies ---------------------------------------------------------------------------------------
def test_json_nested_too_deep_is_refused_and_the_server_keeps_answering(api):
    too_deep_to_parse = '{"kind": "awork-image-delete", "connection": "awork", "params": {"id": ' \
        + "[" * 50_000 + "]" * 50_000 + "}}"
    parsed = requests.post(f"{api.url}/jobs", data=too_deep_to_parse, timeout=10,
                           headers={**AUTH, "Content-Type": "application/json"})
    assert parsed.status_code == 400 and parsed.json()["problems"] == []

    deep = 1
    for _ in range(500):  # parses, but no parameter nests like that
        deep = {"a": deep}
    refused = requests.post(f"{api.url}/jobs", headers=AUTH, timeout=10, json={
        "kind": "assets-avatar", "connection": "acme", "file": "/nowhere.png",
        "params": {"object_type": 1, "attributes": [deep]}})
    assert refused.status_code == 422, refused.text
    assert {"field": "params", "message": "nested more than 16 levels deep"} in refused.json()["problems"]
    assert requests.get(f"{api.url}/healthz", timeout=10).json()["status"] == "ok"
    assert nothing_stored(api)


# ---- the queue ------------------------------------------------------------------------------------
class Payload:
    """Unpickling this creates ``path``: proof that a worker deserialized a pickle."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return open, (str(self.path), "w")


def test_a_pickle_message_on_the_queue_is_refused_by_the_worker(ferry, worker_process, tmp_path):
    """The worker accepts JSON only: a pickle put on its queue is dropped undecoded (so nothing in
    it runs) and the worker goes on taking jobs."""
    marker = tmp_path / "unpickled"
    queue = queue_of(ferry.config.connection("acme"))
    ferry.celery.send_task(task_name("get_credentials"), args=(Payload(marker),), serializer="pickle",
                           queue=queue, routing_key=queue)
    deadline = time.monotonic() + 30
    while "pickle" not in worker_process.log():
        assert time.monotonic() < deadline, worker_process.log()[-3000:]
        time.sleep(0.2)
    assert "untrusted content" in worker_process.log() or "ContentDisallowed" in worker_process.log()
    assert not marker.exists()

    job = ferry.submit("awork-image-delete", connection="awork", params={"entity": "users", "id": "u-1"})
    assert ferry.wait(job.id, timeout=60).done
    assert not marker.exists()


# A destination's message echoing a parameter: set the terminal's title, clear the screen, rewrite
# the line, and a rich link.
HOSTILE_MESSAGE = "bad\x1b]0;pwned\x07\x1b[2J\rforged\x9b31m \u202etxt.exe [link=https://evil.example]x[/link]"


def test_cli_tables_print_a_destination_s_escape_sequences_as_plain_text(ferry, ferry_env):
    """`ferry status` and `ferry jobs` once printed such a message raw."""
    job, _ = jobs.create(ferry.store, kind="awork-image-delete", connection="awork", steps=["delete_profile_image"],
                         params={"entity": "users", "id": "u-1"}, file=None)
    jobs.start_step(ferry.store, job.id, "delete_profile_image")
    ferry.store.mark_failed(job.id, "delete_profile_image",
                            StepError(step="delete_profile_image", status=400, message=HOSTILE_MESSAGE))

    for args in (("status", job.id), ("jobs",)):
        shown = ferry_env.cli(*args, "--status", "failed") if args == ("jobs",) else ferry_env.cli(*args)
        assert shown.returncode in (0, 1), shown.stderr
        assert job.id[:8] in shown.stdout
        assert not set(shown.stdout) & {"\x1b", "\x07", "\r", "\x9b", "\u202e"}, repr(shown.stdout)
        assert "\x1b]8;" not in shown.stdout  # no hyperlink either
