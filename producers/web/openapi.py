"""The HTTP API's contract: what its OpenAPI document promises, stated once for every route.

Other systems generate their clients from ``GET /openapi.json``, so the document must say exactly
what the API answers (``tests/e2e/test_api_contract.py`` fuzzes the live API against it):

- Every error answer has one body, :class:`Problem`: ``detail`` (one sentence) and ``problems``
  (each bad field and why; empty when no field is to blame). ``problem_handlers`` make FastAPI's
  and Starlette's own errors (a malformed body, an unknown path, a refused token) answer with it.
- What every route can answer is added by rule, so a new route cannot forget it (:func:`document`):
  401 and 403 on each route behind the bearer token (FastAPI marks them with ``security``), 422
  on each route that validates a parameter or a body, 400 (unparsable) and 413 (over
  ``[api] max_body_bytes``) on each route that takes a body, 503 on all (the job store or the
  broker unreachable).
- A route declares the rest itself: ``responses=answers(404, 409)``.
- The answers of ``POST /jobs`` link to every operation on one job (``/jobs/{job_id}…``).
- ``POST /jobs`` takes one of the kinds' submissions, a union discriminated by ``kind`` derived
  from ``producers.kinds.KINDS``: each member names its kind, its own ``params`` model and whether
  it takes a ``file``, a ``uri`` or neither. The route itself still validates the loose
  :class:`~producers.client.JobRequest` so that a refusal lists every problem at once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal, Union, cast

import redis
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from kombu.exceptions import OperationalError
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model
from pydantic.fields import FieldInfo
from starlette.exceptions import HTTPException

from producers.client import JobRequest
from producers.kinds import KINDS, Kind
from producers.priority import TENANT_PATTERN, Priority
from producers.web import render
from producers.web.scopes import UNDECLARED, declared

SCHEMAS = "#/components/schemas/"
SUBMISSION = "JobSubmission"

# What each status means wherever it is answered; a route may say more with ``answers(why=...)``.
MEANINGS: dict[int, str] = {
    400: "the body could not be parsed: not UTF-8, or JSON nested too deep",
    401: "no bearer token (or dashboard session) was given",
    403: "the token is not allowed or lacks the scope the operation needs (x-scope), or a "
         "dashboard action came without its CSRF token",
    404: "no such job (it never existed, was purged or expired, or is outside the token's connections)",
    409: "the job is in a state that refuses this (queued, running, succeeded), or the idempotency "
         "key was used for another job",
    413: "the request body is over [api] max_body_bytes",
    422: "the request is invalid: every problem is listed, each naming its field; nothing was done",
    503: "the job store or the broker is unreachable; nothing was done",
}


# ---- the one error body ------------------------------------------------------------------------
class FieldProblem(BaseModel):
    field: str = Field(description="the bad field: kind, connection, file, uri, params.<name>, "
                                   "idempotency_key…; empty when no one field is to blame")
    message: str


class Problem(BaseModel):
    """Every error answer of the API (4xx, 5xx)."""

    detail: str = Field(description="what went wrong, in one sentence")
    problems: list[FieldProblem] = Field(description="each bad field and why (422 lists them all)")


def problem(status: int, detail: str, problems: list[FieldProblem] | None = None,
            headers: Mapping[str, str] | None = None) -> JSONResponse:
    body = Problem(detail=detail, problems=problems or [])
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def answers(*statuses: int, why: Mapping[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status answers with a :class:`Problem`, described by ``why``
    or by its usual meaning. 401/403/413/422/503 need not be named: :func:`document` adds them."""
    reasons = {**MEANINGS, **(why or {})}
    return {status: {"model": Problem, "description": reasons[status]} for status in statuses}


# ---- errors raised outside the routes' own code -------------------------------------------------
async def http_problem(request: Request, exc: Exception) -> Response:
    """Starlette's and our own HTTPExceptions (401, 403, 404, 405, 409, 413…) as a Problem."""
    assert isinstance(exc, HTTPException)
    if exc.status_code < 200 or exc.status_code in (204, 304):  # answers without a body
        return Response(status_code=exc.status_code, headers=exc.headers)
    return problem(exc.status_code, str(exc.detail), headers=exc.headers)


REDIS_DOWN = "redis unavailable"


def redis_down(route: str, exc: Exception) -> str:
    """What an unauthenticated route (``/healthz``, ``/readyz``, ``/metrics``) tells anyone when
    Redis does not answer: ``REDIS_DOWN``, never Redis's own words (addresses, ports, paths),
    which go to the API's log instead."""
    logging.getLogger("ferry.api").warning("%s: redis unavailable: %s", route, exc)
    return REDIS_DOWN


def unavailable(request: Request, exc: Exception) -> Response:
    """Redis (the job store, or the broker) unreachable in any route: 503, not a 500; a page of
    the dashboard a browser asked for says it as a page (without Redis's own words), not as a
    JSON body."""
    if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
        reason = redis_down(request.url.path, exc)
        return HTMLResponse(render.page("unavailable.html", "Unavailable", reason=reason), status_code=503)
    return problem(503, f"the job store or the broker is unavailable: {exc}")


def problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, http_problem)
    app.add_exception_handler(redis.RedisError, unavailable)
    app.add_exception_handler(OperationalError, unavailable)


# ---- POST /jobs: one member per kind ---------------------------------------------------------
def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("-"))


def _request_field(name: str, **changes: Any) -> Any:
    """JobRequest's field ``name`` (its type is given by the caller), with its description."""
    field: FieldInfo = JobRequest.model_fields[name]
    return Field(description=field.description, **changes)


