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


def where(dialect: str, filters: Filters, cursor: str | None = None) -> ColumnElement[bool]:
    """The condition ``filters`` (and a page's ``cursor``, a score) make."""
    parts: list[ColumnElement[bool]] = []
    for name in ("status", "kind", "connection", "batch", "tenant", "priority"):
        value: Any = getattr(filters, name, None)  # tenant and priority: where Filters has them
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
    if filters.file_name is not None:
        parts.append(fragment(dialect, "file_name", filters.file_name))
    error = getattr(filters, "error", None)
    if error is not None:
        parts.append(fragment(dialect, "error_message", error))
    if cursor is not None:
        parts.append(jobs.c.score < int(cursor))
    return and_(true(), *parts)


def page(dialect: str, filters: Filters, limit: int | None, cursor: str | None) -> Any:
    """SELECT id, score of the matching rows, newest first (one more than ``limit``: is there more)."""
    query = select(jobs.c.id, jobs.c.score).where(where(dialect, filters, cursor)).order_by(jobs.c.score.desc())
    return query if limit is None else query.limit(limit + 1)
