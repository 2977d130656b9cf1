"""Fault injection, per-credential rate limiting, request log and reset."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

import pytest
import requests

from sandbox.testing import SandboxControl
from tests.integration.sandbox.util import StreamedMultipart, credentials, media_stream, media_upload

ISO_MINUTE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}Z$")


def jira_get(sb: SandboxControl) -> requests.Response:
    return requests.get(f"{sb.url}/rest/api/3/avatar/project/system", auth=sb.basic, timeout=10)


def test_429_n_times_then_success(sandbox: SandboxControl) -> None:
    fault = sandbox.add_fault(path=r"/avatar/\w+/system$", method="GET", status=429, times=2, retry_after=3)
    for _ in range(2):
        response = jira_get(sandbox)
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "3"
        assert response.headers["RateLimit-Reason"] == "jira-burst-based"
        assert ISO_MINUTE.match(response.headers["X-RateLimit-Reset"])
        assert "errorMessages" in response.json()
    assert jira_get(sandbox).status_code == 200
    assert sandbox.faults()[0]["id"] == fault and sandbox.faults()[0]["hits"] == 2
    verdicts = [r["verdict"] for r in sandbox.requests(path_contains="/system")]
    assert verdicts[:2] == [f"fault {fault}: HTTP 429"] * 2


def test_500_and_503_with_custom_headers(sandbox: SandboxControl) -> None:
    sandbox.add_fault(path="/system", status=503, times=1, retry_after=2, headers={"X-Test": "1"})
    sandbox.add_fault(path="/system", status=500, times=1)
    first = jira_get(sandbox)
    assert first.status_code == 503 and first.headers["Retry-After"] == "2"
    assert first.headers["X-Test"] == "1"
    assert jira_get(sandbox).status_code == 500
    assert jira_get(sandbox).status_code == 200


def test_probability_zero_never_fires(sandbox: SandboxControl) -> None:
    sandbox.add_fault(path="/system", status=500, probability=0.0)
    assert all(jira_get(sandbox).status_code == 200 for _ in range(5))


def test_cut_connection_is_a_connection_error(sandbox: SandboxControl) -> None:
    sandbox.add_fault(path="/media/file", cut=True, times=1)
    creds = credentials(sandbox)
    with pytest.raises(requests.ConnectionError):
        media_upload(creds, b"x" * 200_000)
    # A big streamed body cut mid-way: still a connection error, never a clean answer.
    sandbox.add_fault(path="/media/file", cut=True, times=1)
    body = StreamedMultipart("file", "big.bin", 20 * 1024 * 1024)
    with pytest.raises(requests.ConnectionError):
        media_stream(creds, body, timeout=10)
    assert media_upload(creds, b"ok").status_code == 201


def test_latency(sandbox: SandboxControl) -> None:
    sandbox.add_fault(path="/system", latency_ms=400, times=1)
    started = time.monotonic()
    assert jira_get(sandbox).status_code == 200
    assert time.monotonic() - started >= 0.4


def test_rate_limit_jira_shape(sandbox: SandboxControl) -> None:
    sandbox.set_rate_limit(2)
    statuses = [jira_get(sandbox) for _ in range(6)]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited, "expected some 429s at 2 req/s"
    headers = limited[0].headers
    assert int(headers["Retry-After"]) >= 1
    assert ISO_MINUTE.match(headers["X-RateLimit-Reset"])
    assert headers["RateLimit-Reason"] == "jira-burst-based"
    sandbox.clear_rate_limit()
    assert jira_get(sandbox).status_code == 200


def test_rate_limit_is_per_credential(sandbox: SandboxControl) -> None:
    sandbox.configure(extra_basic=[["other@example.com", "t2"]])
    sandbox.set_rate_limit(0.2)  # one token, then 5 s to refill: no timing flakiness
    assert jira_get(sandbox).status_code == 200
    assert jira_get(sandbox).status_code == 429
    other = requests.get(f"{sandbox.url}/rest/api/3/avatar/project/system", auth=("other@example.com", "t2"))
    assert other.status_code == 200


def test_rate_limit_assets_shape(sandbox: SandboxControl) -> None:
    url = f"{sandbox.url}/jsm/assets/workspace/{sandbox.seed()['workspace_id']}/v1/object/1"
    sandbox.set_rate_limit(0.2)  # one token, then 5 s to refill: no timing flakiness
    requests.get(url, auth=sandbox.basic)
    limited = requests.get(url, auth=sandbox.basic)
    assert limited.status_code == 429
    assert "Retry-After" not in limited.headers
    assert "errorMessages" in limited.json()
    sandbox.configure(assets_retry_after=True)
    again = requests.get(url, auth=sandbox.basic)
    assert again.status_code == 429 and int(again.headers["Retry-After"]) >= 1


def test_rate_limit_awork_shape(sandbox: SandboxControl) -> None:
    url = f"{sandbox.url}/api/v1/files/images/users/{sandbox.seed()['awork']['users']}"
    headers = {"Authorization": f"Bearer {sandbox.bearer}"}
    sandbox.set_rate_limit(0.2)  # one token, then 5 s to refill: no timing flakiness
    requests.get(url, headers=headers)
    limited = requests.get(url, headers=headers)
    assert limited.status_code == 429
    assert "Retry-After" not in limited.headers
    for name in (
        "RateLimit-Limit",
        "RateLimit-Remaining",
        "RateLimit-Reset",
        "X-RateLimit-Limit-Second",
        "X-RateLimit-Remaining-Second",
        "X-RateLimit-Limit-Minute",
        "X-RateLimit-Remaining-Minute",
    ):
        assert name in limited.headers
    assert limited.json()["code"] == "too-many-requests"


def test_request_log_never_shows_secrets(sandbox: SandboxControl) -> None:
    jira_get(sandbox)
    requests.get(
        f"{sandbox.url}/api/v1/files/images/users/x",
        headers={"Authorization": f"Bearer {sandbox.bearer}"},
    )
    log = sandbox.requests()
    assert [r["credential"] for r in log] == [sandbox.email, "awork-bearer"]
    assert all(sandbox.token not in str(r) and sandbox.bearer not in str(r) for r in log)
    assert log[1]["status"] == 404 and "not found" in log[1]["verdict"]


def test_reset_forgets_faults_rate_limits_and_requests(sandbox: SandboxControl) -> None:
    seed = sandbox.seed()
    sandbox.add_fault(path=".*", status=500)
    sandbox.set_rate_limit(0.2)  # one token, then 5 s to refill: no timing flakiness
    jira_get(sandbox)
    sandbox.reset()
    assert sandbox.faults() == [] and sandbox.requests() == []
    assert all(jira_get(sandbox).status_code == 200 for _ in range(3))
    assert sandbox.seed() == seed


def test_a_request_held_over_a_reset_is_neither_logged_nor_applied(sandbox: SandboxControl) -> None:
    # A worker killed mid-upload in one test leaves its request held by a latency fault; the next
    # test resets the sandbox and must not find that request in its log (nor its effect).
    sandbox.add_fault(path=r"/avatar/\w+/system$", method="GET", latency_ms=1500)
    held: list[object] = []
    thread = threading.Thread(target=lambda: held.append(_quietly(lambda: jira_get(sandbox))))
    thread.start()
    time.sleep(0.5)
    sandbox.reset()
    thread.join(timeout=10)
    assert sandbox.requests(path_contains="/system") == []
    assert jira_get(sandbox).status_code == 200  # a request after the reset is served and logged
    assert [r["status"] for r in sandbox.requests(path_contains="/system")] == [200]


def _quietly(call: Callable[[], object]) -> object:
    try:
        return call()
    except requests.RequestException as exc:
        return exc