def submission_model(kind: Kind) -> type[BaseModel]:
    """The body of ``POST /jobs`` for ``kind``: its name, a connection, its own params model, and
    the file rule's ``file`` (a path under the roots) and/or ``uri``, or neither."""
    fields: dict[str, Any] = {
        "kind": (Literal[kind.name], Field(description=kind.summary)),
        "connection": (str, Field(description=f"a {kind.service} connection from ferry.toml")),
    }
    params_required = any(f.is_required() for f in kind.params.model_fields.values())
    fields["params"] = (kind.params, _request_field("params") if params_required
                        else _request_field("params", default_factory=dict))
    rule = kind.file
    if rule is not None and rule.uri_allowed:
        fields["file"] = (str | None, _request_field("file", default=None))
        fields["uri"] = (str | None, _request_field("uri", default=None))
    elif rule is not None:
        fields["file"] = (str, _request_field("file")) if rule.required else \
            (str | None, _request_field("file", default=None))
    fields["idempotency_key"] = (str | None, _request_field("idempotency_key", default=None,
                                                            min_length=1, max_length=200))
    fields["batch"] = (str | None, _request_field("batch", default=None, min_length=1, max_length=64))
    fields["not_before"] = (datetime | None, _request_field("not_before", default=None))
    fields["priority"] = (Priority | None, _request_field("priority", default=None))
    fields["tenant"] = (str | None, _request_field("tenant", default=None, pattern=TENANT_PATTERN))
    note = " Give `file` or `uri`." if rule is not None and rule.uri_allowed else ""
    return create_model(f"{_camel(kind.name)}Job", __config__=ConfigDict(extra="forbid"),
                        __doc__=kind.summary + "." + note, **fields)


SUBMISSION_MODELS: tuple[type[BaseModel], ...] = tuple(submission_model(k) for k in KINDS.values())
Submission: Any = Annotated[Union[SUBMISSION_MODELS], Field(discriminator="kind")]  # noqa: UP007


def submission_schemas() -> dict[str, Any]:
    """``JobSubmission`` (the union) and every schema it refers to, as components."""
    schema = TypeAdapter(Submission).json_schema(ref_template=SCHEMAS + "{model}")
    defs = cast(dict[str, Any], schema.pop("$defs"))
    schema["description"] = "One job: its `kind` decides which `params` it takes, and whether it takes a " \
                            "`file` (a path under the server's [files] roots), a `uri`, or neither."
    return {**defs, SUBMISSION: schema}


SUBMISSION_REF: dict[str, Any] = {"$ref": SCHEMAS + SUBMISSION}
# ``openapi_extra=`` of a route whose body is one submission (the route validates JobRequest).
SUBMISSION_BODY = {"requestBody": {"required": True,
                                   "content": {"application/json": {"schema": SUBMISSION_REF}}}}


# ---- the document ------------------------------------------------------------------------------
def document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document with Ferry's rules applied (see the module's docstring)."""
    doc = get_openapi(title=app.title, version=app.version, description=app.description,
                      routes=app.routes)
    schemas: dict[str, Any] = doc.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in {**_model_schemas(Problem), **submission_schemas()}.items():
        if name in schemas and schemas[name] != schema:
            raise RuntimeError(f"two different OpenAPI schemas are named {name}")
        schemas[name] = schema
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():  # the scope a token needs, from the one table
            operation["x-scope"] = (declared(method.upper(), path) or UNDECLARED).value
    operations = [op for path in doc.get("paths", {}).values() for op in path.values()]
    for operation in operations:
        _apply_rules(operation)
    _link_new_jobs(operations)
    for fastapi_own in ("HTTPValidationError", "ValidationError"):
        schemas.pop(fastapi_own, None)
    return doc


def _model_schemas(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=SCHEMAS + "{model}")
    defs = schema.pop("$defs", {})
    return {**defs, model.__name__: schema}


def _problem_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": MEANINGS[status],
        "content": {"application/json": {"schema": {"$ref": SCHEMAS + "Problem"}}}}
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {
            "description": "Bearer realm=\"ferry\"", "required": True, "schema": {"type": "string"}}}
    return response


def _apply_rules(operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    statuses = [503]
    if operation.get("security"):
        statuses += [401, 403]
    if operation.get("parameters") or operation.get("requestBody"):
        statuses.append(422)
    if operation.get("requestBody"):
        statuses += [400, 413]
    for status in statuses:
        declared = responses.get(str(status))
        if declared is None or _is_fastapi_validation_error(declared):
            responses[str(status)] = _problem_response(status)
        elif status == 401:
            declared.setdefault("headers", _problem_response(401)["headers"])


def _link_new_jobs(operations: list[dict[str, Any]]) -> None:
    """Links from the answers of ``POST /jobs`` to every operation on one job (``{job_id}`` in its
    path), with the new job's id: generated clients and schemathesis' stateful phase follow them."""
    on_one_job = [op["operationId"] for op in operations
                  if any(p.get("in") == "path" and p.get("name") == "job_id" for p in op.get("parameters", []))]
    links = {name: {"operationId": name, "parameters": {"job_id": "$response.body#/id"}}
             for name in on_one_job}
    for operation in operations:
        if operation.get("requestBody") != SUBMISSION_BODY["requestBody"]:
            continue
        for status, response in operation["responses"].items():
            if status.startswith("2"):
                response["links"] = links


def _is_fastapi_validation_error(response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref", "").endswith("/HTTPValidationError"))


class DocumentedApp(FastAPI):
    """A FastAPI app whose ``openapi()`` is :func:`document`, built once."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            self.openapi_schema = jsonable_encoder(document(self))
        return self.openapi_schema


def operation_id(route: APIRoute) -> str:
    """The endpoint's function name: ``post_job``, ``get_job``… (what generated clients call)."""
    return route.name
