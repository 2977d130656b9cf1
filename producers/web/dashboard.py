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
from producers.errors import JobNotFound
from producers.kinds import KINDS, all_step_names
from producers.store import Filters, JobRow
from producers.web import render
from producers.web.auth import COOKIE, SESSION_SECONDS, check_csrf
from producers.web.deps import Auth, FerryDep, GuardDep, Viewer

PAGE_SIZE = 50
LIST_FIELDS = ("meta", "status", "updated_at", "finished_at", "error", "runs")
FILTER_NAMES = ("status", "kind", "connection", "error_step", "http_status", "since", "until", "q")
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


FRAGMENTS = ("counters", "fleet", "rows", "pager")


def summary(ferry: Ferry) -> render.Summary:
    # Succeeded records expire on their own; drop their index entries now and then so the
    # counters do not keep counting them (one viewer a minute does it, not every poll).
    ferry.store.sweep_if_due(60)
    by_kind, by_conn = ferry.store.index_sizes(KINDS, sorted(ferry.config.connections))
    return render.Summary(ferry.store.counts(), by_kind, by_conn, ferry.store.throughput(60),
                          ferry.store.last_bulk_replay())


def listing(ferry: Ferry, query: dict[str, str]) -> dict[str, Any]:
    """One page of the list. ``q`` (the search box) names a job by its id or idempotency key,
    or else matches part of its file name, within the other filters."""
    search = query.get("q")
    exact = ferry.store.lookup(search) if search else []
    if exact:
        return render.listing(ferry.store.rows(exact), render.pager(None, query, len(exact), newest=True))
    try:
        filters = Filters.parse({**query, "file_name": search})
    except ValueError as exc:
        return render.listing([], None, error=str(exc))
    cursor = query.get("cursor")
    if cursor is not None and not cursor.isdigit():
        cursor = None
    page = ferry.store.select(filters, limit=PAGE_SIZE, cursor=cursor)
    rows = ferry.store.rows(page.ids)
    return render.listing(rows, render.pager(page.next_cursor, query, len(rows), newest=cursor is None))


def regions(ferry: Ferry, query: dict[str, str]) -> dict[str, Any]:
    """What the list page shows and polls: counters, rows and pager, as template data."""
    return {"counters": render.counters(summary(ferry), query), "query": query,
            "fleet": render.fleet(ferry.connections(), ferry.workers()), **listing(ferry, query)}


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
    choices = render.filter_choices(KINDS, sorted(ferry.config.connections), sorted(all_step_names()))
    fragment = "/ui/fragments/list?" + urlencode(query)
    return _html(render.page("list.html", "Jobs", csrf=who.csrf, who=who.label,
                             attrs={"page": "list", "fragment": fragment, "filters": json.dumps(query)},
                             **regions(ferry, query), **choices))


@router.get("/ui/job/{job_id}")
def job_page(job_id: str, request: Request, who: Viewer, ferry: FerryDep) -> Response:
    if who is None:
        return to_login(request)
    try:
        record = ferry.store.get(job_id)
    except JobNotFound:
        return _html(render.page("not_found.html", "Not found", csrf=who.csrf, who=who.label,
                                 job_id=job_id), 404)
    return _html(render.page("job.html", f"Job {job_id[:12]}", csrf=who.csrf, who=who.label,
                             attrs={"page": "job", "job": job_id,
                                    "fragment": f"/ui/fragments/job/{job_id}"},
                             waiting=ferry.why_waiting(record), **render.job_view(record, KINDS.get(record.kind))))


# ---- fragments the page polls -------------------------------------------------------------
@router.get("/ui/fragments/list")
def list_fragment(request: Request, who: Auth, ferry: FerryDep) -> JSONResponse:
    return JSONResponse(fragments(regions(ferry, _query(request))), headers={"Cache-Control": "no-store"})


@router.get("/ui/fragments/job/{job_id}")
def job_fragment(job_id: str, who: Auth, ferry: FerryDep) -> JSONResponse:
    try:
        record = ferry.store.get(job_id)
    except JobNotFound:
        raise HTTPException(404, f"no job {job_id}") from None
    view = render.html("job_view.html", waiting=ferry.why_waiting(record),
                       **render.job_view(record, KINDS.get(record.kind)))
    return JSONResponse({"job": view,
                         "status": record.status.value,
                         "open_deliveries": any(d.open for d in record.notifications)},
                        headers={"Cache-Control": "no-store"})


@router.get("/ui/summary")
def summary_json(who: Auth, ferry: FerryDep) -> JSONResponse:
    s = summary(ferry)
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
        filters = Filters.parse(query)
        page = ferry.store.select(filters, limit=limit, cursor=query.get("cursor"))
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    rows = ferry.store.rows(page.ids)
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
            "error": row.error.model_dump() if row.error else None, "runs": row.runs}
