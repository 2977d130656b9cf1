"""The transport boundary: every destination call goes through ``Destination.call``, which turns
whatever happened (a response, a refused connection, a cut) into a result or one ``DestinationError``.
Clients above it never see a ``requests`` exception or an unchecked status."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import IO, Any, Protocol

import requests
from requests.auth import AuthBase
from urllib3.exceptions import NewConnectionError

from worker import metrics
from worker.errors import OutcomeUnknown, PermanentError, RetryableError
from worker.retry import NOT_PROCESSED_STATUSES, RETRYABLE_STATUSES, server_retry_delay

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
USER_AGENT = "ferry/0.1 (+https://github.com/ferry-uploads)"

Auth = AuthBase | tuple[str, str] | None


class Limiter(Protocol):
    """What a Destination asks before each request (see worker.rate_limit)."""

    def acquire(self) -> str | None: ...

    def release(self, slot: str | None) -> None: ...

    def pause(self, seconds: float) -> None: ...


class BearerAuth(AuthBase):
    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self._token}"
        return r

    def __repr__(self) -> str:
        return "BearerAuth('[redacted]')"


def new_session() -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    session.headers["Accept"] = "application/json"
    return session


class Destination:
    """One base URL with its auth, over a shared ``requests.Session`` (connection pooling)."""

    def __init__(self, session: requests.Session, base_url: str, *, auth: Auth = None,
                 headers: Mapping[str, str] | None = None, limiter: Limiter | None = None) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.headers = dict(headers or {})
        self.limiter = limiter

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self.base_url}/{path.lstrip('/')}"

    def call(
        self,
        method: str,
        path: str,
        *,
        ok: Iterable[int] = (200, 201, 204),
        upload: bool = False,
        repeatable: bool = True,
        check: str = "the destination",
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Send one request. ``upload``: no read timeout (a large body takes as long as it takes).
        ``repeatable=False``: the request creates something visible, so an answer that may
        follow its success (500/502/504, a timeout or a cut after sending) is ``OutcomeUnknown``
        rather than a blind retry that could duplicate it; ``check`` tells the human where to
        look. Only 429, 503 and connect errors before any byte was sent are retried for it.
        Errors name no step: the task running the step names it where it catches them."""
        timeout = (CONNECT_TIMEOUT, None if upload else READ_TIMEOUT)
        slot = self.limiter.acquire() if self.limiter is not None else None
        response: requests.Response | None = None
        try:
            response = self.session.request(
                method, self.url(path), auth=self.auth, headers={**self.headers, **(headers or {})},
                timeout=timeout, **kwargs)
        except (requests.ConnectTimeout, requests.ConnectionError, requests.Timeout) as exc:
            raise _transport_error(exc, repeatable, check) from None
        except requests.RequestException as exc:
            raise RetryableError(f"request failed: {exc}") from None
        finally:
            if self.limiter is not None:
                self.limiter.release(slot)
            metrics.http_answer(response.status_code if response is not None else None,
                                _body_size(response) if upload else None)
        if response.status_code in set(ok):
            return response
        error = classify(response, repeatable=repeatable, check=check)
        if self.limiter is not None and isinstance(error, RetryableError) and response.status_code == 429:
            self.limiter.pause(error.retry_after or 0.0)
        raise error


def _body_size(response: requests.Response | None) -> int | None:
    length = response.request.headers.get("Content-Length") if response is not None else None
    return int(length) if length and length.isdigit() else None


def _transport_error(exc: requests.RequestException, repeatable: bool, check: str) -> Exception:
    if _never_sent(exc):
        return RetryableError(f"cannot connect: {_reason(exc)}")
    if repeatable:
        return RetryableError(f"connection lost: {_reason(exc)}")
    return outcome_unknown(f"connection lost after the request was sent ({_reason(exc)})", check)


def outcome_unknown(what: str, check: str, status: int | None = None) -> OutcomeUnknown:
    """The one wording of "it may have landed": what happened, and where a human looks first."""
    return OutcomeUnknown(
        f"outcome unknown: {what}, so the request may have taken effect; check {check} before "
        "`ferry replay --force`", status=status)


def _never_sent(exc: requests.RequestException) -> bool:
    if isinstance(exc, requests.ConnectTimeout):
        return True
    # requests wraps urllib3's errors in args, not in __cause__: walk both to find the root.
    seen: list[BaseException] = [exc]
    while seen:
        cause = seen.pop()
        if isinstance(cause, NewConnectionError | ConnectionRefusedError):
            return True
        seen += [a for a in cause.args if isinstance(a, BaseException)]
        seen += [c for c in (cause.__cause__, getattr(cause, "reason", None)) if isinstance(c, BaseException)]
    return False


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) < 200 else text[:200] + "…"


def classify(response: requests.Response, *, repeatable: bool = True,
             check: str = "the destination") -> Exception:
    """The one place a status code becomes retryable, permanent or (for a request that must not
    be repeated) outcome unknown."""
    message = destination_message(response)
    status = response.status_code
    if not repeatable and status in RETRYABLE_STATUSES - NOT_PROCESSED_STATUSES:
        return outcome_unknown(f"HTTP {status} ({message}) after the request was sent", check, status)
    if status in RETRYABLE_STATUSES:
        return RetryableError(message, status=status, retry_after=server_retry_delay(response.headers))
    return PermanentError(message, status=status)


def destination_message(response: requests.Response) -> str:
    """The destination's own words: Atlassian ``errorMessages``/``errors``/``errorMessage``/
    ``message``, awork ``code`` + ``description`` (+ validation errors); else the body text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    parts = _message_parts(body) if isinstance(body, dict) else []
    if parts:
        return "; ".join(parts)
    text = (response.text or "").strip()
    return text[:500] if text else (response.reason or f"HTTP {response.status_code}")


def _message_parts(body: dict[str, Any]) -> list[str]:
    parts = [str(m) for m in body.get("errorMessages") or []]
    errors = body.get("errors")
    if isinstance(errors, dict):
        parts += [f"{k}: {v}" for k, v in errors.items()]
    elif isinstance(errors, list):
        parts += [str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors]
    for key in ("errorMessage", "message", "error"):
        if isinstance(body.get(key), str) and body[key]:
            parts.append(body[key])
    if body.get("code") and body.get("description"):  # awork
        parts.append(f"{body['code']}: {body['description']}")
        parts += [f"{v.get('property')}: {v.get('message')}" for v in body.get("validationErrors") or []
                  if isinstance(v, dict)]
    elif body.get("code") and not parts:
        parts.append(str(body["code"]))
    return parts


class Download:
    """A response body to stream (``Destination.call(..., stream=True)``): ``save`` writes it to
    a file chunk by chunk, so an image of any size never sits in memory. Use it as a context
    manager, so the pooled connection is released even if nobody reads the body."""

    CHUNK = 64 * 1024

    def __init__(self, response: requests.Response) -> None:
        self.response = response

    @property
    def content_type(self) -> str:
        return self.response.headers.get("Content-Type", "application/octet-stream")

    def save(self, path: str) -> int:
        """Write the body to ``path``; returns the number of bytes written."""
        with open(path, "wb") as fh:
            return self.copy_to(fh)

    def copy_to(self, fh: IO[bytes]) -> int:
        """Write the body to an open binary file; returns the number of bytes written."""
        written = 0
        try:
            for chunk in self.response.iter_content(self.CHUNK):
                fh.write(chunk)
                written += len(chunk)
        except requests.RequestException as exc:
            raise RetryableError(f"connection lost while reading the body: {_reason(exc)}") from None
        return written

    def close(self) -> None:
        self.response.close()

    def __enter__(self) -> Download:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
