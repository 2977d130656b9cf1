"""Signed completion webhooks, the part producer and worker share: which callback URLs are allowed
(checked at submit, and again by the worker right before it connects), the body and the signature.

A job that carries ``callback_url`` is POSTed ``{"event", "delivery_id", "created_at", "job"}``
when a run of it ends, with ``Ferry-Event``, ``Ferry-Delivery`` and
``Ferry-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">``. The secret is the
worker's environment variable that ``[notifications] secret_env`` names; a job never holds it.

URLs: ``https://`` only unless ``[notifications] allow_http``; every address the host resolves to
must be public (not loopback, private, link-local, cloud metadata, …) unless ``allow_private``.
The worker resolves again at delivery and connects to an address it has just checked, so a name
that resolved to a public address at submit cannot be pointed at an internal one later (DNS
rebinding); it never follows a redirect.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from producers.config import NotificationsConfig
from producers.records import JobRecord

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


def is_public(address: str) -> bool:
    """Whether an address is on the public internet: not loopback, private, link-local (the
    169.254.169.254 metadata service), shared (100.64/10), multicast, reserved or unspecified."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


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
        inner = [a for a in addresses if not is_public(a)]
        if inner:
            raise CallbackRefused(
                f"host {parts.hostname} resolves to a non-public address ({inner[0]}: loopback, private, "
                "link-local or metadata); [notifications] allow_private = true allows it")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(url, parts.scheme, parts.hostname, port, path, tuple(addresses))


# ---- what is sent ---------------------------------------------------------------------------------
def body(event: str, delivery_id: str, created_at: str, job: JobRecord) -> bytes:
    """The delivery's JSON body; ``job`` is the record ``ferry status --json`` prints, without its
    ``notifications`` (the deliveries' own progress, which this body would freeze mid-way)."""
    document = {"event": event, "delivery_id": delivery_id, "created_at": created_at,
                "job": job.model_dump(mode="json", exclude={"notifications"})}
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
