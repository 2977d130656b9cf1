"""Fault injection and the per-credential rate limiter, applied before routing.

Faults: per path regex (+ optional method), answer a status N times or with a probability, add
latency, or cut the connection mid-body; or ``lost_reply``: let the request be processed for
real, then replace its answer with ``status`` (502 unless given) or cut it — what a gateway
does when it loses the answer of a create that took effect. Rate limiting: a token bucket per credential label, with
429s shaped like each service sends them (README "Rate limits"):
- Jira and Marketplace: `Retry-After` + `X-RateLimit-Reset` (ISO minute) + `RateLimit-Reason`.
  Marketplace limits are UNCONFIRMED; we use the Jira shape since it sits on the same platform.
- Assets gateway (and the media service, UNCONFIRMED): `Retry-After` only when
  `assets_retry_after` is configured, because JSDCLOUD-11605 documents 429s without it.
- awork: `RateLimit-*` + `X-RateLimit-*-Second/Minute`, no `Retry-After`, awork's error body;
  with `awork_429 = "kong"` (its Kong gateway, inferred from those headers) also `Retry-After`
  and Kong's body `{"message": "API rate limit exceeded"}`.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import socket
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.blobs import drain
from sandbox.errors import error_body
from sandbox.state import Config, FaultRule

DEFAULT_RETRY_AFTER = 1
LOST_REPLY_STATUS = 502


def iso_minute(epoch: float) -> str:
    """`yyyy-MM-ddTHH:mmZ`, the X-RateLimit-Reset format Jira uses."""
    return time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(epoch))


def rate_limit_headers(service: str, retry_after: int | None, limit: int, config: Config) -> dict[str, str]:
    """Headers a 429 from `service` carries."""
    wait = DEFAULT_RETRY_AFTER if retry_after is None else retry_after
    if service == "awork":
        kong = {"Retry-After": str(wait)} if config.awork_429 == "kong" else {}
        return kong | {
            "RateLimit-Limit": str(limit),
            "RateLimit-Remaining": "0",
            "RateLimit-Reset": str(wait),
            "X-RateLimit-Limit-Second": str(limit),
            "X-RateLimit-Remaining-Second": "0",
            "X-RateLimit-Limit-Minute": str(limit * 60),
            "X-RateLimit-Remaining-Minute": "0",
        }
    if service in ("assets", "media"):
        # An explicit retry_after on a fault rule is honoured; otherwise configurable absence.
        if retry_after is not None or config.assets_retry_after:
            return {"Retry-After": str(wait)}
        return {}
    return {
        "Retry-After": str(wait),
        "X-RateLimit-Reset": iso_minute(time.time() + wait),
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": "0",
        "RateLimit-Reason": "jira-burst-based",
    }


def too_many_requests(service: str, message: str, config: Config) -> Any:
    """The body of a 429 from ``service``: its own error shape, or Kong's for awork behind it."""
    if service == "awork" and config.awork_429 == "kong":
        return {"message": "API rate limit exceeded"}
    return error_body(service, 429, message)


class TokenBuckets:
    """One token bucket per credential label; capacity = one second's worth of requests."""

    def __init__(self, per_second: float) -> None:
        self.rate = per_second
        self.capacity = max(1.0, per_second)
        self.buckets: dict[str, tuple[float, float]] = {}

    def take(self, label: str) -> int:
        """0 if a token was taken, else the whole seconds to wait before the next one."""
        now = time.monotonic()
        tokens, stamp = self.buckets.get(label, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - stamp) * self.rate)
        if tokens >= 1.0:
            self.buckets[label] = (tokens - 1.0, now)
            return 0
        self.buckets[label] = (tokens, now)
        return max(1, math.ceil((1.0 - tokens) / self.rate))


def new_rule(spec: dict[str, Any]) -> FaultRule:
    """Validate a POST /_sandbox/faults body into a rule (raises ValueError)."""
    path = spec.get("path")
    if not isinstance(path, str):
        raise ValueError("`path` (a regex) is required")
    re.compile(path)
    rule = FaultRule(
        id=uuid.uuid4().hex[:12],
        path=path,
        method=(spec.get("method") or None),
        status=spec.get("status"),
        times=spec.get("times"),
        probability=spec.get("probability"),
        retry_after=spec.get("retry_after"),
        headers={str(k): str(v) for k, v in (spec.get("headers") or {}).items()},
        latency_ms=int(spec.get("latency_ms") or 0),
        read_kib_per_s=float(spec["read_kib_per_s"]) if spec.get("read_kib_per_s") else None,
        message=str(spec["message"]) if spec.get("message") is not None else None,
        cut=bool(spec.get("cut")),
        lost_reply=bool(spec.get("lost_reply")),
    )
    if rule.lost_reply and rule.status is None and not rule.cut:
        rule.status = LOST_REPLY_STATUS
    if rule.status is None and not rule.cut and not rule.latency_ms and not rule.read_kib_per_s:
        raise ValueError("a rule needs `status`, `cut`, `latency_ms` or `read_kib_per_s`")
    return rule


