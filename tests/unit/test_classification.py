"""Every destination answer is classified once: retryable or permanent, with the destination's words."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator

import pytest
import requests

from producers.config import FerryConfig
from producers.records import FileInfo
from worker.errors import OutcomeUnknown, PermanentError, RetryableError
from worker.http import Destination, Route, classify, destination_message
from worker.uploads import open_file


def response(status: int, body: object = None, headers: dict[str, str] | None = None) -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r._content = json.dumps(body).encode() if body is not None else b""
    r.headers.update(headers or {})
    return r


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_rate_limits_and_gateway_errors_are_retryable(status):
    assert isinstance(classify(response(status, {})), RetryableError)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 415, 422])
def test_other_4xx_are_permanent_and_carry_status_and_message(status):
    err = classify(response(status, {"errorMessages": ["nope"]}))
    assert isinstance(err, PermanentError)
    assert err.status == status and err.message == "nope"
    assert err.step is None  # the task running the step names it where it records the error


def test_retry_after_header_becomes_the_delay():
    err = classify(response(429, {}, {"Retry-After": "2"}))
    assert isinstance(err, RetryableError) and err.retry_after == 2


def test_atlassian_error_collection_and_field_errors():
    body = {"errorMessages": ["Bad object"], "errors": {"rlabs-insight-attribute-1881": "Invalid Group(s)"}}
    assert destination_message(response(400, body)) == "Bad object; rlabs-insight-attribute-1881: Invalid Group(s)"


def test_assets_error_message_shape():
    assert destination_message(response(404, {"errorMessage": "TCS 404"})) == "TCS 404"


def test_awork_code_and_description_with_validation_errors():
    body = {"code": "validation-failed", "description": "Invalid input",
            "validationErrors": [{"property": "File", "message": "too large"}]}
    assert destination_message(response(400, body)) == "validation-failed: Invalid input; File: too large"


def test_plain_text_bodies_are_kept():
    r = requests.Response()
    r.status_code, r._content = 403, b"XSRF check failed"
    assert destination_message(r) == "XSRF check failed"


def test_a_refused_connection_is_retryable_even_for_a_create():
    create = Route("/object/create")
    dest = Destination(requests.Session(), "http://127.0.0.1:9", routes=(create,))  # nothing listens
    with pytest.raises(RetryableError):
        dest.call("POST", create.path(), json={}, repeatable=False)


def test_outcome_unknown_is_permanent():
    assert issubclass(OutcomeUnknown, PermanentError)


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_gateway_error_on_a_create_is_outcome_unknown_with_what_to_check(status):
    err = classify(response(status, {}), repeatable=False, check="the workspace for the new object")
    assert isinstance(err, OutcomeUnknown) and err.status == status
    assert "outcome unknown" in err.message and "the workspace for the new object" in err.message


@pytest.mark.parametrize("status", [429, 503])
def test_429_and_503_mean_not_processed_so_a_create_is_retried(status):
    err = classify(response(status, {}, {"Retry-After": "1"}), repeatable=False)
    assert isinstance(err, RetryableError) and err.retry_after == 1


def test_a_4xx_on_a_create_stays_a_plain_permanent_error():
    err = classify(response(400, {"errorMessages": ["bad"]}), repeatable=False)
    assert type(err) is PermanentError


def test_a_reply_lost_after_sending_a_create_is_outcome_unknown():
    """A server that reads the whole request and closes without answering."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))

    def swallow() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.close()

    threading.Thread(target=swallow, daemon=True).start()
    route = Route("/x")
    dest = Destination(requests.Session(), f"http://127.0.0.1:{listener.getsockname()[1]}", routes=(route,))
    with pytest.raises(OutcomeUnknown, match="outcome unknown"):
        dest.call("POST", route.path(), data=b"abc", repeatable=False, check="the assets")
    listener.close()


# ---- a job's file fetched from a URL: the same classifier, no connection's credentials ----------
class FileHost(http.server.BaseHTTPRequestHandler):
    """/file.jar: the bytes; /moved: a redirect to it; /gone: 404; /busy: 503 with Retry-After."""

    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:  # http.server's name for it
        FileHost.seen.append(dict(self.headers))
        answers = {"/file.jar": (200, {}, b"PK\x03\x04 jar bytes"), "/moved": (302, {"Location": "/file.jar"}, b""),
                   "/gone": (404, {}, b'{"message": "no such file"}'), "/busy": (503, {"Retry-After": "7"}, b"")}
        status, headers, body = answers.get(self.path, (404, {}, b""))
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def file_host() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FileHost)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


LOCAL_URLS = FerryConfig(allow_http_uris=True, allow_private_uris=True)


def fetched(uri: str, config: FerryConfig = LOCAL_URLS) -> bytes:
    with open_file(FileInfo(uri=uri, name="file.jar"), config) as file:
        return file.stream.read()


def test_a_download_follows_redirects_and_sends_no_credentials(file_host):
    FileHost.seen.clear()
    assert fetched(f"{file_host}/moved") == b"PK\x03\x04 jar bytes"
    assert len(FileHost.seen) == 2 and not any("Authorization" in h for h in FileHost.seen)


def test_a_download_is_classified_like_every_destination_answer(file_host):
    with pytest.raises(PermanentError) as gone:
        fetched(f"{file_host}/gone")
    assert gone.value.status == 404 and gone.value.message == f"fetching {file_host}/gone: no such file"
    with pytest.raises(RetryableError) as busy:
        fetched(f"{file_host}/busy")
    assert busy.value.status == 503 and busy.value.retry_after == 7


def test_the_worker_refuses_a_url_its_own_config_does_not_allow_before_connecting(file_host):
    FileHost.seen.clear()
    with pytest.raises(PermanentError, match="allow_http_uris"):
        fetched(f"{file_host}/file.jar", FerryConfig())
    with pytest.raises(PermanentError, match="a loopback address"):
        fetched(f"{file_host}/file.jar", FerryConfig(allow_http_uris=True))
    assert FileHost.seen == []
