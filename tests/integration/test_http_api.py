"""The HTTP API served for real (uvicorn on a free port) over the real embedded Redis, driven
with ``requests`` over real HTTP.

The API tests use their own Redis database (db 3 on the test socket): a session's live worker
consumes db 0, and these jobs are meant to stay ``queued`` so the store and the broker queue can
be counted exactly. The end-to-end test at the bottom uses db 0 and the live worker.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.client import HTTPConnection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import requests

from producers.client import Ferry
from producers.config import load_config
from producers.embedded import RedisLocation
from sandbox.testing import free_port
from tests.fixtures.api import LiveApi
from tests.fixtures.worker import FerryEnv, write_config
from tests.integration.helpers import png

TOKEN = "api-token-one"
OTHER_TOKEN = "api-token-two"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_BODY = 20_000
API_DB = 3


def write_api_config(path: Path, *, roots: list[Path], sandbox_url: str = "http://127.0.0.1:9",
                     email: str = "ferry@example.com") -> Path:
    write_config(path, sandbox_url, email)
    with path.open("a") as fh:
        if roots:
            fh.write("\n[files]\nroots = [" + ", ".join(json.dumps(str(r)) for r in roots) + "]\n")
        fh.write(f'\n[api]\ntokens_env = "FERRY_TEST_API_TOKENS"\nmax_body_bytes = {MAX_BODY}\n')
    return path


def db_location(location: RedisLocation, db: int) -> RedisLocation:
    return RedisLocation.from_socket(Path(urlsplit(location.url).path), db)


@pytest.fixture(scope="module")
def files_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("api-files")
    (root / "doc.pdf").write_bytes(b"%PDF-1.4\n" + b"x" * 2000 + b"\n%%EOF\n")
    png(root / "logo.png")
    return root


@pytest.fixture(scope="module")
def api_env(tmp_path_factory: pytest.TempPathFactory, files_root: Path) -> Iterator[Path]:
    config = write_api_config(tmp_path_factory.mktemp("api") / "ferry.toml", roots=[files_root])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FERRY_TEST_API_TOKENS", f"{TOKEN}, {OTHER_TOKEN}")
        yield config


@pytest.fixture(scope="module")
def api(api_env: Path, redis_location: RedisLocation) -> Iterator[LiveApi]:
    ferry = Ferry(db_location(redis_location, API_DB).url, config=load_config(api_env))
    with LiveApi(ferry) as server:
        yield server
    ferry.close()


@pytest.fixture
def store(api: LiveApi) -> redis.Redis:
    """The API's database, emptied before each test."""
    api.ferry.redis.flushdb()
    return api.ferry.redis


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers.update(AUTH)
        yield session


def attachment(files_root: Path, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "assets-attachment", "connection": "acme",
                            "file": str(files_root / "doc.pdf"),
                            "params": {"object": "88", "comment": "scan"}}
    return {**body, **overrides}


def job_count(store: redis.Redis) -> int:
    return int(store.zcard("ferry:idx:all"))


def queued_messages(store: redis.Redis) -> int:
    """Messages waiting in any queue (a Redis broker keeps each queue as a list named after it)."""
    return sum(int(store.llen(k)) for k in store.scan_iter("ferry*") if store.type(k) == "list")


def fields(response: requests.Response) -> set[str]:
    return {p["field"] for p in response.json()["problems"]}


