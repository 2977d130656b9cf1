"""The archive: ended jobs that left Redis, in SQLite or PostgreSQL (SQLAlchemy Core).

An upsert by job id writes each job's whole record (``ferry status --json``) plus the columns
lists select by, so copying the same job twice (a mover that crashed after its copy) leaves one
row. Reads hand back ``JobRecord``s; ``producers.store`` merges them with the Redis jobs
(``HistoryArchive``), so every read spans both.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, delete, event, func, inspect, select
from sqlalchemy.dialects import sqlite

from producers.archive import search
from producers.archive.schema import JOBS, jobs
from producers.records import JobRecord, JobStatus
from producers.store import Filters

COUNTS_FRESH_SECONDS = 10.0  # the dashboard's counters read the archive's counts this stale at most


def engine_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 (SQLAlchemy's default driver name is psycopg2's)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def make_engine(url: str) -> Engine:
    engine = create_engine(engine_url(url), pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _pragmas(conn: Any, _record: Any) -> None:  # several processes share the file
            cursor = conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.close()
    return engine


def _when(value: str | None) -> datetime | None:
    if not value:
        return None
    at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _aware(value: datetime | str | None) -> datetime | None:
    """A stored time as an aware datetime (SQLite hands back naive ones, or text)."""
    if value is None:
        return None
    at = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def row_of(record: JobRecord | dict[str, Any], score: int) -> dict[str, Any]:
    """The archive's row of a job: its record as JSON (``JobRecord`` or ``codec.as_json``'s
    dict, with any fields this ``JobRecord`` may not declare: tenant, priority) and the columns
    lists filter by."""
    data = record.model_dump(mode="json") if isinstance(record, JobRecord) else record
    error, file = data.get("error") or {}, data.get("file") or {}
    return {
        "id": data["id"], "score": score, "kind": data["kind"], "connection": data["connection"],
        "status": data["status"], "created_at": _when(data["created_at"]),
        "updated_at": data.get("updated_at") or data["created_at"], "finished_at": _when(data.get("finished_at")),
        "batch": data.get("batch"), "tenant": data.get("tenant"),
        "priority": None if data.get("priority") is None else str(data.get("priority")),
        "idempotency_key": data.get("idempotency_key"),
        "error_step": error.get("step"), "error_status": error.get("status"), "error_message": error.get("message"),
        "file_name": file.get("name"),
        "record": json.dumps(data, separators=(",", ":")), "archived_at": datetime.now(UTC),
    }


_COLUMNS = tuple(c.name for c in jobs.columns)
_STAGING = "ferry_archive_staging"


def _copy_upsert(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """PostgreSQL's upsert of a batch: ``COPY`` into a temporary table of this connection (one
    stream, no statement per row), then one ``INSERT … SELECT … ON CONFLICT (id) DO UPDATE``
    from it, in the caller's transaction. A job twice in a batch is written once (the last)."""
    listed = ", ".join(_COLUMNS)
    driver = conn.connection.driver_connection  # psycopg 3's own connection
    if driver is None:
        raise RuntimeError("the archive's database connection is closed")
    with driver.cursor() as cursor:
        # Made once per database connection; every time "if not exists", as a failed first batch
        # takes its creation back with it.
        cursor.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGING} (n serial, "
                       f"LIKE {JOBS}) ON COMMIT DELETE ROWS")
        with cursor.copy(f"COPY {_STAGING} ({listed}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([row[c] for c in _COLUMNS])
        replaced = ", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS if c != "id")
        cursor.execute(f"INSERT INTO {JOBS} ({listed}) SELECT DISTINCT ON (id) {listed} FROM {_STAGING} "
                       f"ORDER BY id, n DESC ON CONFLICT (id) DO UPDATE SET {replaced}")


class ArchiveStore:
    """One archive database; safe to share between threads (SQLAlchemy's pool)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.dialect = self.engine.dialect.name
        self._ready = False
        self._lock = threading.Lock()
        self._counts: tuple[float, dict[tuple[str, str, str], int]] | None = None

    def __repr__(self) -> str:
        return f"ArchiveStore({self.engine.url.render_as_string(hide_password=True)!r})"

    def ensure(self) -> None:
        """The schema at its newest revision (migrated once per process, on first use)."""
        if self._ready:
            return
        with self._lock:
            if not self._ready:
                from producers.archive.migrate import upgrade
                upgrade(self.engine)
                self._ready = True

    # ---- writes ------------------------------------------------------------------------------
    def upsert(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert or replace each row by its id, in one transaction."""
        if not rows:
            return
        self.ensure()
        if self.dialect == "postgresql":
            with self.engine.begin() as conn:
                _copy_upsert(conn, rows)
            return
        statement = sqlite.insert(jobs)
        replaced = {c.name: statement.excluded[c.name] for c in jobs.columns if c.name != "id"}
        statement = statement.on_conflict_do_update(index_elements=[jobs.c.id], set_=replaced)
        with self.engine.begin() as conn:
            conn.execute(statement, list(rows))

    def versions(self, ids: Sequence[str]) -> dict[str, str]:
        """Which of ``ids`` the archive holds, and the ``updated_at`` of each copy (the confirm)."""
        if not ids:
            return {}
        self.ensure()
        with self.engine.connect() as conn:
            found = conn.execute(select(jobs.c.id, jobs.c.updated_at).where(jobs.c.id.in_(list(ids))))
            return {str(i): str(u) for i, u in found}

    def delete(self, ids: Iterable[str]) -> int:
        ids = list(ids)
        if not ids:
            return 0
        self.ensure()
        with self.engine.begin() as conn:
            return int(conn.execute(delete(jobs).where(jobs.c.id.in_(ids))).rowcount)

    def expire(self, succeeded_days: float, failed_days: float, *, now: datetime | None = None) -> int:
        """Delete what the retention no longer keeps: succeeded jobs after ``succeeded_days``,
        failed and cancelled ones after ``failed_days`` (from when they ended)."""
        self.ensure()
        now = now or datetime.now(UTC)
        deleted = 0
        with self.engine.begin() as conn:
            for statuses, days in (([JobStatus.SUCCEEDED.value], succeeded_days),
                                   ([JobStatus.FAILED.value, JobStatus.CANCELLED.value], failed_days)):
                gone = conn.execute(delete(jobs).where(jobs.c.status.in_(statuses),
                                                       jobs.c.finished_at < now - timedelta(days=days)))
                deleted += int(gone.rowcount)
        return deleted

    # ---- reads -------------------------------------------------------------------------------
    def get_many(self, ids: Sequence[str]) -> list[JobRecord]:
        """The archived records of ``ids`` (in that order; the missing left out)."""
        if not ids:
            return []
        self.ensure()
        with self.engine.connect() as conn:
            found = dict(conn.execute(select(jobs.c.id, jobs.c.record).where(jobs.c.id.in_(list(ids)))).all())
        return [JobRecord.model_validate_json(found[i]) for i in ids if i in found]

    def raw(self, job_id: str) -> dict[str, Any] | None:
        """The stored record as JSON (with fields this ``JobRecord`` may not declare) and its score."""
        self.ensure()
        with self.engine.connect() as conn:
            found = conn.execute(select(jobs.c.record, jobs.c.score).where(jobs.c.id == job_id)).first()
        return None if found is None else {**json.loads(found[0]), "_score": int(found[1])}

    def select(self, filters: Filters, limit: int | None, cursor: str | None) -> tuple[list[tuple[str, int]], bool]:
        """(id, score) of the matching jobs, newest first, below ``cursor``; and whether more follow."""
        self.ensure()
        with self.engine.connect() as conn:
            if self.dialect == "postgresql" and limit is not None and search.fragments(filters):
                return self._select_windowed(conn, filters, limit, cursor)
            found = [(str(i), int(s)) for i, s in conn.execute(search.page(self.dialect, filters, limit, cursor))]
        if limit is not None and len(found) > limit:
            return found[:limit], True
        return found, False

    def _select_windowed(self, conn: Connection, filters: Filters, limit: int,
                         cursor: str | None) -> tuple[list[tuple[str, int]], bool]:
        """A fragment search's page: the newest rows in order first (``search.window``), then,
        below them, the trigram index (a rare fragment: few rows to sort)."""
        rows = conn.execute(search.window(self.dialect, filters, limit, cursor)).all()
        found = [(str(i), int(s)) for i, s, matched in rows if matched]
        if len(found) <= limit and len(rows) == search.WINDOW:
            below = str(int(rows[-1][1]))
            found += [(str(i), int(s)) for i, s in conn.execute(
                search.page(self.dialect, filters, limit - len(found), below))]
        return found[:limit], len(found) > limit

    def count(self, filters: Filters) -> int:
        self.ensure()
        with self.engine.connect() as conn:
            query = select(func.count()).select_from(jobs).where(search.where(self.dialect, filters))
            return int(conn.execute(query).scalar_one())

    def by_idempotency_key(self, key: str) -> str | None:
        self.ensure()
        with self.engine.connect() as conn:
            found = conn.execute(select(jobs.c.id).where(jobs.c.idempotency_key == key)
                                 .order_by(jobs.c.score.desc()).limit(1)).first()
        return None if found is None else str(found[0])

    def counts(self) -> dict[tuple[str, str, str], int]:
        """How many archived jobs by (status, kind, connection); a few seconds stale at most."""
        cached = self._counts
        if cached is not None and time.monotonic() - cached[0] < COUNTS_FRESH_SECONDS:
            return cached[1]
        self.ensure()
        with self.engine.connect() as conn:
            found = {(str(s), str(k), str(c)): int(n) for s, k, c, n in conn.execute(
                select(jobs.c.status, jobs.c.kind, jobs.c.connection, func.count())
                .group_by(jobs.c.status, jobs.c.kind, jobs.c.connection))}
        self._counts = (time.monotonic(), found)
        return found

    def summary(self) -> tuple[int, datetime | None] | None:
        """How many rows the archive holds and when the newest one was copied (the last move);
        None when its table is not made yet. Never makes it (``ferry info`` only looks)."""
        database = self.engine.url.database
        if self.dialect == "sqlite" and database and database != ":memory:" and not Path(database).exists():
            return None  # connecting would create the file
        with self.engine.connect() as conn:
            if not inspect(conn).has_table(jobs.name):
                return None
            rows, last = conn.execute(select(func.count(), func.max(jobs.c.archived_at))).one()
        return int(rows), _aware(last)

    def forget_counts(self) -> None:
        """The next ``counts`` reads the database (after a move, in tests)."""
        self._counts = None
