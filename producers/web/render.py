"""The dashboard's HTML, as small functions over plain data. Every value goes through ``esc``.

The same functions render the first page and the fragments the page's script fetches every two
seconds, so there is one renderer and no client-side templating.
"""

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import urlencode

from producers.kinds import Kind
from producers.records import JobRecord, JobStatus, StepError, StepRecord, StepStatus
from producers.store import JobRow

# Parameters and results never hold secrets by design; this is the belt to those braces.
_SECRET_KEY = re.compile(r"(authorization|token|jwt|secret|password|api[_-]?key|credential)", re.I)
_URL = re.compile(r"^https?://[^\s\"'<>]+$")


def esc(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


# ---- time ----------------------------------------------------------------------------------------
def parse_iso(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def when(value: str | None, *, date: bool = True) -> str:
    at = parse_iso(value)
    if at is None:
        return '<span class="muted">—</span>'
    shown = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S")
    return f'<time datetime="{esc(value)}" title="{esc(value)}">{shown}</time>'


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


# ---- pieces --------------------------------------------------------------------------------------
def badge(status: str) -> str:
    return f'<span class="badge s-{esc(status)}">{esc(status)}</span>'


def redacted(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: "[redacted]" if _SECRET_KEY.search(k) and v not in (None, "") else v
            for k, v in values.items()}


def value_html(value: Any) -> str:
    if isinstance(value, str) and _URL.match(value):
        return f'<a href="{esc(value)}" rel="noopener noreferrer" target="_blank">{esc(value)}</a>'
    if isinstance(value, dict | list):
        if isinstance(value, dict) and all(isinstance(v, str) and _URL.match(v)
                                           for v in value.values()) and value:
            return " ".join(f'<a href="{esc(v)}" rel="noopener noreferrer" target="_blank">'
                            f"{esc(k)}</a>" for k, v in value.items())
        return f"<code>{esc(json.dumps(value, separators=(', ', ': ')))}</code>"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"<code>{esc(value)}</code>" if value not in (None, "") else '<span class="muted">—</span>'


def table_of(values: Mapping[str, Any], empty: str = "none") -> str:
    if not values:
        return f'<p class="muted">{esc(empty)}</p>'
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{value_html(v)}</td></tr>"
                   for k, v in redacted(values).items())
    return f'<table class="kv">{rows}</table>'


def error_text(error: StepError | None) -> str:
    if error is None:
        return ""
    code = f'<span class="http">HTTP {esc(error.status)}</span> ' if error.status else ""
    return f'{code}<span class="msg">{esc(error.message)}</span>'


# ---- the page shell ------------------------------------------------------------------------------
def page(title: str, body: str, *, csrf: str | None = None, attrs: Mapping[str, str] | None = None,
         who: str | None = None) -> str:
    data = "".join(f' data-{esc(k)}="{esc(v)}"' for k, v in (attrs or {}).items())
    meta = f'<meta name="csrf-token" content="{esc(csrf)}">' if csrf else ""
    logout = ""
    if who:
        form = (f'<form method="post" action="/logout" class="inline">'
                f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
                f'<button class="link" type="submit">log out</button></form>') if csrf else ""
        logout = f'<span class="who">{esc(who)}</span>{form}'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{meta}<title>{esc(title)} · Ferry</title>
<link rel="stylesheet" href="/static/ferry.css">
<script src="/static/ferry.js" defer></script>
</head><body{data}>
<header class="top"><a class="brand" href="/">Ferry</a><span class="sub">jobs &amp; replay</span>
<span class="spacer"></span><span id="live" class="live" title="updates every 2 s">live</span>
{logout}</header>
<main>{body}</main>
</body></html>"""


def login_page(error: str | None, next_url: str) -> str:
    problem = f'<p class="error">{esc(error)}</p>' if error else ""
    body = f"""<section class="card login">
<h1>Log in</h1>
<p>Paste one of the API tokens (<code>[api] tokens_env</code>). The browser keeps a session
cookie; the token itself is not stored in the browser.</p>{problem}
<form method="post" action="/login">
<input type="hidden" name="next" value="{esc(next_url)}">
<label>API token <input type="password" name="token" autocomplete="off" autofocus required></label>
<button type="submit" class="primary">Log in</button>
</form></section>"""
    return page("Log in", body)


# ---- the list ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Summary:
    by_status: dict[str, int]
    by_kind: dict[str, int]
    by_connection: dict[str, int]
    throughput: list[tuple[int, int]]
    bulk: dict[str, Any] | None


def counters(summary: Summary, query: Mapping[str, str]) -> str:
    def link(**change: str) -> str:
        merged = {k: v for k, v in {**query, **change}.items() if v and k != "cursor"}
        return "/?" + urlencode(merged)

    total = sum(summary.by_status.values())
    cards = [f'<a class="count all" href="/"><b>{total}</b><span>all jobs</span></a>']
    cards += [f'<a class="count s-{esc(s)}" href="{esc(link(status=s))}" data-status="{esc(s)}">'
              f"<b>{summary.by_status.get(s, 0)}</b><span>{esc(s)}</span></a>"
              for s in (x.value for x in JobStatus)]

    def breakdown(title: str, field: str, values: dict[str, int]) -> str:
        items = "".join(
            f'<li><a href="{esc(link(**{field: name}))}">{esc(name)}</a><b>{n}</b></li>'
            for name, n in sorted(values.items(), key=lambda kv: (-kv[1], kv[0])) if n)
        return (f'<div class="card small"><h3>{esc(title)}</h3>'
                f'<ul class="bars">{items or "<li class=muted>none</li>"}</ul></div>')

    bulk = ""
    if summary.bulk:
        b = summary.bulk
        state = "finished" if b.get("finished_at") else "running"
        bulk = (f'<div class="card small bulk-state"><h3>Bulk replay ({state})</h3>'
                f'<p><b>{esc(b.get("done", 0))}</b> / {esc(b.get("matched"))} replayed at '
                f'{esc(b.get("rate"))}/s by {esc(b.get("by"))}</p>'
                f'<p class="muted">started {when(b.get("started_at"))}</p></div>')
    return (f'<div class="counts">{"".join(cards)}</div>'
            f'<div class="cards">{chart(summary.throughput)}'
            f'{breakdown("By kind", "kind", summary.by_kind)}'
            f'{breakdown("By connection", "connection", summary.by_connection)}{bulk}</div>')


def chart(throughput: list[tuple[int, int]], width: int = 360, height: int = 90) -> str:
    """Jobs finished per minute over the last hour: one bar per minute, inline SVG."""
    values = [n for _, n in throughput] or [0]
    peak = max(values) or 1
    bar = width / len(values)
    plot = height - 1
    rects = []
    for i, (minute, n) in enumerate(throughput):
        h = round(plot * n / peak, 1) if n else 0
        at = datetime.fromtimestamp(minute * 60, UTC).strftime("%H:%M")
        rects.append(f'<rect x="{i * bar:.1f}" y="{plot - h:.1f}" width="{max(bar - 1, 1):.1f}" '
                     f'height="{h}" class="bar"><title>{at} UTC: {n} finished</title></rect>')
    total = sum(values)
    return (f'<div class="card chart"><h3>Finished per minute, last hour '
            f'<span class="muted">({total} in all, peak {max(values)}/min)</span></h3>'
            f'<svg viewBox="0 0 {width} {height}" preserveAspectRatio="none" role="img" '
            f'aria-label="jobs finished per minute over the last hour">'
            f'<line x1="0" y1="{plot + 0.5}" x2="{width}" y2="{plot + 0.5}" class="axis"/>'
            f'{"".join(rects)}</svg>'
            f'<div class="ticks"><span>-60 min</span><span>now</span></div></div>')


def filter_form(query: Mapping[str, str], kinds: Iterable[str], connections: Iterable[str],
                steps: Iterable[str]) -> str:
    def select(name: str, label: str, options: Iterable[str]) -> str:
        chosen = query.get(name, "")
        opts = "".join(f'<option value="{esc(o)}"{" selected" if o == chosen else ""}>{esc(o)}'
                       f"</option>" for o in options)
        return (f'<label>{esc(label)}<select name="{esc(name)}" id="f-{esc(name)}">'
                f'<option value="">any</option>{opts}</select></label>')

    def text(name: str, label: str, hint: str, size: int = 10) -> str:
        return (f'<label>{esc(label)}<input name="{esc(name)}" id="f-{esc(name)}" size="{size}" '
                f'value="{esc(query.get(name, ""))}" placeholder="{esc(hint)}"></label>')

    return f"""<form class="filters" method="get" action="/" id="filters">
{select("status", "Status", (s.value for s in JobStatus))}
{select("kind", "Kind", kinds)}
{select("connection", "Connection", connections)}
{select("error_step", "Failed step", steps)}
{text("http_status", "HTTP", "e.g. 400", 5)}
{text("since", "Since", "2h or ISO")}
{text("until", "Until", "ISO or 30m")}
<button type="submit" class="primary" id="apply">Filter</button>
<a class="button" href="/">Clear</a>
</form>"""


def bulk_bar() -> str:
    return """<div class="bulk" id="bulk">
<button type="button" data-action="replay-selected" id="replay-selected" disabled>Replay selected
(<span id="selected-count">0</span>)</button>
<button type="button" data-action="replay-matching" id="replay-matching">Replay all matching…</button>
<button type="button" data-action="purge-matching" id="purge-matching" class="danger">Purge matching…
</button>
<span id="bulk-message" class="message" role="status"></span>
</div>"""


def rows_html(rows: list[JobRow]) -> str:
    if not rows:
        return '<tr><td colspan="8" class="empty">No jobs match these filters.</td></tr>'
    out = []
    for r in rows:
        action = ""
        if r.status == JobStatus.FAILED:
            action = (f'<button type="button" class="small" data-action="replay" '
                      f'data-id="{esc(r.id)}">Replay</button>')
        runs = f'<span class="runcount" title="runs">&times;{r.runs}</span>' if r.runs > 1 else ""
        failed_at = ""
        if r.error:
            failed_at = (f'<span class="step">{esc(r.error.step)}</span> {error_text(r.error)}')
        out.append(
            f'<tr data-id="{esc(r.id)}" class="row s-{esc(r.status)}">'
            f'<td class="pick"><input type="checkbox" class="pick" value="{esc(r.id)}" '
            f'aria-label="select {esc(r.id)}"></td>'
            f'<td class="id"><a href="/ui/job/{esc(r.id)}">{esc(r.id[:12])}</a>{runs}</td>'
            f"<td>{esc(r.kind)}</td><td>{esc(r.connection)}</td>"
            f'<td class="status">{badge(r.status)}</td>'
            f"<td>{when(r.created_at)}</td>"
            f'<td class="why">{failed_at or esc(r.file or "")}</td>'
            f'<td class="act">{action}</td></tr>')
    return "".join(out)


def pager(next_cursor: str | None, query: Mapping[str, str], shown: int, newest: bool) -> str:
    keep = {k: v for k, v in query.items() if v and k != "cursor"}
    first = "" if newest else f'<a class="button" href="/?{esc(urlencode(keep))}">⇤ Newest</a>'
    more = ""
    if next_cursor:
        more = (f'<a class="button" id="next-page" href="/?'
                f'{esc(urlencode({**keep, "cursor": next_cursor}))}">Older →</a>')
    return f'{first}<span class="muted">{shown} shown</span>{more}'


def list_body(summary_html: str, form: str, rows: str, pager_html: str) -> str:
    return f"""<section id="counters">{summary_html}</section>
<section class="card list">
{form}
{bulk_bar()}
<table class="jobs" id="jobs"><thead><tr><th class="pick">
<input type="checkbox" id="pick-all" aria-label="select all shown"></th><th>Job</th><th>Kind</th>
<th>Connection</th><th>Status</th><th>Created (UTC)</th><th>Failed at / file</th><th></th></tr>
</thead><tbody id="rows">{rows}</tbody></table>
<nav class="pager" id="pager">{pager_html}</nav>
</section>"""


# ---- one job -------------------------------------------------------------------------------------
def job_actions(record: JobRecord) -> str:
    buttons = []
    if record.status == JobStatus.FAILED:
        buttons.append('<button type="button" class="primary" data-action="replay-job" '
                       'id="replay">Replay from failed step</button>')
    if record.done:
        force = "true" if record.status == JobStatus.SUCCEEDED else "false"
        buttons.append(f'<button type="button" data-action="restart-job" data-force="{force}" '
                       f'id="restart">Restart from first step</button>')
        buttons.append('<button type="button" class="danger" data-action="delete-job" '
                       'id="delete">Delete</button>')
    if not buttons:
        buttons.append('<span class="muted">running — actions return when it ends</span>')
    return "".join(buttons)


def timeline(record: JobRecord, kind: Kind | None) -> str:
    start = parse_iso(record.runs[-1].started_at if record.runs else record.created_at)
    ends = [parse_iso(s.finished_at) for s in record.steps] + [parse_iso(record.finished_at)]
    known_ends = [e for e in ends if e is not None]
    end = max(known_ends) if known_ends else None
    now = datetime.now(UTC)
    span = ((end or now) - start).total_seconds() if start else 0.0
    titles = {s.name: s.title for s in kind.steps} if kind else {}
    items = []
    for i, s in enumerate(record.steps, 1):
        items.append(_step_item(i, s, titles.get(s.name, s.name), start, span, now))
    return f'<ol class="timeline">{"".join(items)}</ol>'


def _step_item(number: int, s: StepRecord, title: str, start: datetime | None, span: float,
               now: datetime) -> str:
    took = seconds_between(s.started_at, s.finished_at)
    if took is None and s.started_at and s.status in (StepStatus.RUNNING, StepStatus.RETRYING):
        began = parse_iso(s.started_at)
        took = (now - began).total_seconds() if began else None
    bar = ""
    began = parse_iso(s.started_at)
    if start and began and span > 0 and s.status != StepStatus.REUSED:
        left = max(0.0, (began - start).total_seconds() / span)
        width = max(0.01, min(1.0 - left, (took or 0) / span))
        bar = (f'<svg class="gantt" viewBox="0 0 100 6" preserveAspectRatio="none">'
               f'<rect x="0" y="0" width="100" height="6" class="track"/>'
               f'<rect x="{left * 100:.2f}" y="0" width="{width * 100:.2f}" height="6" '
               f'class="fill s-{esc(s.status)}"/></svg>')
    detail = ""
    if s.error:
        detail = f'<div class="error-line">{error_text(s.error)}</div>'
    if s.next_attempt_at and s.status == StepStatus.RETRYING:
        detail += f'<div class="muted">next attempt at {when(s.next_attempt_at, date=False)}</div>'
    if s.result:
        shown = {k: v for k, v in redacted(s.result).items() if v not in (None, "", [], {})}
        detail += "".join(f'<span class="out"><i>{esc(k)}</i> {value_html(v)}</span>'
                          for k, v in shown.items())
    reused = '<span class="muted"> (output kept from an earlier run)</span>' \
        if s.status == StepStatus.REUSED else ""
    return (f'<li class="step s-{esc(s.status)}" data-step="{esc(s.name)}">'
            f'<div class="dot">{number}</div><div class="body">'
            f'<div class="head"><b>{esc(title)}</b> <code>{esc(s.name)}</code> {badge(s.status)}'
            f'{reused}<span class="spacer"></span>'
            f'<span class="meta">{s.attempts} attempt{"s" if s.attempts != 1 else ""} · '
            f'{when(s.started_at, date=False)} → {when(s.finished_at, date=False)} · '
            f"{duration(took)}</span></div>{bar}{detail}</div></li>")


def runs_table(record: JobRecord) -> str:
    rows = "".join(
        f"<tr><td>{r.number}</td><td>{esc(r.trigger)}</td><td><code>{esc(r.from_step)}</code></td>"
        f"<td>{when(r.started_at)}</td><td>{when(r.finished_at)}</td>"
        f"<td>{badge(r.outcome) if r.outcome else badge('running' if not record.done else '—')}"
        f'</td><td class="note">{esc(r.note or "")}</td></tr>'
        for r in reversed(record.runs))
    return (f'<table class="runs"><thead><tr><th>#</th><th>Triggered by</th><th>From step</th>'
            f"<th>Started</th><th>Finished</th><th>Outcome</th><th>Note</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>")


def job_view(record: JobRecord, kind: Kind | None) -> str:
    error = ""
    if record.error:
        error = (f'<div class="failure"><b>Failed at <code>{esc(record.error.step)}</code></b> '
                 f'{error_text(record.error)}</div>')
    landed = ""
    if record.result:
        landed = (f'<div class="card"><h2>What landed</h2>'
                  f"{table_of({k: v for k, v in record.result.items() if v not in (None, '')})}"
                  f"</div>")
    file_info: dict[str, Any] = record.file.model_dump(exclude_none=True) if record.file else {}
    took = seconds_between(record.created_at, record.finished_at)
    return f"""<div class="job-head card">
<div class="title"><h1><code id="job-id">{esc(record.id)}</code></h1>{badge(record.status)}
<span class="spacer"></span><span class="actions" id="job-actions">{job_actions(record)}</span></div>
<p class="facts"><b>{esc(record.kind)}</b> via <b>{esc(record.connection)}</b> ·
created {when(record.created_at)} · finished {when(record.finished_at)} · took {duration(took)}
· {len(record.runs)} run{"s" if len(record.runs) != 1 else ""}</p>
<p class="muted">{esc(kind.summary if kind else "")}</p>
{error}</div>
<div class="grid">
<div class="card wide"><h2>Steps</h2>{timeline(record, kind)}</div>
{landed}
<div class="card"><h2>Parameters</h2>{table_of(record.params)}</div>
<div class="card"><h2>File</h2>{table_of(file_info, "this kind takes no file")}</div>
<div class="card wide"><h2>Runs</h2>{runs_table(record)}</div>
</div>"""
