"""The transport boundary: every destination call goes through ``Destination.call``, which turns
whatever happened (a response, a refused connection, a cut) into a result or one ``DestinationError``.
Clients above it never see a ``requests`` exception or an unchecked status."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import IO, Any, NamedTuple, Protocol
from urllib.parse import quote

import requests
from requests.auth import AuthBase
from urllib3.exceptions import NewConnectionError, ReadTimeoutError
from urllib3.util import parse_url

from worker import metrics, telemetry
from worker.errors import OutcomeUnknown, PermanentError, RetryableError
from worker.retry import NOT_PROCESSED_STATUSES, RETRYABLE_STATUSES, server_retry_delay
from worker.transport import DEFAULT_STALL_SECONDS, DEFAULT_TRANSPORT, Transport

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


# ---- routes: the only paths a client can send -----------------------------------------------------
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
# What one rendered segment may hold: unreserved characters, ':' and percent escapes, never a
# dot-segment, literal or encoded (a server that decodes %2E would collapse it). ':' stays literal
# (legal in a path segment, RFC 3986 §3.3) since servers differ in whether they decode %3A; '/',
# '?', '#', '%' and everything else are escaped.
_SEGMENT_RE = r"(?!\.+(?:/|\?|$))(?:[A-Za-z0-9._~:-]|%(?!2[Ee])[0-9A-Fa-f]{2})+"
SEGMENT_SAFE = ":"


class UnsafePath(PermanentError):
    """A value that cannot be one path segment: the request is refused before anything is sent."""


def path_segment(name: str, value: object) -> str:
    """``value`` as exactly one percent-encoded path segment. Empty and dot-only values are
    refused (urllib3 would collapse ``..`` and step out of the route); every '/', '?', '#' and
    '%' is escaped, so no value can add a segment, a query or a fragment."""
    text = str(value)
    if not text or text.strip(".") == "":
        raise UnsafePath(f"{name}={text!r} cannot be a URL path segment; nothing was sent")
    return quote(text, safe=SEGMENT_SAFE)


class RoutedPath(NamedTuple):
    """A path rendered from a declared route (``Route.path``): what ``Destination.call`` sends."""

    route: Route
    text: str  # encoded path, relative to the destination's base URL, with its query if any
    query: str = ""


@dataclass(frozen=True)
class Route:
    """A request path a client declares once (``"/rest/api/3/project/{project}/avatar"``),
    relative to its destination's base URL. ``path`` fills each ``{name}`` with one encoded
    segment; ``Destination.call`` sends a ``RoutedPath`` only, and only for its declared routes.
    The empty route is the base URL itself (a job's ``uri``)."""

    template: str
    names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(_PLACEHOLDER.findall(self.template)))

    def path(self, *, query: Mapping[str, str] | None = None, **values: object) -> RoutedPath:
        if set(values) != set(self.names):
            raise TypeError(f"route {self.template} takes {self.names}, got {tuple(values)}")
        text = _PLACEHOLDER.sub(lambda m: path_segment(m.group(1), values[m.group(1)]), self.template)
        encoded = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in (query or {}).items())
        return RoutedPath(self, f"{text}?{encoded}" if encoded else text, encoded)

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        """The encoded path (without query) this route can produce."""
        parts = _PLACEHOLDER.split(self.template)
        return re.compile("".join(re.escape(p) if i % 2 == 0 else _SEGMENT_RE for i, p in enumerate(parts)))


def new_session(stall_seconds: float = DEFAULT_STALL_SECONDS) -> requests.Session:
    """A session whose requests follow the stall rule (``worker.transport``)."""
    session = requests.Session()
    for scheme in ("https://", "http://"):
        session.mount(scheme, Transport(stall_seconds))
    session.headers["User-Agent"] = USER_AGENT
    session.headers["Accept"] = "application/json"
    return session


