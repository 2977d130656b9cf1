"""The archive of ended jobs (issue 27), on a real Redis and a real database (SQLite, and the
machine's PostgreSQL): jobs moved out of Redis read exactly as before (by id, in lists with every
filter, in counts), a crash of the mover at each point loses and duplicates nothing, a job with a
webhook still to deliver stays hot, an idempotency key outlives its job's move, retention."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from producers import keys
from producers.archive.mover import CRASH_ENV, CRASH_POINTS, Mover
from producers.archive.store import ArchiveStore
from producers.config import ArchiveConfig
from producers.embedded import RedisLocation
from producers.records import FileInfo, JobStatus, StepError
from producers.store import Filters, JobStore, NewJob
from tests import jobs

DB = 7
STEPS = ("get_credentials", "media_upload", "link_attachment")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def location(module_db: tuple[RedisLocation, redis.Redis]) -> RedisLocation:
    return module_db[0]


@pytest.fixture
def client(module_db: tuple[RedisLocation, redis.Redis]) -> redis.Redis:
    return module_db[1]


@pytest.fixture
def archive(archive_db: str) -> ArchiveStore:
    return ArchiveStore(archive_db)


@pytest.fixture
def store(client: redis.Redis, archive: ArchiveStore) -> JobStore:
    store = JobStore(client, retention_seconds=3600)
    store.archive = archive
    return store


def new(store: JobStore, name: str, *, key: str | None = None, callback: str | None = None) -> str:
    [outcome] = store.create_many([NewJob(
        kind="assets-attachment", connection="acme", steps=STEPS, params={"object": "88"},
        file=FileInfo(path=f"/data/{name}", name=name, size=3), idempotency_key=key, callback_url=callback)])
    assert isinstance(outcome, tuple)
    return outcome[0].id


def fail(store: JobStore, job_id: str, message: str, status: int = 403) -> None:
    jobs.start_step(store, job_id, "get_credentials")
    store.finish_step(job_id, "get_credentials", {"ok": 1})
    jobs.start_step(store, job_id, "media_upload")
    store.finish_step(job_id, "media_upload", {"media": "m1"})
    jobs.start_step(store, job_id, "link_attachment")
    store.mark_failed(job_id, "link_attachment", StepError(step="link_attachment", status=status, message=message))


def mover(store: JobStore, archive: ArchiveStore, hot_seconds: float = 0) -> Mover:
    return Mover(store, archive, ArchiveConfig(hot_seconds=hot_seconds, batch=3))


def hot_counts_exact(store: JobStore, client: redis.Redis) -> None:
    """``ferry:counts`` counts exactly the jobs Redis holds (the archive's are added on reading)."""
    raw = client.hgetall(keys.job_counts())
    for status in JobStatus:
        held = int(client.zcard(keys.index_status(status.value)))
        assert int(raw.get(f"{status.value}|assets-attachment|acme", 0)) == held, status


def test_moved_jobs_read_exactly_as_before(store: JobStore, archive: ArchiveStore, client: redis.Redis) -> None:
    done = [new(store, f"invoice-{n}.pdf") for n in range(3)]
    for job_id in done:
        jobs.succeed(store, job_id, {"attachment": job_id})
    failed = [new(store, "scan-march-0042.pdf", key="scan-42"), new(store, "photo.png")]
    fail(store, failed[0], "Object 88 has no attachments field")
    fail(store, failed[1], "Rate limit exceeded", status=429)
    running = new(store, "still-running.pdf")
    jobs.start_step(store, running, "get_credentials")
    before = {j: store.get(j) for j in [*done, *failed, running]}
    newest_first = store.select(Filters()).ids
    counts_before = store.counts()

    assert mover(store, archive).run_round() == 5
    assert int(client.zcard(keys.index_all())) == 1 and client.exists(keys.job(running))
    hot_counts_exact(store, client)
    assert archive.count(Filters()) == 5

    for job_id, record in before.items():  # by id: the whole record, as `ferry status --json` shows it
        assert store.get(job_id).model_dump() == record.model_dump()
    assert store.select(Filters()).ids == newest_first
    paged, cursor = [], None
    while True:  # pages of 2 across Redis and the archive, one cursor
        page = store.select(Filters(), limit=2, cursor=cursor)
        paged += page.ids
        cursor = page.next_cursor
        if cursor is None:
            break
    assert paged == newest_first
    assert store.counts() == counts_before
    assert set(store.select(Filters(status="failed")).ids) == set(failed)
    assert store.select(Filters(file_name="MARCH-00")).ids == [failed[0]]
    assert store.select(Filters(error="no attachments")).ids == [failed[0]]
    assert store.select(Filters(file_name="zz\x00zz", error_step="a\x00")).ids == []  # PostgreSQL refuses NUL
    assert store.select(Filters(http_status=429)).ids == [failed[1]]
    assert set(store.select(Filters(error_step="link_attachment")).ids) == set(failed)
    assert store.select(Filters(since=datetime.now(UTC) + timedelta(hours=1))).ids == []
    assert store.count(Filters(status="succeeded")) == 3
    assert store.count(Filters(connection="acme", since=datetime.now(UTC) - timedelta(hours=1))) == 6
    assert store.lookup("scan-42") == [failed[0]]
    assert [r.id for r in store.rows([running, failed[0]])] == [running, failed[0]]
    assert store.job_counts([("failed", "assets-attachment", "acme")]) == [2]


def test_an_idempotency_key_outlives_its_jobs_move(store: JobStore, archive: ArchiveStore) -> None:
    job_id = new(store, "a.pdf", key="once")
    jobs.succeed(store, job_id, {"ok": 1})
    assert mover(store, archive).run_round() == 1
    [outcome] = store.create_many([NewJob(kind="assets-attachment", connection="acme", steps=STEPS,
                                          params={"object": "88"}, file=FileInfo(path="/data/a.pdf", name="a.pdf",
                                                                                 size=3), idempotency_key="once")])
    assert isinstance(outcome, tuple)
    assert outcome == (store.get(job_id), False)  # the archived job answers, no new one


def test_a_job_with_a_webhook_still_to_deliver_stays_hot(store: JobStore, archive: ArchiveStore) -> None:
    waiting = new(store, "a.pdf", callback="https://hooks.example/ferry")
    jobs.succeed(store, waiting, {"ok": 1})
    assert store.get(waiting).notifications[0].open
    assert mover(store, archive).run_round() == 0
    assert archive.count(Filters()) == 0


def test_only_jobs_past_hot_seconds_move(store: JobStore, archive: ArchiveStore) -> None:
    job_id = new(store, "a.pdf")
    jobs.succeed(store, job_id, {"ok": 1})
    assert mover(store, archive, hot_seconds=60).run_round() == 0
    assert mover(store, archive, hot_seconds=0).run_round() == 1


def test_purge_and_retention_reach_the_archive(store: JobStore, archive: ArchiveStore) -> None:
    a, b = new(store, "a.pdf"), new(store, "b.pdf")
    jobs.succeed(store, a, {"ok": 1})
    fail(store, b, "nope")
    mover(store, archive).run_round()
    assert archive.expire(30, 180, now=datetime.now(UTC) + timedelta(days=31)) == 1  # the succeeded one
    assert store.find(a) is None and store.find(b) is not None
    assert store.delete(b) and store.find(b) is None


MOVE_ONCE = """
import sys, redis
from producers.archive.mover import Mover
from producers.archive.store import ArchiveStore
from producers.config import ArchiveConfig
from producers.store import JobStore
store = JobStore(redis.Redis.from_url(sys.argv[1], decode_responses=True))
Mover(store, ArchiveStore(sys.argv[2]), ArchiveConfig(hot_seconds=0, batch=50)).move_batch()
"""


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_crash_of_the_mover_at_each_point_loses_and_duplicates_nothing(
        point: str, store: JobStore, archive: ArchiveStore, client: redis.Redis, location: RedisLocation,
        archive_db: str) -> None:
    ended = [new(store, f"f{n}.pdf") for n in range(20)]
    for n, job_id in enumerate(ended):
        if n % 2:
            fail(store, job_id, f"refused {n}")
        else:
            jobs.succeed(store, job_id, {"n": n})
    before = {j: store.get(j).model_dump() for j in ended}
    killed = subprocess.run([sys.executable, "-c", MOVE_ONCE, location.url, archive_db], cwd=REPO,
                            env={**os.environ, CRASH_ENV: point}, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr  # SIGKILL at the point, nothing after it ran
    in_redis = {j for j in ended if client.exists(keys.job(j))}
    archive.forget_counts()
    assert archive.count(Filters()) == 20  # copied, every one, once
    assert in_redis == (set() if point == "dropped" else set(ended))
    hot_counts_exact(store, client)
    assert sorted(store.select(Filters()).ids) == sorted(ended)  # each listed once
    assert {j: store.get(j).model_dump() for j in ended} == before

    assert mover(store, archive).run_round() == len(in_redis)  # the next round finishes the move
    assert archive.count(Filters()) == 20 and int(client.zcard(keys.index_all())) == 0
    hot_counts_exact(store, client)
    assert {j: store.get(j).model_dump() for j in ended} == before
    assert store.count(Filters(status="failed")) == 10


def test_a_fragment_search_pages_the_same_past_its_window(store: JobStore, archive: ArchiveStore,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from producers.archive import search
    names = [f"{'scan' if n % 3 else 'photo'}-{n}.pdf" for n in range(12)]
    ids = [new(store, name) for name in names]
    for job_id in ids:
        jobs.succeed(store, job_id, {"ok": 1})
    mover(store, archive).run_round()
    expected = [i for i, name in reversed(list(zip(ids, names, strict=True))) if "scan" in name]
    for window in (2, 5, 100):  # the newest rows in order, then the trigram index below them
        monkeypatch.setattr(search, "WINDOW", window)
        paged, cursor = [], None
        while True:
            page = store.select(Filters(file_name="SCAN"), limit=3, cursor=cursor)
            paged += page.ids
            cursor = page.next_cursor
            if cursor is None:
                break
        assert paged == expected, window


def test_copying_a_job_again_replaces_its_row(store: JobStore, archive: ArchiveStore) -> None:
    """The upsert by job id (on PostgreSQL a COPY into a temporary table, then one INSERT … ON
    CONFLICT from it): a job copied again, even twice in one batch, is one row holding the
    last copy; batch after batch on the same pooled connection."""
    from producers.archive.store import row_of
    a, b = new(store, "a.pdf"), new(store, "b.pdf")
    jobs.succeed(store, a, {"ok": 1})
    fail(store, b, "refused once")
    rows = {j: row_of(store.get(j), 1000 + n) for n, j in enumerate((a, b))}
    archive.upsert(list(rows.values()))
    changed = {**rows[b], "error_message": "refused twice", "updated_at": "2026-01-02T00:00:00Z"}
    for _ in range(3):
        archive.upsert([rows[a], rows[b], changed])
    assert archive.count(Filters()) == 2
    assert archive.versions([a, b]) == {a: rows[a]["updated_at"], b: "2026-01-02T00:00:00Z"}
    assert [i for i, _ in archive.select(Filters(error="twice"), None, None)[0]] == [b]
    assert archive.select(Filters(error="refused once"), None, None)[0] == []


def test_a_batch_the_database_refuses_copies_nothing_and_the_next_one_is_copied(
        store: JobStore, archive: ArchiveStore) -> None:
    from psycopg import Error as PsycopgError
    from sqlalchemy.exc import SQLAlchemyError

    from producers.archive.store import row_of
    a, b = new(store, "a.pdf"), new(store, "b.pdf")
    for job_id in (a, b):
        jobs.succeed(store, job_id, {"ok": 1})
    good, bad = row_of(store.get(a), 1), {**row_of(store.get(b), 2), "status": None}
    with pytest.raises((SQLAlchemyError, PsycopgError)):  # the first batch on a fresh connection: one row refused
        archive.upsert([good, bad])
    assert archive.count(Filters()) == 0
    archive.upsert([good, {**bad, "status": "succeeded"}])
    assert archive.count(Filters()) == 2
