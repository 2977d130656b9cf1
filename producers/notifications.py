"""Signed completion webhooks, the part producer and worker share: which callback URLs are allowed
(checked at submit, and again by the worker right before it connects), the body and the signature.

A job that carries ``callback_url`` is POSTed ``{"event", "delivery_id", "created_at", "job"}``
when a run of it ends (a batch with one: ``{…, "batch"}`` when it completes: ``batch.completed``),
with ``Ferry-Event``, ``Ferry-Delivery`` and
``Ferry-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">``. The secret is the
worker's environment variable that ``[notifications] secret_env`` names; a job never holds it.

URLs: ``https://`` only unless ``[notifications] allow_http``; every address the host resolves to
must be public (not loopback, private, link-local, cloud metadata, nor IPv6 carrying one of these:
``producers.addresses``, the same judgement as a job's ``uri``) unless ``allow_private``.
The worker resolves again at delivery and connects to an address it has just checked, so a name
that resolved to a public address at submit cannot be pointed at an internal one later (DNS
rebinding); it never follows a redirect.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from producers.addresses import address_kind, parse
from producers.config import NotificationsConfig
from producers.records import BatchRecord, JobRecord

EVENT_HEADER = "Ferry-Event"
DELIVERY_HEADER = "Ferry-Delivery"
SIGNATURE_HEADER = "Ferry-Signature"
MAX_URL_LENGTH = 2000

Resolver = Callable[[str, int], list[str]]


class CallbackRefused(ValueError):
    """A callback URL Ferry will not call; the message says why and which setting would allow it."""


class Unresolvable(CallbackRefused):
    """The callback's host did not resolve (at delivery: maybe for a while only, so it is retried)."""


@dataclass(frozen=True)
class Target:
    """A checked callback URL: where to connect (an address just checked) and what to ask for."""

    url: str
    scheme: str
    host: str  # as written: the Host header, and the name the TLS certificate must carry
    port: int
    path: str  # path and query
    addresses: tuple[str, ...]

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (TCP), in the resolver's order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_url(url: str, config: NotificationsConfig, resolver: Resolver = resolve) -> Target:
    """The target of ``url`` if Ferry may call it under ``config``; CallbackRefused otherwise."""
    if len(url) > MAX_URL_LENGTH:
        raise CallbackRefused(f"longer than {MAX_URL_LENGTH} characters")
    parts = urlsplit(url)
    allowed = ("https", "http") if config.allow_http else ("https",)
    if parts.scheme not in allowed:
        hint = "" if config.allow_http else " ([notifications] allow_http = true allows http://)"
        raise CallbackRefused(f"must be an https:// URL{hint}")
    if not parts.hostname:
        raise CallbackRefused("names no host")
    if parts.username or parts.password:
        raise CallbackRefused("must not carry credentials (user:password@); the signature authenticates Ferry")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise CallbackRefused("has an invalid port") from None
    try:
        addresses = resolver(parts.hostname, port)
    except (OSError, UnicodeError) as exc:
        raise Unresolvable(f"host {parts.hostname} does not resolve ({exc})") from None
    if not addresses:
        raise Unresolvable(f"host {parts.hostname} does not resolve")
    if not config.allow_private:
        _refuse_inner(parts.hostname, addresses)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(url, parts.scheme, parts.hostname, port, path, tuple(addresses))


def _refuse_inner(host: str, addresses: list[str]) -> None:
    """CallbackRefused if one of ``addresses`` is not public (``producers.addresses``)."""
    for address in addresses:
        kind = address_kind(parse(address))
        if kind is not None:
            shown = host if host == address else f"{host} ({address})"
            raise CallbackRefused(f"{shown} is a {kind} address (not public); "
                                  "[notifications] allow_private = true allows it")


# ---- what is sent ---------------------------------------------------------------------------------
def body(event: str, delivery_id: str, created_at: str, job: JobRecord) -> bytes:
    """The delivery's JSON body; ``job`` is the record ``ferry status --json`` prints, without its
    ``notifications`` (the deliveries' own progress, which this body would freeze mid-way)."""
    document = {"event": event, "delivery_id": delivery_id, "created_at": created_at,
                "job": job.model_dump(mode="json", exclude={"notifications"})}
    return json.dumps(document, separators=(",", ":")).encode()


def batch_body(event: str, delivery_id: str, created_at: str, batch: BatchRecord) -> bytes:
    """A batch's completion body: ``batch`` is the record ``ferry batch status --json`` prints
    (its ``failures`` says where to list the failed jobs), without its deliveries."""
    document = {"event": event, "delivery_id": delivery_id, "created_at": created_at,
                "batch": batch.model_dump(mode="json", exclude={"notifications"})}
    return json.dumps(document, separators=(",", ":")).encode()


def sign(secret: bytes, timestamp: int, raw_body: bytes) -> str:
    """The ``Ferry-Signature`` header value for ``raw_body`` sent at ``timestamp``."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + raw_body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def headers(event: str, delivery_id: str, signature: str) -> dict[str, str]:
    return {"Content-Type": "application/json", EVENT_HEADER: event, DELIVERY_HEADER: delivery_id,
            SIGNATURE_HEADER: signature, "User-Agent": "Ferry-Webhooks/1"}


def secret(config: NotificationsConfig, environ: Any = os.environ) -> bytes | None:
    """The signing secret from the variable ``secret_env`` names; None when it is unset or empty."""
    value = environ.get(config.secret_env, "")
    return value.encode() if value else None
