"""The dashboard served by ``ferry api`` at ``/``: counters, a throughput chart, the job list
(filters, cursor paging over the store's sorted sets), a page per job, and the replay/purge
buttons, which call the JSON routes in ``producers.web.actions``.

Pages are rendered on the server; ``/static/ferry.js`` re-fetches the changing parts as HTML
fragments when the job event stream (``GET /events``) reports a change. A page never loads more
than one page of jobs: the list reads one ``ZREVRANGEBYSCORE`` window and one pipelined ``HMGET`` per shown job.
"""

import json
from importlib import resources
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException

from producers.client import Ferry
from producers.errors import BatchNotFound
from producers.kinds import KINDS, all_step_names
from producers.store import Filters, JobRow
from producers.web import render, visibility
from producers.web.auth import COOKIE, SESSION_SECONDS, Principal, check_csrf
from producers.web.deps import Auth, FerryDep, GuardDep, Viewer
from producers.web.grants import Grant

PAGE_SIZE = 50
LIST_FIELDS = ("meta", "status", "updated_at", "finished_at", "error", "runs")
FILTER_NAMES = ("status", "kind", "connection", "error_step", "http_status", "since", "until", "q", "batch", "error")
# No inline script or style anywhere: the policy can forbid both, and framing (clickjacking).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
STATIC_TYPES = {"ferry.css": "text/css; charset=utf-8",
                "ferry.js": "text/javascript; charset=utf-8"}


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)


def _query(request: Request) -> dict[str, str]:
    """The filters and cursor of the list, as given (blank ones dropped)."""
    params = request.query_params
    return {k: params[k].strip() for k in (*FILTER_NAMES, "cursor")
            if params.get(k, "").strip()}


