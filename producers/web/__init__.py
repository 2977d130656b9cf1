"""Replay over HTTP and the dashboard, added to the API app by ``install``.

``producers.api.create_app`` calls ``install(app, ferry, authorize=..., tokens=...)`` with its own
bearer dependency, so these routes accept exactly the tokens the API accepts (plus a browser
session opened with one of them).
"""

from fastapi import FastAPI

from producers.client import Ferry
from producers.web.actions import actions_router
from producers.web.auth import Authorize, Guard
from producers.web.dashboard import dashboard_router


def install(app: FastAPI, ferry: Ferry, *, authorize: Authorize, tokens: list[str]) -> None:
    guard = Guard(ferry.redis, authorize, tokens)
    app.include_router(actions_router(ferry, guard))
    app.include_router(dashboard_router(ferry, guard))


__all__ = ["install"]
