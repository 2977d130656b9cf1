"""Every destination answer is classified once: retryable or permanent, with the destination's words."""

from __future__ import annotations

import json

import pytest
import requests

from worker.errors import OutcomeUnknown, PermanentError, RetryableError
from worker.http import Destination, classify, destination_message


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
    dest = Destination(requests.Session(), "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(RetryableError):
        dest.call("POST", "/object/create", json={}, repeatable=False)


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
    dest = Destination(requests.Session(), f"http://127.0.0.1:{listener.getsockname()[1]}")
    with pytest.raises(OutcomeUnknown, match="outcome unknown"):
        dest.call("POST", "/x", data=b"abc", repeatable=False, check="the assets")
    listener.close()