def _safe_next(value: str | None) -> str:
    """Only a path on this site (no scheme, no host, no //evil)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    parts = urlsplit(value)
    return value if not parts.scheme and not parts.netloc else "/"


router = APIRouter(include_in_schema=False)


FRAGMENTS = ("counters", "fleet", "batches", "rows", "pager")
BATCHES_SHOWN = 10
FAILURES_GROUPED = 5000  # a batch page groups its newest failures, at most this many


def summary(ferry: Ferry, grant: Grant) -> render.Summary:
    # Succeeded records expire on their own; drop their index entries now and then so the
    # counters do not keep counting them (one viewer a minute does it, not every poll).
    ferry.store.sweep_if_due(60)
    if grant.limited:  # only its own jobs, and no throughput (that counts every job)
        seen = visibility.counts(ferry, grant)
        return render.Summary(seen.by_status, seen.by_kind, seen.by_connection, [], None)
    by_kind, by_conn = ferry.store.index_sizes(KINDS, sorted(ferry.config.connections))
    return render.Summary(ferry.store.counts(), by_kind, by_conn, ferry.store.throughput(60),
                          ferry.store.last_bulk_replay())


def listing(ferry: Ferry, grant: Grant, query: dict[str, str]) -> dict[str, Any]:
    """One page of the list, of the jobs ``grant`` sees. ``q`` (the search box) names a job by
    its id or idempotency key, or else matches part of its file name, within the other filters."""
    search = query.get("q")
    exact = ferry.store.lookup(search) if search else []
    if exact:
        rows = [r for r in ferry.store.rows(exact) if grant.sees(r)]
        return render.listing(rows, render.pager(None, query, len(rows), newest=True))
    try:
        filters = visibility.narrowed(grant, Filters.parse({**query, "file_name": search}))
    except ValueError as exc:
        return render.listing([], None, error=str(exc))
    cursor = query.get("cursor")
    if cursor is not None and not cursor.isdigit():
        cursor = None
    if filters is None:
        return render.listing([], render.pager(None, query, 0, newest=cursor is None))
    page = ferry.store.select(filters, limit=PAGE_SIZE, cursor=cursor)
    rows = [r for r in ferry.store.rows(page.ids) if grant.sees(r)]
    return render.listing(rows, render.pager(page.next_cursor, query, len(rows), newest=cursor is None))


def may(who: Principal) -> frozenset[str]:
    """The scopes whose buttons the page shows (the others are left out, not disabled)."""
    return frozenset(scope.value for scope in who.grant.scopes)


def regions(ferry: Ferry, who: Principal, query: dict[str, str]) -> dict[str, Any]:
    """What the list page shows and polls: counters, rows and pager, as template data."""
    grant = who.grant
    connections = [c for c in ferry.connections() if grant.sees_connection(c.get("name"))]
    fleet = render.fleet(connections, visibility.workers(ferry, grant, ferry.workers()))
    return {"counters": render.counters(summary(ferry, grant), query), "query": query, "may": may(who),
            "fleet": fleet, **listing(ferry, grant, query),
            # A batch may hold jobs of any connection: a token limited to some sees no batch.
            "batches": [] if grant.limited else [render.batch_row(b) for b in ferry.batches(BATCHES_SHOWN)]}


def fragments(context: dict[str, Any]) -> dict[str, str]:
    """The polled regions of the list page, each rendered by its own template."""
    return {name: render.html(f"{name}.html", **context) for name in FRAGMENTS}


def to_login(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse("/login?" + urlencode({"next": here}), status_code=303)


# ---- session ------------------------------------------------------------------------------
@router.get("/login")
def login_form(next: str | None = None) -> HTMLResponse:
    return _html(render.page("login.html", "Log in", error=None, next_url=_safe_next(next)))


@router.post("/login")
async def login(request: Request, guard: GuardDep) -> Response:
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host"):
        # Another site posting a token of its own would log this browser in as that site.
        raise HTTPException(403, "log in from this site's own /login page")
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0].strip()
    next_url = _safe_next((form.get("next") or ["/"])[0])
    opened = guard.login(token) if token else None
    if opened is None:
        return _html(render.page("login.html", "Log in", error="That token is not allowed.",
                                 next_url=next_url), 401)
    session_id, _ = opened
    response = RedirectResponse(next_url, status_code=303, headers=SECURITY_HEADERS)
    response.set_cookie(COOKIE, session_id, max_age=SESSION_SECONDS, path="/", httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")
    return response


@router.post("/logout")
async def logout(request: Request, guard: GuardDep) -> Response:
    principal = guard.session(request)
    if principal is not None:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        given = (form.get("csrf") or [""])[0] or request.headers.get("X-CSRF-Token")
        check_csrf(principal, given)
        guard.logout(request.cookies.get(COOKIE))
    response = RedirectResponse("/login", status_code=303, headers=SECURITY_HEADERS)
    response.delete_cookie(COOKIE, path="/")
    return response


# ---- pages --------------------------------------------------------------------------------
@router.get("/")
def index(request: Request, who: Viewer, ferry: FerryDep) -> Response:
    if who is None:
        return to_login(request)
    query = _query(request)
    choices = render.filter_choices(KINDS, who.grant.visible(sorted(ferry.config.connections)),
                                    sorted(all_step_names()))
    fragment = "/ui/fragments/list?" + urlencode(query)
    return _html(render.page("list.html", "Jobs", csrf=who.csrf, who=who.label,
                             attrs={"page": "list", "fragment": fragment, "filters": json.dumps(query)},
                             **regions(ferry, who, query), **choices))


@router.get("/ui/job/{job_id}")
def job_page(job_id: str, request: Request, who: Viewer, ferry: FerryDep) -> Response:
    if who is None:
        return to_login(request)
    try:
        record = visibility.job(ferry, who.grant, job_id)
    except HTTPException:
        return _html(render.page("not_found.html", "Not found", csrf=who.csrf, who=who.label,
                                 job_id=job_id), 404)
    return _html(render.page("job.html", f"Job {job_id[:12]}", csrf=who.csrf, who=who.label,
                             attrs={"page": "job", "job": job_id,
                                    "fragment": f"/ui/fragments/job/{job_id}"},
                             may=may(who), waiting=ferry.why_waiting(record),
                             **render.job_view(record, KINDS.get(record.kind))))


@router.get("/ui/batch/{batch_id}")
def batch_page(batch_id: str, request: Request, who: Viewer, ferry: FerryDep) -> Response:
    if who is None:
        return to_login(request)
    try:
        view = batch_view(ferry, who, batch_id)
    except BatchNotFound:
        return _html(render.page("not_found.html", "Not found", csrf=who.csrf, who=who.label, job_id=batch_id,
                                 what="batch"), 404)
    return _html(render.page("batch.html", f"Batch {view['b']['label']}", csrf=who.csrf, who=who.label,
                             attrs={"page": "batch", "batch": batch_id,
                                    "fragment": f"/ui/fragments/batch/{batch_id}"}, **view))


def batch_view(ferry: Ferry, who: Principal, batch_id: str) -> dict[str, Any]:
    """A batch's page: its record, and its failures grouped (step, HTTP status, message). A
    batch may hold jobs of any connection: a token limited to some sees none (BatchNotFound)."""
    if who.grant.limited:
        raise BatchNotFound(batch_id)
    record = ferry.batch(batch_id)
    failed = ferry.store.select(Filters(batch=batch_id, status="failed"), limit=FAILURES_GROUPED).ids
    capped = FAILURES_GROUPED if len(failed) == FAILURES_GROUPED else 0
    return {"b": render.batch_row(record), "groups": render.failure_groups(ferry.store.rows(failed)),
            "groups_capped": capped, "may": may(who)}


# ---- fragments the page polls -------------------------------------------------------------
@router.get("/ui/fragments/batch/{batch_id}")
def batch_fragment(batch_id: str, who: Auth, ferry: FerryDep) -> JSONResponse:
    try:
        view = batch_view(ferry, who, batch_id)
    except BatchNotFound:
        raise HTTPException(404, f"no batch {batch_id}") from None
    return JSONResponse({"batch": render.html("batch_view.html", **view)}, headers={"Cache-Control": "no-store"})


@router.get("/ui/fragments/list")
def list_fragment(request: Request, who: Auth, ferry: FerryDep) -> JSONResponse:
    return JSONResponse(fragments(regions(ferry, who, _query(request))), headers={"Cache-Control": "no-store"})


@router.get("/ui/fragments/job/{job_id}")
def job_fragment(job_id: str, who: Auth, ferry: FerryDep) -> JSONResponse:
    record = visibility.job(ferry, who.grant, job_id)
    view = render.html("job_view.html", may=may(who), waiting=ferry.why_waiting(record),
                       **render.job_view(record, KINDS.get(record.kind)))
    return JSONResponse({"job": view,
                         "status": record.status.value,
                         "open_deliveries": any(d.open for d in record.notifications)},
                        headers={"Cache-Control": "no-store"})


@router.get("/ui/summary")
def summary_json(who: Auth, ferry: FerryDep) -> JSONResponse:
    s = summary(ferry, who.grant)
    return JSONResponse({"by_status": s.by_status, "by_kind": s.by_kind,
                         "by_connection": s.by_connection,
                         "throughput": [{"minute": m, "finished": n} for m, n in s.throughput],
                         "bulk": s.bulk})


@router.get("/ui/jobs")
def jobs_json(request: Request, who: Auth, ferry: FerryDep,
              limit: Annotated[int, Query(ge=1, le=500)] = PAGE_SIZE) -> JSONResponse:
    """The list as JSON (ids and row fields), with every filter the dashboard has."""
    query = _query(request)
    try:
        filters = visibility.narrowed(who.grant, Filters.parse(query))
        if filters is None:
            return JSONResponse({"jobs": [], "next_cursor": None})
        page = ferry.store.select(filters, limit=limit, cursor=query.get("cursor"))
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    rows = [r for r in ferry.store.rows(page.ids) if who.grant.sees(r)]
    return JSONResponse({"jobs": [_row_json(r) for r in rows],
                         "next_cursor": page.next_cursor})


# ---- static -------------------------------------------------------------------------------
@router.get("/static/{name}")
def static(name: str) -> Response:
    if name not in STATIC_TYPES:
        raise HTTPException(404, "not found")
    content = resources.files("producers.web").joinpath("static", name).read_bytes()
    return Response(content, media_type=STATIC_TYPES[name],
                    headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})


def _row_json(row: JobRow) -> dict[str, Any]:
    return {"id": row.id, "kind": row.kind, "connection": row.connection, "status": row.status,
            "created_at": row.created_at, "updated_at": row.updated_at,
            "finished_at": row.finished_at,
            "error": row.error.model_dump() if row.error else None, "runs": row.runs,
            "priority": row.priority, "tenant": row.tenant, "not_before": row.not_before,
            "archived": row.archived}