class Destination:
    """One base URL with its auth, over a shared ``requests.Session`` (connection pooling).
    ``routes``: the only paths it sends (a client passes its declared routes through ``only``)."""

    def __init__(self, session: requests.Session, base_url: str, *, auth: Auth = None,
                 headers: Mapping[str, str] | None = None, limiter: Limiter | None = None,
                 routes: Collection[Route] = ()) -> None:
        self.session = session
        self.base = base_url
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.headers = dict(headers or {})
        self.limiter = limiter
        self.routes = frozenset(routes)
        self._base_path = (parse_url(self.base_url).path or "").rstrip("/")  # routes are checked below it

    def only(self, *routes: Route) -> Destination:
        """The same destination, limited to ``routes``: what a client holds."""
        return Destination(self.session, self.base, auth=self.auth, headers=self.headers,
                           limiter=self.limiter, routes=routes)

    def url(self, path: RoutedPath) -> str:
        if not path.route.template:
            return self.base  # the empty route: the base URL exactly as given
        return f"{self.base_url}/{path.text.lstrip('/')}"

    def checked_url(self, method: str, path: RoutedPath) -> str:
        """The URL to send, once it is certain to be a declared route as urllib3 will send it
        (urllib3 removes dot-segments, so a path that changes there is refused too)."""
        url = self.url(path)
        if path.route not in self.routes or not self._sends_route(url, path):
            raise UnsafePath(f"refused to send {method} {parse_url(url).path}: not a route this "
                             "client declares")
        return url

    def _sends_route(self, url: str, path: RoutedPath) -> bool:
        if not path.route.template:
            return True  # the base URL itself, as given: nothing of ours was added to it
        sent = parse_url(url)
        return (sent.path or "").startswith(self._base_path) and (sent.query or "") == path.query \
            and path.route.pattern.fullmatch((sent.path or "")[len(self._base_path):]) is not None

    def call(
        self,
        method: str,
        path: RoutedPath,
        *,
        ok: Iterable[int] = (200, 201, 204),
        upload: bool = False,
        repeatable: bool = True,
        check: str = "the destination",
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Send one request. One that makes no progress for the session's stall window (no
        byte of the body accepted, no byte of the answer; ``worker.transport``) is aborted as a
        lost connection; an ``upload`` or a streamed answer may take that long to begin, others
        at most ``READ_TIMEOUT``. ``repeatable=False``: the request creates something visible, so an answer that may
        follow its success (500/502/504, a timeout or a cut after sending) is ``OutcomeUnknown``
        rather than a blind retry that could duplicate it; ``check`` tells the human where to
        look. Only 429, 503 and connect errors before any byte was sent are retried for it.
        Errors name no step: the task running the step names it where it catches them."""
        url = self.checked_url(method, path)
        adapter = self.session.get_adapter(url)
        transport = adapter if isinstance(adapter, Transport) else DEFAULT_TRANSPORT
        timeout = transport.timeouts(long=upload or bool(kwargs.get("stream")))
        slot = self.limiter.acquire() if self.limiter is not None else None
        traced = telemetry.request_span(method, path.route.template, self.base_url)
        response: requests.Response | None = None
        try:
            response = self.session.request(
                method, url, auth=self.auth, headers={**self.headers, **(headers or {})},
                timeout=timeout, **kwargs)
        except (requests.ConnectTimeout, requests.ConnectionError, requests.Timeout) as exc:
            raise _transport_error(exc, repeatable, check, transport.stall_seconds) from None
        except requests.RequestException as exc:
            raise RetryableError(f"request failed: {exc}") from None
        finally:
            if self.limiter is not None:
                self.limiter.release(slot)
            metrics.http_answer(response.status_code if response is not None else None,
                                _body_size(response) if upload else None)
            if traced is not None:
                traced.end(response.status_code if response is not None else None, _body_size(response),
                           response.headers.get("Content-Length") if response is not None else None)
        if response.status_code in set(ok):
            return response
        error = classify(response, repeatable=repeatable, check=check)
        if self.limiter is not None and isinstance(error, RetryableError) and response.status_code == 429:
            self.limiter.pause(error.retry_after or 0.0)
        raise error


def _body_size(response: requests.Response | None) -> int | None:
    length = response.request.headers.get("Content-Length") if response is not None else None
    return int(length) if length and length.isdigit() else None


def _transport_error(exc: requests.RequestException, repeatable: bool, check: str,
                     stall_seconds: float) -> Exception:
    if _never_sent(exc):
        return RetryableError(f"cannot connect: {_reason(exc)}")
    what = (f"stalled: no progress for {stall_seconds:g} s (stall_seconds)" if _timed_out(exc)
            else f"connection lost: {_reason(exc)}")
    if repeatable:
        return RetryableError(what)
    return outcome_unknown(f"{what}, after the request was sent", check)


def outcome_unknown(what: str, check: str, status: int | None = None) -> OutcomeUnknown:
    """The one wording of "it may have landed": what happened, and where a human looks first."""
    return OutcomeUnknown(
        f"outcome unknown: {what}, so the request may have taken effect; check {check} before "
        "`ferry replay --force`", status=status)


def _never_sent(exc: requests.RequestException) -> bool:
    return isinstance(exc, requests.ConnectTimeout) or _caused_by(exc, NewConnectionError | ConnectionRefusedError)


def _timed_out(exc: requests.RequestException) -> bool:
    return isinstance(exc, requests.Timeout) or _caused_by(exc, TimeoutError | ReadTimeoutError)


def _caused_by(exc: BaseException, kinds: Any) -> bool:
    # requests wraps urllib3's errors in args, not in __cause__: walk both to find the root.
    seen: list[BaseException] = [exc]
    while seen:
        cause = seen.pop()
        if isinstance(cause, kinds):
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
