"""What an endpoint depends on, taken from ``app.state`` (``create_app`` puts them there): the
``Ferry`` it serves and the ``Guard`` that knows the tokens and sessions. Every route is a
module-level function that names these in its signature, so each is found by grep and can be
served by any app that sets the state.

Each way in checks the scope the route declares in ``producers.web.scopes``: 403 naming the
token's label and the missing scope when its grant lacks it.
"""

from typing import Annotated, cast

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials

from producers.client import Ferry
from producers.web import scopes
from producers.web.auth import Guard, Principal, bearer_scheme, check_scope

Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


def get_ferry(request: Request) -> Ferry:
    return cast(Ferry, request.app.state.ferry)


def get_guard(request: Request) -> Guard:
    return cast(Guard, request.app.state.guard)


def bearer(request: Request, credentials: Credentials) -> Principal:
    """The API's routes: a bearer token only."""
    who = Principal("bearer", get_guard(request).authorize(credentials).grant)
    check_scope(who, scopes.required(request))
    return who


def principal(request: Request, credentials: Credentials) -> Principal:
    """Replay, purge, the operator's routes: a bearer token, or a dashboard session (with its
    CSRF token on a change)."""
    who = get_guard(request).require(request, credentials)
    check_scope(who, scopes.required(request))
    return who


def viewer(request: Request, credentials: Credentials) -> Principal | None:
    """HTML pages: who is looking, or None (the page then redirects to /login)."""
    who = get_guard(request).viewer(request, credentials)
    if who is not None:
        check_scope(who, scopes.required(request))
    return who


FerryDep = Annotated[Ferry, Depends(get_ferry)]
GuardDep = Annotated[Guard, Depends(get_guard)]
Auth = Annotated[Principal, Depends(principal)]
Bearer = Annotated[Principal, Depends(bearer)]
Viewer = Annotated[Principal | None, Depends(viewer)]
