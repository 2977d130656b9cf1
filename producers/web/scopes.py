"""Which scope each route of ``ferry api`` needs: the one place a route declares it.

A token (``[api.tokens.<label>] scopes``) holds some of ``read``, ``submit``, ``operate`` (cancel,
pause/resume, replay, notify, priority) and ``admin`` (purge, delete); each is granted on its own,
none implies another. ``public`` routes want no token at all; ``/metrics`` wants the token of
``[api] metrics_token_env`` (``metrics``). The auth dependencies (``producers.web.deps``) look the
request's route up here, so a route's scope is never repeated in its decorator.

A route missing here is refused to every token without ``admin`` (fail closed), and
``tests/unit/test_route_scopes.py`` fails until it is declared.
"""

from enum import StrEnum

from fastapi import Request


class Scope(StrEnum):
    PUBLIC = "public"
    METRICS = "metrics"  # its own token: [api] metrics_token_env
    READ = "read"
    SUBMIT = "submit"
    OPERATE = "operate"
    ADMIN = "admin"


GRANTABLE = (Scope.READ, Scope.SUBMIT, Scope.OPERATE, Scope.ADMIN)
UNDECLARED = Scope.ADMIN  # what a route nobody declared needs: refused unless the token may do anything

ROUTE_SCOPES: dict[str, Scope] = {
    # probes, the login form and the dashboard's assets
    "GET /healthz": Scope.PUBLIC,
    "GET /readyz": Scope.PUBLIC,
    "GET /login": Scope.PUBLIC,
    "POST /login": Scope.PUBLIC,
    "POST /logout": Scope.PUBLIC,  # ends the cookie's own session (CSRF-checked) or nothing
    "GET /static/{name}": Scope.PUBLIC,
    "GET /metrics": Scope.METRICS,
    # reading jobs and the fleet
    "GET /jobs": Scope.READ,
    "GET /jobs/{job_id}": Scope.READ,
    "GET /jobs:replay": Scope.READ,
    "GET /events": Scope.READ,
    "GET /connections": Scope.READ,
    "GET /workers": Scope.READ,
    "GET /openapi.json": Scope.READ,
    "GET /": Scope.READ,
    "GET /ui/job/{job_id}": Scope.READ,
    "GET /ui/fragments/list": Scope.READ,
    "GET /ui/fragments/job/{job_id}": Scope.READ,
    "GET /ui/summary": Scope.READ,
    "GET /ui/jobs": Scope.READ,
    "GET /batches": Scope.READ,
    "GET /batches/{batch_id}": Scope.READ,
    "GET /ui/batch/{batch_id}": Scope.READ,
    "GET /ui/fragments/batch/{batch_id}": Scope.READ,
    # submitting
    "POST /jobs": Scope.SUBMIT,
    "POST /jobs:batch": Scope.SUBMIT,
    "POST /batches": Scope.SUBMIT,
    "POST /batches/{batch_id}/seal": Scope.SUBMIT,
    # operating
    "POST /jobs/{job_id}/replay": Scope.OPERATE,
    "POST /jobs:replay": Scope.OPERATE,
    "POST /jobs/{job_id}/cancel": Scope.OPERATE,
    "POST /jobs:cancel": Scope.OPERATE,
    "POST /jobs/{job_id}/notify": Scope.OPERATE,
    "POST /connections/{name}/pause": Scope.OPERATE,
    "POST /connections/{name}/resume": Scope.OPERATE,
    "POST /batches/{batch_id}/replay": Scope.OPERATE,
    "POST /batches/{batch_id}/cancel": Scope.OPERATE,
    "POST /batches/{batch_id}/notify": Scope.OPERATE,
    "POST /jobs/{job_id}/priority": Scope.OPERATE,
    "POST /batches/{batch_id}/priority": Scope.OPERATE,
    # destroying
    "DELETE /jobs/{job_id}": Scope.ADMIN,
    "POST /jobs:purge": Scope.ADMIN,
}


def route_key(method: str, path: str) -> str:
    """How ``ROUTE_SCOPES`` names a route: ``"POST /jobs/{job_id}/cancel"`` (the path template)."""
    return f"{method} {path}"


def declared(method: str, path: str) -> Scope | None:
    return ROUTE_SCOPES.get(route_key(method, path))


def required(request: Request) -> Scope:
    """The scope the request's route needs (``UNDECLARED``'s when it declares none)."""
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    return declared(request.method, path) or UNDECLARED
