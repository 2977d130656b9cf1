"""Which archived jobs: ``producers.store.Filters`` as a SQL condition.

Every filter the Redis side has matches the same way here. A fragment of a file name or an error
message uses the database's trigram index: ``ILIKE`` under a GIN ``gin_trgm_ops`` index on
PostgreSQL, the FTS5 trigram table on SQLite (which needs three characters: a shorter fragment is
matched by ``LIKE`` over the rows the other filters leave).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, literal_column, select, table, true

from producers.archive.schema import JOBS, TEXT, jobs
from producers.store import Filters

_SCORE_PER_SECOND = 1_000_000  # the score is creation ms x 1000


def _like(fragment: str) -> str:
    escaped = fragment.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _text(value: object) -> str:
    return str(value).replace("\x00", "")  # PostgreSQL refuses NUL in text; no stored value holds one


def fragment(dialect: str, column: str, value: str) -> ColumnElement[bool]:
    """Rows whose ``column`` holds ``value``, any case, through the fragment index."""
    target, value = jobs.c[column], _text(value)
    if dialect == "sqlite" and len(value) >= 3:
        inner: Select[Any] = select(literal_column("rowid")).select_from(table(TEXT)).where(
            literal_column(column).like(_like(value), escape="\\"))
        return literal_column(f"{JOBS}.rowid").in_(inner)
    if dialect == "postgresql":
        return target.ilike(_like(value), escape="\\")
    return func.lower(target).like(_like(value.lower()), escape="\\")


def fragments(filters: Filters) -> bool:
    return filters.file_name is not None or filters.error is not None


def where(dialect: str, filters: Filters, cursor: str | None = None, *,
          with_fragments: bool = True) -> ColumnElement[bool]:
    """The condition ``filters`` (and a page's ``cursor``, a score) make; ``with_fragments``
    False leaves out the file-name and error fragments."""
    parts: list[ColumnElement[bool]] = []
    for name, value in (("status", filters.status), ("kind", filters.kind), ("connection", filters.connection),
                        ("batch", filters.batch), ("tenant", filters.tenant), ("priority", filters.priority)):
        if value is not None:
            parts.append(jobs.c[name] == _text(value))
    if filters.error_step is not None:
        parts.append(jobs.c.error_step == _text(filters.error_step))
    if filters.http_status is not None:
        parts.append(jobs.c.error_status == filters.http_status)
    if filters.since is not None:
        parts.append(jobs.c.score >= int(filters.since.timestamp() * 1000) * 1000)
    if filters.until is not None:
        parts.append(jobs.c.score < int(filters.until.timestamp() * 1000) * 1000)
    if filters.file_name is not None and with_fragments:
        parts.append(fragment(dialect, "file_name", filters.file_name))
    if filters.error is not None and with_fragments:
        parts.append(fragment(dialect, "error_message", filters.error))
    if cursor is not None:
        parts.append(jobs.c.score < int(cursor))
    return and_(true(), *parts)


def page(dialect: str, filters: Filters, limit: int | None, cursor: str | None) -> Any:
    """SELECT id, score of the matching rows, newest first (one more than ``limit``: is there more)."""
    query = select(jobs.c.id, jobs.c.score).where(where(dialect, filters, cursor)).order_by(jobs.c.score.desc())
    return query if limit is None else query.limit(limit + 1)


WINDOW = 2_000  # newest rows a fragment search reads in order before it asks the trigram index


def window(dialect: str, filters: Filters, limit: int, cursor: str | None) -> Any:
    """A fragment search over the newest ``WINDOW`` rows the other filters leave, in score order
    (a common fragment finds its page here at once, where the trigram index would hand over
    every row holding it to be sorted): SELECT id, score, and whether the row matched; the last
    row of the window tells where it ended."""
    newest = (select(jobs.c.id, jobs.c.score, jobs.c.file_name, jobs.c.error_message)
              .where(where(dialect, filters, cursor, with_fragments=False))
              .order_by(jobs.c.score.desc()).limit(WINDOW).subquery())
    matched = and_(true(), *(
        [newest.c.file_name.ilike(_like(_text(filters.file_name)), escape="\\")] if filters.file_name else []),
        *([newest.c.error_message.ilike(_like(_text(filters.error or "")), escape="\\")]
          if filters.error else []))
    return select(newest.c.id, newest.c.score, matched.label("matched")).order_by(newest.c.score.desc())
