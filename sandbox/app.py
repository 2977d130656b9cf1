"""The sandbox ASGI app: Starlette routes for every service, wrapped in a pure-ASGI middleware
that logs every request (with verdict), applies fault rules and the per-credential rate limit.

The middleware is raw ASGI (not BaseHTTPMiddleware) so request bodies keep streaming and the
per-request overhead stays small.
"""

from __future__ import annotations

import time
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox import assets, awork, control, jira, marketplace, media
from sandbox.auth import credential_label
from sandbox.errors import ApiError, api_error_handler, service_of, set_verdict
from sandbox.faults import (
    apply_fault,
    fault_action,
    lose_reply,
    matches,
    rate_limit_headers,
    read_slowly,
    send_json,
    too_many_requests,
)
from sandbox.state import Config, RequestRecord, Seed, State


async def http_error_handler(request: Request, exc: Exception) -> Response:
    """Unknown routes / wrong methods, in the owning service's error shape."""
    assert isinstance(exc, HTTPException)
    message = "Not Found" if exc.status_code == 404 else str(exc.detail)
    return await api_error_handler(request, ApiError(exc.status_code, message))


class SandboxMiddleware:
    """Request log + faults + rate limiting, in front of the router."""

    def __init__(self, app: ASGIApp, state: State) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        service = service_of(path)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        label = credential_label(headers, self.state.config)
        scope.setdefault("state", {})
        status = [0]
        generation = self.state.generation

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            if service == "sandbox":
                await self.app(scope, receive, send_wrapper)
                return
            serve = await self.intercept(scope, receive, send_wrapper, service, label)
            if serve is not None:
                if self.state.generation != generation:
                    return  # reset while a fault held it: dropped unanswered, like a cut connection
                await self.app(scope, serve, send_wrapper)
        finally:
            if service == "sandbox" or self.state.generation == generation:
                self.log(scope, method, path, status[0], service, label)

    async def intercept(self, scope: Scope, receive: Receive, send: Send, service: str,
                        label: str | None) -> Receive | None:
        """Apply faults then the rate limit: None if one of them answered, else the ``receive``
        to serve the request with (slowed by a ``read_kib_per_s`` rule)."""
        raw = scope.get("raw_path") or b""
        paths = (scope["path"], raw.decode("latin-1"))
        for rule in list(self.state.faults.values()):
            if not matches(rule, scope["method"], paths):
                continue
            if rule.lost_reply:
                verdict = await lose_reply(rule, self.app, scope, receive, send, service)
                scope["state"]["verdict"] = f"fault {rule.id}: {verdict}"
                return None
            scope["state"]["verdict"] = f"fault {rule.id}: {fault_action(rule)}"
            if await apply_fault(rule, service, self.state.config, receive, send):
                return None
            if rule.read_kib_per_s:
                receive = read_slowly(receive, rule.read_kib_per_s)
        return receive if await self.within_rate_limit(scope, send, service, label) else None

    async def within_rate_limit(self, scope: Scope, send: Send, service: str, label: str | None) -> bool:
        """True if the request may go on; else it was answered 429 as the service would."""
        buckets = self.state.buckets
        if buckets is None:
            return True
        wait = buckets.take(label or "anonymous")
        if wait == 0:
            return True
        limit = max(1, round(self.state.rate_per_second or 1))
        headers = rate_limit_headers(service, wait, limit, self.state.config)
        if service in ("assets", "media") and not self.state.config.assets_retry_after:
            headers.pop("Retry-After", None)
        scope["state"]["verdict"] = f"429 rate limited ({limit}/s per credential)"
        await send_json(send, 429, too_many_requests(service, "Rate limit exceeded.", self.state.config), headers)
        return False

    def log(self, scope: Scope, method: str, path: str, status: int, service: str, label: str | None) -> None:
        if service == "sandbox":
            return  # keep the log about the emulated services, not our own control calls
        raw = scope.get("raw_path")
        shown = raw.decode("latin-1") if raw else path
        verdict = scope["state"].get("verdict") or ("cut" if status == 0 else f"{status}")
        record = RequestRecord(time.time(), method, shown, status, verdict, label, service)
        self.state.requests.append(record)


def create_app(config: Config, data_dir: Path, seed: bool = True) -> Starlette:
    """Build the ASGI app: Starlette router behind the logging/fault/rate-limit middleware."""
    (data_dir / "blobs").mkdir(parents=True, exist_ok=True)
    state = State(data_dir, config, Seed.create() if seed else None)
    routes = [
        *control.routes,
        *assets.routes,
        *media.routes,
        *jira.routes,
        *marketplace.routes,
        *awork.routes,
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={ApiError: api_error_handler, HTTPException: http_error_handler},
        middleware=[Middleware(SandboxMiddleware, state=state)],
    )
    app.state.sandbox = state
    return app


__all__ = ["create_app", "set_verdict"]
