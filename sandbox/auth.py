"""Authentication as the real services do it.

- Atlassian (Jira, Assets gateway) and Marketplace: HTTP Basic `email:api_token`.
- awork: `Authorization: Bearer <token>`.
- Media service: `Authorization: Bearer <JWT>` plus `X-Client-Id`, JWT issued by the Assets
  credentials endpoint. We hand-roll HS256 JWTs (hmac + base64url): no extra dependency, and
  the sandbox only needs to verify tokens it minted itself.

The request log stores a credential *label* (email, "awork-bearer", "media:<clientId>"), never
the secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from typing import Any

from starlette.requests import Request

from sandbox.state import Config


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """(email, token) from a Basic Authorization header, or None."""
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    email, sep, token = decoded.partition(":")
    return (email, token) if sep else None


def bearer_token(header: str | None) -> str | None:
    if not header or not header.lower().startswith("bearer "):
        return None
    return header[7:].strip() or None


def basic_user(request: Request, config: Config) -> str | None:
    """The email of a valid Basic credential, else None."""
    pair = parse_basic(request.headers.get("authorization"))
    if pair is None:
        return None
    accepted = [(config.email, config.token), *[tuple(p) for p in config.extra_basic]]
    for email, token in accepted:
        if hmac.compare_digest(pair[0], email) and hmac.compare_digest(pair[1], token):
            return email
    return None


def awork_ok(request: Request, config: Config) -> bool:
    token = bearer_token(request.headers.get("authorization"))
    return token is not None and hmac.compare_digest(token, config.bearer)


def credential_label(headers: dict[str, str], config: Config) -> str | None:
    """A non-secret name for the credential on a request (rate limiting + request log)."""
    auth = headers.get("authorization")
    pair = parse_basic(auth)
    if pair is not None:
        return pair[0]
    token = bearer_token(auth)
    if token is None:
        return None
    if hmac.compare_digest(token, config.bearer):
        return "awork-bearer"
    claims = peek_claims(token)
    if claims and isinstance(claims.get("iss"), str):
        return f"media:{claims['iss']}"
    return "bearer:" + hashlib.sha256(token.encode()).hexdigest()[:8]


def mint_jwt(secret: bytes, claims: dict[str, Any]) -> str:
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = _b64url(hmac.new(secret, signing_input, hashlib.sha256).digest())
    return f"{header}.{payload}.{signature}"


def peek_claims(token: str) -> dict[str, Any] | None:
    """Claims without verification (only used to label the credential)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(_b64url_decode(parts[1]))
    except (ValueError, binascii.Error):
        return None
    return claims if isinstance(claims, dict) else None


class JwtError(Exception):
    """Token rejected; the message is what the client gets back."""


def verify_jwt(secret: bytes, token: str, now: float | None = None) -> dict[str, Any]:
    """Verify signature, nbf and exp; return the claims or raise JwtError."""
    parts = token.split(".")
    if len(parts) != 3:
        raise JwtError("Malformed token")
    expected = hmac.new(secret, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
    try:
        signature = _b64url_decode(parts[2])
    except (ValueError, binascii.Error) as exc:
        raise JwtError("Malformed token") from exc
    if not hmac.compare_digest(signature, expected):
        raise JwtError("Invalid token signature")
    claims = peek_claims(token)
    if claims is None:
        raise JwtError("Malformed token")
    current = time.time() if now is None else now
    if current < float(claims.get("nbf", 0)):
        raise JwtError("Token is not valid yet")
    if current >= float(claims.get("exp", 0)):
        raise JwtError("Token expired")
    return claims
