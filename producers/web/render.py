"""The dashboard's HTML: Jinja2 templates under ``templates/`` (one per page or fragment) with
autoescape on, so every value is text unless a template says otherwise; the functions here turn
records into the plain data those templates show.

The same templates render the first page and the fragments the page's script fetches every two
seconds, so there is one renderer and no client-side templating.
"""

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader
from starlette.templating import Jinja2Templates

from producers.kinds import Kind
from producers.records import AttemptRecord, JobRecord, JobStatus, StepRecord, StepStatus
from producers.store import JobRow

# Parameters and results never hold secrets by design; this is the belt to those braces.
_SECRET_KEY = re.compile(r"(authorization|token|jwt|secret|password|api[_-]?key|credential)", re.I)
_URL = re.compile(r"^https?://[^\s\"'<>]+$")


# ---- time ----------------------------------------------------------------------------------------
def parse_iso(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def clock(value: str | None, date: bool = True) -> str | None:
    """A stored time as the page shows it (UTC), or None when there is none."""
    at = parse_iso(value)
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S") if at else None


def seconds_between(start: str | None, end: str | None) -> float | None:
    a, b = parse_iso(start), parse_iso(end)
    return (b - a).total_seconds() if a and b else None


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    return f"{minutes // 60} h {minutes % 60} min"


# ---- values --------------------------------------------------------------------------------------
def redacted(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: "[redacted]" if _SECRET_KEY.search(k) and v not in (None, "") else v
            for k, v in values.items()}


@dataclass(frozen=True)
class Cell:
    """How one parameter or result value shows: a link, links by name, code, yes/no, or a dash."""

    kind: str  # link | links | code | text | empty
    text: str = ""
    links: tuple[tuple[str, str], ...] = ()


def cell(value: Any) -> Cell:
    if isinstance(value, str) and _URL.match(value):
        return Cell("link", value)
    if isinstance(value, dict) and value and all(isinstance(v, str) and _URL.match(v)
                                                 for v in value.values()):
        return Cell("links", links=tuple((str(k), v) for k, v in value.items()))
    if isinstance(value, dict | list):
        return Cell("code", json.dumps(value, separators=(", ", ": ")))
    if isinstance(value, bool):
        return Cell("text", "yes" if value else "no")
    return Cell("code", str(value)) if value not in (None, "") else Cell("empty")


# ---- templates -----------------------------------------------------------------------------------
templates = Jinja2Templates(env=Environment(
    loader=PackageLoader("producers.web", "templates"), autoescape=True, trim_blocks=True,
    lstrip_blocks=True))
templates.env.globals.update(clock=clock, cell=cell, redacted=redacted)


def html(name: str, **context: Any) -> str:
    """A template rendered to a string: a fragment, or a whole page."""
    return templates.get_template(name).render(**context)


def page(name: str, title: str, *, csrf: str | None = None, who: str | None = None,
         attrs: Mapping[str, str] | None = None, **context: Any) -> str:
    """A whole page: ``name`` extends ``base.html``, which draws the header and the session."""
    return html(name, title=title, csrf=csrf, who=who, attrs=dict(attrs or {}), **context)


# ---- the list ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Summary:
    by_status: dict[str, int]
    by_kind: dict[str, int]
    by_connection: dict[str, int]
    throughput: list[tuple[int, int]]
    bulk: dict[str, Any] | None


def counters(summary: Summary, query: Mapping[str, str]) -> dict[str, Any]:
    """The counts, breakdowns, chart and bulk progress above the list; each links to its filter."""
    def link(**change: str) -> str:
        merged = {k: v for k, v in {**query, **change}.items() if v and k != "cursor"}
        return "/?" + urlencode(merged)

    def breakdown(title: str, field: str, values: dict[str, int]) -> dict[str, Any]:
        ranked = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
        return {"title": title, "items": [{"name": name, "count": n, "href": link(**{field: name})}
                                          for name, n in ranked if n]}

    bulk = None
    if summary.bulk:
        b = summary.bulk
        bulk = {"state": "finished" if b.get("finished_at") else "running",
                **{k: _text(b.get(k, 0 if k == "done" else None))
                   for k in ("done", "matched", "rate", "by")},
                "started_at": b.get("started_at")}
    return {
        "total": sum(summary.by_status.values()),
        "statuses": [{"status": s.value, "count": summary.by_status.get(s.value, 0),
                      "href": link(status=s.value)} for s in JobStatus],
        "breakdowns": [breakdown("By kind", "kind", summary.by_kind),
                       breakdown("By connection", "connection", summary.by_connection)],
        "chart": chart(summary.throughput),
        "bulk": bulk,
    }


def fleet(connections: list[dict[str, Any]], workers: list[dict[str, Any]]) -> dict[str, Any]:
    """The Workers and Connections panels: who runs what now, and each connection's state."""
    return {
        "workers": [{**w, "shown_name": w.get("name") or f"{w['hostname']}:{w['pid']}",
                     "running": [{**r, "short": r["job_id"][:12]} for r in w.get("running", [])]}
                    for w in workers],
        "connections": connections,
    }


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def chart(throughput: list[tuple[int, int]], width: int = 360, height: int = 90) -> dict[str, Any]:
    """Bars of jobs finished per minute over the last hour, scaled to the peak minute."""
    values = [n for _, n in throughput] or [0]
    peak = max(values) or 1
    bar = width / len(values)
    plot = height - 1
    bars = []
    for i, (minute, n) in enumerate(throughput):
        h = round(plot * n / peak, 1) if n else 0
        bars.append({"x": f"{i * bar:.1f}", "y": f"{plot - h:.1f}", "width": f"{max(bar - 1, 1):.1f}",
                     "height": h, "count": n,
                     "at": datetime.fromtimestamp(minute * 60, UTC).strftime("%H:%M")})
    return {"width": width, "height": height, "axis": plot + 0.5, "bars": bars,
            "total": sum(values), "peak": max(values)}


def pager(next_cursor: str | None, query: Mapping[str, str], shown: int, newest: bool) -> dict[str, Any]:
    keep = {k: v for k, v in query.items() if v and k != "cursor"}
    return {"newest": newest, "shown": shown, "keep": urlencode(keep),
            "next": urlencode({**keep, "cursor": next_cursor}) if next_cursor else None}


def listing(rows: list[JobRow], pager_view: dict[str, Any] | None, error: str | None = None) -> dict[str, Any]:
    return {"rows": rows, "rows_error": error, "pager": pager_view}


def filter_choices(kinds: Iterable[str], connections: Iterable[str],
                   steps: Iterable[str]) -> dict[str, list[str]]:
    return {"statuses": [s.value for s in JobStatus], "kinds": list(kinds),
            "connections": list(connections), "steps": list(steps)}


# ---- one job -------------------------------------------------------------------------------------
def job_view(record: JobRecord, kind: Kind | None) -> dict[str, Any]:
    """What ``job_view.html`` shows of one job: the record, its timeline, what landed."""
    file_info: dict[str, Any] = record.file.model_dump(exclude_none=True) if record.file else {}
    return {
        "job": record,
        "summary": kind.summary if kind else "",
        "took": duration(seconds_between(record.created_at, record.finished_at)),
        "steps": timeline(record, kind),
        "landed": ({k: v for k, v in record.result.items() if v not in (None, "")}
                   if record.result else None),
        "file_info": file_info,
        "notifications": list(reversed(record.notifications)),  # newest first
    }


def timeline(record: JobRecord, kind: Kind | None) -> list[dict[str, Any]]:
    start = parse_iso(record.runs[-1].started_at if record.runs else record.created_at)
    ends = [parse_iso(s.finished_at) for s in record.steps] + [parse_iso(record.finished_at)]
    known_ends = [e for e in ends if e is not None]
    end = max(known_ends) if known_ends else None
    now = datetime.now(UTC)
    span = ((end or now) - start).total_seconds() if start else 0.0
    titles = {s.name: s.title for s in kind.steps} if kind else {}
    return [_step(i, s, titles.get(s.name, s.name), start, span, now)
            for i, s in enumerate(record.steps, 1)]


def _step(number: int, s: StepRecord, title: str, start: datetime | None, span: float,
          now: datetime) -> dict[str, Any]:
    took = seconds_between(s.started_at, s.finished_at)
    began = parse_iso(s.started_at)
    if took is None and began and s.status in (StepStatus.RUNNING, StepStatus.RETRYING):
        took = (now - began).total_seconds()
    bar = None
    if start and began and span > 0 and s.status != StepStatus.REUSED:
        left = max(0.0, (began - start).total_seconds() / span)
        width = max(0.01, min(1.0 - left, (took or 0) / span))
        bar = {"left": f"{left * 100:.2f}", "width": f"{width * 100:.2f}"}
    outputs = {k: v for k, v in redacted(s.result or {}).items() if v not in (None, "", [], {})}
    return {"number": number, "name": s.name, "title": title, "status": s.status,
            "attempts": s.attempts, "started_at": s.started_at, "finished_at": s.finished_at,
            "took": duration(took), "bar": bar, "error": s.error, "outputs": outputs,
            "next_attempt_at": s.next_attempt_at if s.status == StepStatus.RETRYING else None,
            "reused": s.status == StepStatus.REUSED,
            "progress": {"percent": s.progress.percent, "text": s.progress.describe()} if s.progress else None,
            "history": [_attempt(a) for a in s.history] if s.eventful else []}


def _attempt(a: AttemptRecord) -> dict[str, Any]:
    """One of a step's recorded attempts (every run's, the last ``MAX_ATTEMPT_HISTORY``)."""
    return {"run": a.run, "number": a.number, "status": a.status, "started_at": a.started_at,
            "took": duration(seconds_between(a.started_at, a.finished_at)),
            "next_in": None if a.retry_delay is None else duration(a.retry_delay),
            "http_status": a.http_status or "", "message": a.message or ""}