def fault_action(rule: FaultRule) -> str:
    """What the rule does, for the request log."""
    if rule.cut:
        return "connection cut"
    if rule.status is not None:
        return f"HTTP {rule.status}"
    parts = [f"held unread {rule.latency_ms} ms"] if rule.latency_ms else []
    parts += [f"read at {rule.read_kib_per_s:g} KiB/s"] if rule.read_kib_per_s else []
    return ", ".join(parts)


def matches(rule: FaultRule, method: str, paths: tuple[str, ...]) -> bool:
    if rule.method and rule.method.upper() != method:
        return False
    if rule.times is not None and rule.hits >= rule.times:
        return False
    if not any(re.search(rule.path, p) for p in paths):
        return False
    return rule.probability is None or random.random() < rule.probability


def read_slowly(receive: Receive, kib_per_s: float) -> Receive:
    """``receive`` as a slow link delivers it: after each chunk, the time it takes at ``kib_per_s``.
    The server stops reading from the socket meanwhile (uvicorn pauses past 64 KiB buffered), so
    the client's sends slow down to that rate: steady progress, never a stall."""

    _small_receive_buffer(receive)

    async def slow() -> Message:
        message = await receive()
        body = message.get("body", b"")
        if body:
            await asyncio.sleep(len(body) / (kib_per_s * 1024))
        return message

    slow.__self__ = getattr(receive, "__self__", None)  # type: ignore[attr-defined]  # drop_connection
    return slow


LINK_BUFFER_BYTES = 32 * 1024


def _small_receive_buffer(receive: Receive) -> None:
    """A slow link holds little in flight: without this, the kernel's receive buffer (autotuned
    to megabytes on loopback) would swallow most of the body at once and leave the client
    waiting for an answer as if the server had stalled."""
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, LINK_BUFFER_BYTES)


async def send_json(send: Send, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
    payload = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


async def receive_chunks(receive: Receive):  # type: ignore[no-untyped-def]
    """Async iterator over request body chunks from a raw ASGI receive."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body = message.get("body", b"")
        if body:
            yield body
        if not message.get("more_body", False):
            return


async def cut_connection(receive: Receive, send: Send) -> None:
    """Read part of the request, then drop the connection so the client sees a network error.

    ASGI has no "drop the connection" message. uvicorn's receive callable is a bound method of
    its per-request cycle, which holds the transport; aborting it gives the client a reset /
    remote-disconnect (requests raises ConnectionError). Fallback for other servers: promise a
    long body, send a few bytes and fail, which also truncates the response.
    """
    await receive()
    await drop_connection(receive, send)


async def drop_connection(receive: Receive, send: Send) -> None:
    """Abort the TCP connection of this request (see ``cut_connection``)."""
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    if transport is not None:
        transport.abort()
        await asyncio.sleep(0)
        return
    start = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-length", b"1048576")],
    }
    await send(start)
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    raise ConnectionAbortedError("sandbox fault: connection cut")


async def lose_reply(rule: FaultRule, app: ASGIApp, scope: Scope, receive: Receive, send: Send,
                     service: str) -> str:
    """Run the request through ``app`` (it takes effect), swallow the answer, then answer the
    rule's status or cut the connection. Returns the verdict for the request log."""
    rule.hits += 1
    answered: list[int] = []

    async def swallow(message: Message) -> None:
        if message["type"] == "http.response.start":
            answered.append(message["status"])

    await app(scope, receive, swallow)
    processed = f"processed (HTTP {answered[0] if answered else '?'}), then "
    if rule.cut:
        await drop_connection(receive, send)
        return processed + "reply cut"
    assert rule.status is not None
    message = f"Sandbox fault {rule.id}: HTTP {rule.status} (the request was processed)"
    await send_json(send, rule.status, error_body(service, rule.status, message), rule.headers)
    return processed + f"HTTP {rule.status}"


async def apply_fault(rule: FaultRule, service: str, config: Config, receive: Receive, send: Send) -> bool:
    """Apply one fired rule; True if it produced the response (or cut the connection)."""
    rule.hits += 1
    if rule.latency_ms:
        await asyncio.sleep(rule.latency_ms / 1000)  # held unread: the client's send stalls
    if rule.cut:
        await cut_connection(receive, send)
        return True
    if rule.status is None:
        return False
    # Read (and discard) the body first so the client is not mid-send when we answer.
    await drain(receive_chunks(receive))
    headers: dict[str, str] = {}
    if rule.status == 429:
        headers = rate_limit_headers(service, rule.retry_after, 100, config)
    elif rule.retry_after is not None:
        headers = {"Retry-After": str(rule.retry_after)}
    headers.update(rule.headers)
    message = rule.message if rule.message is not None else f"Sandbox fault {rule.id}: HTTP {rule.status}"
    body = too_many_requests(service, message, config) if rule.status == 429 else error_body(
        service, rule.status, message)
    await send_json(send, rule.status, body, headers)
    return True
