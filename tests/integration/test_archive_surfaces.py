"""What an operator sees of a job that moved into the archive, on a real Redis and a real
database (SQLite, and the machine's PostgreSQL): cancelling it answers that it had ended (as for
an ended job still in Redis), the dashboard's list marks its row "archived", and ``ferry info``
names the archive (password hidden), how many jobs it holds and when the last move was."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
import requests

from producers import keys
from producers.archive.mover import Mover
from producers.client import Ferry
from producers.config import ArchiveConfig, FerryConfig
from producers.embedded import RedisLocation
from producers.records import FileInfo
from producers.store import FINISHED_ALREADY, NewJob
from tests import jobs
from tests.fixtures.api import LiveApi

DB = 8
REPO = Path(__file__).resolve().parents[2]
TOKEN = "surfaces-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def ferry(module_db: tuple[RedisLocation, redis.Redis], archive_db: str) -> Ferry:
    client = Ferry(module_db[0].url, config=FerryConfig(archive=ArchiveConfig(url=archive_db)))
    assert client.store.archive is not None
    return client


def archived(ferry: Ferry, name: str) -> str:
    """A job that succeeded, then moved out of Redis into the archive."""
    [outcome] = ferry.store.create_many([NewJob(
        kind="assets-attachment", connection="acme", steps=("get_credentials",), params={"object": "88"},
        file=FileInfo(path=f"/data/{name}", name=name, size=3))])
    assert isinstance(outcome, tuple)
    job_id = outcome[0].id
    jobs.succeed(ferry.store, job_id, {"ok": 1})
    assert ferry.store.archive is not None
    mover = Mover(ferry.store, ferry.store.archive, ArchiveConfig(hot_seconds=0))  # type: ignore[arg-type]
    assert mover.run_round() == 1 and not ferry.redis.exists(keys.job(job_id))
    return job_id


def cli(location: RedisLocation, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REDIS_URL": location.url, "FERRY_CONFIG": str(config)}
    return subprocess.run([sys.executable, "-m", "producers", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cancelling_an_archived_job_answers_it_had_ended(
        ferry: Ferry, module_db: tuple[RedisLocation, redis.Redis], archive_db: str, tmp_path: Path) -> None:
    job_id = archived(ferry, "done.pdf")
    outcome = ferry.cancel(job_id)
    assert (outcome.outcome, outcome.status) == (FINISHED_ALREADY, "succeeded")
    with LiveApi(ferry, tokens=[TOKEN]) as api:
        answer = requests.post(f"{api.url}/jobs/{job_id}/cancel", headers=AUTH, timeout=10)
        assert answer.status_code == 409 and "had ended already (succeeded)" in answer.text
        unknown = requests.post(f"{api.url}/jobs/{'0' * 32}/cancel", headers=AUTH, timeout=10)
        assert unknown.status_code == 404
    config = tmp_path / "ferry.toml"
    config.write_text(f'[archive]\nurl = "{archive_db}"\n')
    done = cli(module_db[0], config, "cancel", job_id)
    assert done.returncode == 1, done.stderr
    assert f"{job_id} had ended already (succeeded); nothing to cancel" in done.stdout
    assert ferry.store.get(job_id).status.value == "succeeded"  # still in the archive, unchanged


def test_the_dashboards_list_marks_archived_rows(ferry: Ferry) -> None:
    old = archived(ferry, "old.pdf")
    [outcome] = ferry.store.create_many([NewJob(
        kind="assets-attachment", connection="acme", steps=("get_credentials",), params={"object": "88"},
        file=FileInfo(path="/data/new.pdf", name="new.pdf", size=3))])
    assert isinstance(outcome, tuple)
    hot = outcome[0].id
    with LiveApi(ferry, tokens=[TOKEN]) as api:
        listed = requests.get(f"{api.url}/ui/jobs", headers=AUTH, timeout=10).json()["jobs"]
        assert {j["id"]: j["archived"] for j in listed} == {hot: False, old: True}
        page = requests.get(f"{api.url}/", headers=AUTH, timeout=10).text
    rows = {line.split('data-id="')[1][:32]: line for line in page.split("<tr ")[1:] if 'data-id="' in line}
    assert 'class="archived"' in rows[old] and 'class="archived"' not in rows[hot]


def test_ferry_info_names_the_archive_its_rows_and_the_last_move(
        ferry: Ferry, module_db: tuple[RedisLocation, redis.Redis], archive_db: str, tmp_path: Path) -> None:
    config = tmp_path / "ferry.toml"
    shown = archive_db
    if archive_db.startswith("postgresql://"):  # a password in the URL is never printed
        user_at = "postgresql://postgres@"
        assert archive_db.startswith(user_at)
        archive_db = archive_db.replace(user_at, "postgresql://postgres:hunter2@")  # trust auth ignores it
        shown = archive_db.replace(":hunter2@", ":***@")
    config.write_text(f'[archive]\nurl = "{archive_db}"\n')
    before = datetime.now(UTC) - timedelta(seconds=1)
    archived(ferry, "a.pdf")
    archived(ferry, "b.pdf")
    told = cli(module_db[0], config, "info", "--json")
    found = json.loads(told.stdout)["archive"]
    assert (found["url"], found["rows"], found["problem"]) == (shown, 2, None)
    assert before <= datetime.fromisoformat(found["last_move"].replace("Z", "+00:00")) <= datetime.now(UTC)
    text = cli(module_db[0], config, "info").stdout
    assert f"archive:      {shown}  (2 jobs, last move {found['last_move']})" in text
    assert "hunter2" not in text + told.stdout


def test_an_archived_row_keeps_its_tenant_and_priority(ferry: Ferry) -> None:
    """A tenant's token sees (and may act on) its archived jobs as it did while they were hot."""
    [outcome] = ferry.store.create_many([NewJob(
        kind="assets-attachment", connection="acme", steps=("get_credentials",), params={"object": "88"},
        file=FileInfo(path="/data/t.pdf", name="t.pdf", size=3), tenant="acme-eu", priority="high")])
    assert isinstance(outcome, tuple)
    job_id = outcome[0].id
    jobs.succeed(ferry.store, job_id, {"ok": 1})
    [hot] = ferry.store.rows([job_id])
    assert ferry.store.archive is not None
    Mover(ferry.store, ferry.store.archive, ArchiveConfig(hot_seconds=0)).run_round()  # type: ignore[arg-type]
    [cold] = ferry.store.rows([job_id])
    assert (cold.tenant, cold.priority, cold.archived) == ("acme-eu", "high", True)
    assert {**vars(cold), "archived": False} == vars(hot)
