"""Every route of ``ferry api`` (the JSON API's, the dashboard's and the ones hidden from the
OpenAPI document) declares its scope in ``producers.web.scopes.ROUTE_SCOPES``, and the table names
no route that does not exist. What each scope lets a token do is proven route by route in
``tests/integration/test_scoped_tokens.py``."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from producers.client import Ferry
from producers.config import FerryConfig
from producers.web.app import create_app
from producers.web.scopes import ROUTE_SCOPES, declared, route_key


def app_routes(app: FastAPI) -> list[str]:
    """``"METHOD /path"`` of every route the app serves, included routers and hidden ones too."""
    return sorted(route_key(method, str(route.path)) for route in iter_route_contexts(app.routes)
                  for method in route.methods or ())


def offline_app() -> FastAPI:
    # Building the app touches no Redis; nothing here sends a request.
    return create_app(Ferry("redis://127.0.0.1:1/0", config=FerryConfig()), tokens=["unused"])


def test_every_route_of_the_app_declares_its_scope():
    undeclared = [key for key in app_routes(offline_app()) if declared(*key.split(" ", 1)) is None]
    assert not undeclared, "\n".join(
        f'{key} declares no scope: add "{key}": Scope.READ (or PUBLIC, SUBMIT, OPERATE, ADMIN) '
        "to ROUTE_SCOPES in producers/web/scopes.py" for key in undeclared)


def test_the_scope_table_names_only_routes_that_exist():
    assert sorted(set(ROUTE_SCOPES) - set(app_routes(offline_app()))) == []


def test_the_walk_sees_the_dashboard_and_the_hidden_routes():
    routes = app_routes(offline_app())
    assert {"GET /", "GET /ui/fragments/list", "GET /openapi.json", "POST /login",
            "GET /static/{name}", "GET /metrics"} <= set(routes)


def test_the_openapi_document_names_each_operation_s_scope():
    document = offline_app().openapi()
    scopes = {f"{method.upper()} {path}": operation["x-scope"]
              for path, item in document["paths"].items() for method, operation in item.items()}
    assert scopes["POST /jobs"] == "submit" and scopes["POST /jobs:purge"] == "admin"
    assert all(value == ROUTE_SCOPES[key].value for key, value in scopes.items())