# ---- submit and read -----------------------------------------------------------------------------
def test_submit_answers_202_with_the_same_record_as_ferry_status_json(api, store, http, files_root,
                                                                     api_env, redis_location):
    r = http.post(f"{api.url}/jobs", json=attachment(files_root))
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] == "queued"
    assert job["params"] == {"object": "88", "comment": "scan"}
    assert job["file"]["name"] == "doc.pdf" and job["file"]["mime_type"] == "application/pdf"
    assert [s["name"] for s in job["steps"]] == ["get_credentials", "media_upload",
                                                 "link_attachment"]
    assert r.headers["Location"] == f"/jobs/{job['id']}"
    assert queued_messages(store) == 1

    got = http.get(f"{api.url}/jobs/{job['id']}")
    assert got.status_code == 200 and got.json() == job

    env = {"FERRY_CONFIG": str(api_env), "REDIS_URL": db_location(redis_location, API_DB).url,
           "PATH": "/usr/bin:/bin"}
    cli = subprocess.run([sys.executable, "-m", "producers", "status", job["id"], "--json"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert json.loads(cli.stdout) == job, cli.stderr


def test_a_job_not_before_a_later_time_is_scheduled_listed_and_cancellable(api, store, http, files_root):
    r = http.post(f"{api.url}/jobs", json={**attachment(files_root), "not_before": "2999-01-01T02:00:00Z"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert (job["status"], job["not_before"]) == ("scheduled", "2999-01-01T02:00:00.000Z")
    assert queued_messages(store) == 0  # held in the store, not in the broker
    listed = http.get(f"{api.url}/jobs", params={"status": "scheduled"}).json()["jobs"]
    assert [j["id"] for j in listed] == [job["id"]]
    cancelled = http.post(f"{api.url}/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.text
    assert http.post(f"{api.url}/jobs", json={**attachment(files_root), "not_before": "soon"}).status_code == 422


def test_unknown_job_is_404(api, store, http):
    r = http.get(f"{api.url}/jobs/0123456789abcdef")
    assert r.status_code == 404
    assert "0123456789abcdef" in r.json()["detail"]


def test_list_pages_through_every_job_newest_first_with_the_cursor(api, store, http, files_root):
    ids = [http.post(f"{api.url}/jobs", json=attachment(files_root)).json()["id"] for _ in range(5)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2, "status": "queued", "kind": "assets-attachment",
                                  "connection": "acme"}
        if cursor:
            params["cursor"] = cursor
        page = http.get(f"{api.url}/jobs", params=params).json()
        seen += [j["id"] for j in page["jobs"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    assert pages == 3
    assert http.get(f"{api.url}/jobs", params={"status": "failed"}).json()["jobs"] == []
    assert http.get(f"{api.url}/jobs", params={"cursor": "drop table"}).status_code == 422


def test_batch_reports_each_item_and_submits_only_the_good_ones(api, store, http, files_root):
    good = attachment(files_root)
    avatar = {"kind": "assets-avatar", "connection": "acme", "file": str(files_root / "logo.png"),
              "params": {"object_type": "7", "object": "12"}}
    bad = attachment(files_root, connection="nowhere", params={"comment": "no object"})
    outside = attachment(files_root, file="/etc/hostname")
    malformed = {"kind": "assets-attachment", "colour": "red"}
    r = http.post(f"{api.url}/jobs:batch", json={"jobs": [good, bad, avatar, outside, malformed]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["status"] for x in body["results"]] == [202, 422, 202, 422, 422]
    assert (body["created"], body["existing"], body["refused"]) == (2, 0, 3)
    assert {p["field"] for p in body["results"][1]["problems"]} == {"connection", "params.object"}
    assert body["results"][3]["problems"][0]["field"] == "file"
    assert "outside the allowed roots" in body["results"][3]["problems"][0]["message"]
    assert {p["field"] for p in body["results"][4]["problems"]} == {"connection", "colour"}
    assert body["results"][2]["job"]["file"]["width"] == 64
    assert job_count(store) == 2 and queued_messages(store) == 2


def test_a_bulk_submission_is_a_batch_and_an_open_batch_takes_jobs_until_sealed(api, store, http, files_root):
    r = http.post(f"{api.url}/jobs:batch", json={"jobs": [attachment(files_root)] * 3, "name": "scans"})
    assert r.status_code == 200, r.text
    batch = r.json()["batch"]
    status = http.get(f"{api.url}/batches/{batch}").json()
    assert {k: status[k] for k in ("id", "name", "total", "finished_at", "callback_url")} == {
        "id": batch, "name": "scans", "total": 3, "finished_at": None, "callback_url": None}
    assert status["counts"]["queued"] == 3 and status["sealed_at"] and status["bytes_total"] > 0
    listed = http.get(f"{api.url}/jobs", params={"batch": batch}).json()["jobs"]
    assert len(listed) == 3 and {j["batch"] for j in listed} == {batch}

    opened = http.post(f"{api.url}/batches", json={"name": "one by one"})
    assert opened.status_code == 201, opened.text
    own = opened.json()["id"]
    assert http.post(f"{api.url}/jobs", json=attachment(files_root, batch=own)).status_code == 202
    assert http.post(f"{api.url}/batches/{own}/seal").json()["sealed_at"]
    late = http.post(f"{api.url}/jobs", json=attachment(files_root, batch=own))
    assert late.status_code == 422 and fields(late) == {"batch"}
    assert [b["id"] for b in http.get(f"{api.url}/batches").json()["batches"]] == [own, batch]
    cancelled = http.post(f"{api.url}/batches/{own}/cancel").json()
    assert (cancelled["matched"], cancelled["cancelled"]) == (1, 1)
    assert http.get(f"{api.url}/batches/{own}").json()["finished_at"]  # its one job ended: complete
    assert http.post(f"{api.url}/batches/{own}/replay").json()["matched"] == 0  # cancelled is not failed
    assert http.post(f"{api.url}/batches/{own}/notify").status_code == 409  # no callback_url
    for method, path in [("get", "/batches/nope"), ("post", "/batches/nope/seal"),
                         ("post", "/batches/nope/replay"), ("post", "/batches/nope/cancel"),
                         ("post", "/batches/nope/notify")]:
        assert getattr(http, method)(f"{api.url}{path}").status_code == 404
    refused = http.post(f"{api.url}/batches", json={"callback_url": "ftp://example.com"})
    assert refused.status_code == 422 and fields(refused) == {"callback_url"}


# ---- idempotency ----------------------------------------------------------------------------------
def test_twenty_concurrent_identical_requests_make_exactly_one_job(api, store, files_root):
    body = attachment(files_root)

    def post(_: int) -> requests.Response:
        return requests.post(f"{api.url}/jobs", json=body,
                             headers={**AUTH, "Idempotency-Key": "scan-88-x"}, timeout=30)

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(post, range(20)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 19 + [202], [r.text for r in responses if r.status_code >= 300]
    assert len({r.json()["id"] for r in responses}) == 1
    assert job_count(store) == 1
    assert queued_messages(store) == 1, "the chain was enqueued more than once"
    # The body field is the same key as the header.
    again = requests.post(f"{api.url}/jobs", json={**body, "idempotency_key": "scan-88-x"},
                          headers=AUTH, timeout=30)
    assert again.status_code == 200 and again.json()["id"] == responses[0].json()["id"]
    clash = requests.post(f"{api.url}/jobs", json={**body, "idempotency_key": "a"},
                          headers={**AUTH, "Idempotency-Key": "b"}, timeout=30)
    assert clash.status_code == 422 and fields(clash) == {"idempotency_key"}
    other_job = {**body, "params": {**body["params"], "comment": "a different job"}}
    reused = requests.post(f"{api.url}/jobs", json=other_job,
                           headers={**AUTH, "Idempotency-Key": "scan-88-x"}, timeout=30)
    assert reused.status_code == 409 and fields(reused) == {"idempotency_key"}
    assert job_count(store) == 1


def test_the_idempotency_key_header_is_held_to_the_field_s_length(api, store, files_root):
    """A 10 000-character header key was once stored; the body field allows 200."""
    body = attachment(files_root)
    for key in ("k" * 201, "k" * 10_000):
        as_header = requests.post(f"{api.url}/jobs", json=body, headers={**AUTH, "Idempotency-Key": key}, timeout=30)
        as_field = requests.post(f"{api.url}/jobs", json={**body, "idempotency_key": key}, headers=AUTH, timeout=30)
        assert (as_header.status_code, as_field.status_code) == (422, 422), as_header.text
        assert "200 characters" in as_header.text and fields(as_field) == {"idempotency_key"}
    assert job_count(store) == 0
    longest = requests.post(f"{api.url}/jobs", json=body, headers={**AUTH, "Idempotency-Key": "k" * 200}, timeout=30)
    assert longest.status_code == 202, longest.text


def test_unauthenticated_health_routes_say_redis_is_unavailable_without_its_words(api_env):
    """They once answered with Redis's own error text (its address, port or socket path)."""
    port = free_port()  # nothing listens there
    ferry = Ferry(f"redis://127.0.0.1:{port}/0", config=load_config(api_env))
    with LiveApi(ferry) as down:
        answers = {route: requests.get(f"{down.url}{route}", timeout=30)
                   for route in ("/healthz", "/readyz", "/metrics")}
    ferry.close()
    assert answers["/healthz"].json() == {"status": "unavailable", "redis": "redis unavailable"}
    assert answers["/readyz"].json() == {"status": "unavailable", "reason": "redis unavailable"}
    assert answers["/metrics"].json()["detail"] == "redis unavailable"
    for route, answer in answers.items():
        assert answer.status_code == 503, route
        assert str(port) not in answer.text and "refused" not in answer.text.lower(), answer.text


# ---- refusals -------------------------------------------------------------------------------------
def test_auth_401_without_a_token_403_with_a_wrong_one_health_needs_none(api, store, files_root):
    for method, path in [("post", "/jobs"), ("post", "/jobs:batch"), ("get", "/jobs"),
                         ("get", "/jobs/abc"), ("get", "/openapi.json")]:
        none = requests.request(method, api.url + path, json=attachment(files_root), timeout=10)
        assert none.status_code == 401, (path, none.text)
        assert none.headers["WWW-Authenticate"].startswith("Bearer")
        basic = requests.request(method, api.url + path, headers={"Authorization": "Basic eDp5"},
                                 timeout=10)
        assert basic.status_code == 401, path
        wrong = requests.request(method, api.url + path, json=attachment(files_root),
                                 headers={"Authorization": "Bearer api-token-on"}, timeout=10)
        assert wrong.status_code == 403, (path, wrong.text)
    assert job_count(store) == 0 and queued_messages(store) == 0
    health = requests.get(f"{api.url}/healthz", timeout=10)
    assert health.status_code == 200 and health.json()["redis"] == "ok"
    other = requests.get(f"{api.url}/jobs", headers={"Authorization": f"Bearer {OTHER_TOKEN}"},
                         timeout=10)
    assert other.status_code == 200


def test_422_names_every_bad_field_and_enqueues_nothing(api, store, http, files_root):
    r = http.post(f"{api.url}/jobs", json={
        "kind": "assets-avatar", "connection": "marketplace", "file": str(files_root / "doc.pdf"),
        "params": {"object_type": "seven", "object": "1", "colour": "red"}})
    assert r.status_code == 422
    assert fields(r) == {"connection", "params.object_type", "params.colour", "file"}, r.text
    messages = {p["field"]: p["message"] for p in r.json()["problems"]}
    assert "marketplace connection" in messages["connection"]
    assert "application/pdf" in messages["file"]

    shape = http.post(f"{api.url}/jobs", json={"kind": 5, "params": [], "extra": 1})
    assert shape.status_code == 422
    assert fields(shape) == {"kind", "connection", "params", "extra"}, shape.text

    both = http.post(f"{api.url}/jobs", json=attachment(files_root, uri="https://x.example/a.pdf"))
    assert both.status_code == 422 and fields(both) == {"file"}
    unknown = http.post(f"{api.url}/jobs", json=attachment(files_root, kind="fax"))
    assert unknown.status_code == 422 and fields(unknown) == {"kind"}
    assert job_count(store) == 0 and queued_messages(store) == 0


def test_a_uri_is_accepted_without_reading_anything(api, store, http):
    r = http.post(f"{api.url}/jobs", json={"kind": "marketplace-artifact",
                                           "connection": "marketplace",
                                           "uri": "https://files.example.com/app-1.2.jar"})
    assert r.status_code == 202, r.text
    assert r.json()["file"] == {"path": None, "uri": "https://files.example.com/app-1.2.jar",
                                "name": "app-1.2.jar", "size": None, "mime_type": None,
                                "width": None, "height": None}
    plain_http = http.post(f"{api.url}/jobs", json={"kind": "marketplace-artifact",
                                                    "connection": "marketplace",
                                                    "uri": "http://files.example.com/app.jar"})
    assert plain_http.status_code == 422 and fields(plain_http) == {"uri"}
    assert "https://" in plain_http.json()["problems"][0]["message"]


def test_413_for_a_declared_or_a_streamed_body_over_the_limit(api, store, http, files_root):
    big = attachment(files_root, params={"object": "1", "comment": "x" * MAX_BODY})
    declared = http.post(f"{api.url}/jobs", json=big)
    assert declared.status_code == 413
    assert "max_body_bytes" in declared.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server must count
        data = json.dumps(big).encode()
        for i in range(0, len(data), 4096):
            yield data[i:i + 4096]

    streamed = http.post(f"{api.url}/jobs", data=chunks(),
                         headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413, streamed.text
    batch = http.post(f"{api.url}/jobs:batch", json={"jobs": [attachment(files_root)] * 200})
    assert batch.status_code == 413
    assert job_count(store) == 0 and queued_messages(store) == 0


def test_without_file_roots_the_api_refuses_every_path(api_env, tmp_path, redis_location,
                                                      files_root):
    config = write_api_config(tmp_path / "ferry.toml", roots=[])
    ferry = Ferry(db_location(redis_location, API_DB + 1).url, config=load_config(config))
    ferry.redis.flushdb()
    with LiveApi(ferry) as server:
        r = requests.post(f"{server.url}/jobs", json=attachment(files_root), headers=AUTH,
                          timeout=10)
        assert r.status_code == 422
        problems = r.json()["problems"]
        assert [p["field"] for p in problems] == ["file"]
        assert "no [files] roots" in problems[0]["message"]
        assert ferry.redis.zcard("ferry:idx:all") == 0


def test_openapi_document_describes_the_routes(api, http):
    doc = http.get(f"{api.url}/openapi.json").json()
    assert {"/jobs", "/jobs:batch", "/jobs/{job_id}", "/healthz"} <= set(doc["paths"])
    assert "JobRequest" in doc["components"]["schemas"]
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


# ---- the command and the whole road -------------------------------------------------------------
@contextmanager
def ferry_api(env: dict[str, str], port: int) -> Iterator[None]:
    """``ferry api --port PORT`` running (answering /healthz) with ``env``, stopped afterwards."""
    proc = subprocess.Popen([sys.executable, "-m", "producers", "api", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, proc.communicate()[0]
                assert time.monotonic() < deadline, "ferry api did not start"
                time.sleep(0.1)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def api_command_env(config: Path, redis_location: RedisLocation) -> dict[str, str]:
    return {"FERRY_CONFIG": str(config), "REDIS_URL": db_location(redis_location, API_DB).url,
            "PATH": "/usr/bin:/bin", "FERRY_TEST_API_TOKENS": TOKEN}


def test_ferry_api_command_serves_and_refuses_to_start_without_tokens(api_env, redis_location):
    port = free_port()
    env = api_command_env(api_env, redis_location)
    with ferry_api(env, port):
        health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert health.json() == {"status": "ok", "redis": "ok"}
        listing = requests.get(f"http://127.0.0.1:{port}/jobs", headers=AUTH, timeout=5)
        assert listing.status_code == 200
    no_tokens = {k: v for k, v in env.items() if k != "FERRY_TEST_API_TOKENS"}
    refused = subprocess.run([sys.executable, "-m", "producers", "api", "--port", str(port)],
                             env=no_tokens, capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2
    assert "FERRY_TEST_API_TOKENS" in refused.stderr


def session_cookie_via(port: int, proxy: str) -> str:
    """Log in through ``proxy`` (the address the request comes from), which says the browser
    used https; the Set-Cookie header of the answer."""
    connection = HTTPConnection("127.0.0.1", port, timeout=10, source_address=(proxy, 0))
    try:
        connection.request("POST", "/login", body=f"token={TOKEN}&next=/",
                           headers={"Content-Type": "application/x-www-form-urlencoded",
                                    "X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"})
        answer = connection.getresponse()
        assert answer.status == 303, answer.read()
        return answer.getheader("Set-Cookie") or ""
    finally:
        connection.close()


def test_behind_a_trusted_tls_proxy_the_session_cookie_is_secure(api_env, redis_location, tmp_path):
    """Forwarded headers were believed from 127.0.0.1 only, and nothing could say otherwise: behind
    a TLS proxy elsewhere the session cookie went without Secure."""
    config = tmp_path / "ferry.toml"
    config.write_text(api_env.read_text() + '\nforwarded_allow_ips = ["127.0.0.2"]\n')  # into [api]
    port = free_port()
    with ferry_api(api_command_env(config, redis_location), port):
        trusted = session_cookie_via(port, "127.0.0.2")
        untrusted = session_cookie_via(port, "127.0.0.3")
    assert "ferry_session=" in trusted and "secure" in trusted.lower(), trusted
    assert "ferry_session=" in untrusted and "secure" not in untrusted.lower(), untrusted


# ---- event streams -------------------------------------------------------------------------------
def open_stream(api: LiveApi) -> socket.socket:
    """A ``GET /events`` held open (its first frame read), as a dashboard tab holds one."""
    sock = socket.create_connection(("127.0.0.1", api.port), timeout=30)
    sock.sendall(f"GET /events HTTP/1.1\r\nHost: ferry\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
    read_until(sock, b"retry: 2000")
    return sock


def read_until(sock: socket.socket, wanted: bytes) -> bytes:
    received = b""
    while wanted not in received:
        chunk = sock.recv(65536)
        assert chunk, f"the stream ended before {wanted!r}: {received[-300:]!r}"
        received += chunk
    return received


def test_150_open_event_streams_leave_health_and_submit_answering_and_all_see_the_job(
        api, store, http, files_root):
    """Each stream once held one of the API's 100 Redis connections in a blocking read: about 100
    open streams made /healthz and POST /jobs answer 503 "Too many connections"."""
    streams: list[socket.socket] = []
    try:
        for _ in range(150):
            streams.append(open_stream(api))
        health = http.get(f"{api.url}/healthz", timeout=30)
        assert health.status_code == 200, health.text
        submitted = http.post(f"{api.url}/jobs", json=attachment(files_root), timeout=30)
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["id"].encode()
        for stream in streams:
            assert b"event: job.queued" in read_until(stream, job_id + b'"')
    finally:
        for stream in streams:
            stream.close()


def test_streams_past_the_limit_are_told_to_come_back_later(api_env, redis_location, monkeypatch):
    from producers.web import events as web_events

    monkeypatch.setattr(web_events, "MAX_STREAMS", 3)
    ferry = Ferry(db_location(redis_location, API_DB).url, config=load_config(api_env))
    with LiveApi(ferry) as small:
        held = [open_stream(small) for _ in range(3)]
        refused = requests.get(f"{small.url}/events", headers=AUTH, timeout=30)
        assert refused.status_code == 503 and int(refused.headers["Retry-After"]) > 0
        assert "3 event streams are open" in refused.json()["detail"]
        held.pop().close()
        deadline = time.monotonic() + 30
        while small.app.state.events_hub.open_streams == 3 and time.monotonic() < deadline:
            time.sleep(0.05)  # the server notices the closed stream
        open_stream(small).close()
        for stream in held:
            stream.close()
    ferry.close()


def test_a_job_submitted_over_http_lands_in_the_sandbox(ferry_env: FerryEnv, ferry, sandbox,
                                                        tmp_path, redis_location):
    """db 0 and the live worker: HTTP → Redis → worker → sandbox, read back over HTTP."""
    seed = sandbox.seed()
    doc = tmp_path / "http.pdf"
    doc.write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 50 + b"\n%%EOF\n")
    config = write_api_config(tmp_path / "api.toml", roots=[tmp_path])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FERRY_TEST_API_TOKENS", TOKEN)
        server = LiveApi(Ferry(redis_location.url, config=load_config(config)))
    with server:
        r = requests.post(f"{server.url}/jobs", headers=AUTH, timeout=30, json={
            "kind": "assets-attachment", "connection": "acme", "file": str(doc),
            "params": {"object": seed["object_id"], "comment": "over http"}})
        assert r.status_code == 202, r.text
        deadline = time.monotonic() + 90
        while True:
            job = requests.get(f"{server.url}/jobs/{r.json()['id']}", headers=AUTH, timeout=10).json()
            if job["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert job["status"] == "succeeded", job
    assert job["result"]["media_id"]
