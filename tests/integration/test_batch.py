"""``ferry submit-batch`` as a user runs it: the real CLI in a subprocess over the real Redis.

Tests without ``--wait`` use their own Redis database (db 5) so a session's live worker (db 0)
leaves their jobs ``queued``; the ``--wait`` tests use db 0 with that worker and the sandbox.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from producers.embedded import RedisLocation
from tests.fixtures.worker import FerryEnv, write_config
from tests.integration.helpers import png

BATCH_DB = 5


class Cli:
    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env, self.cwd = env, cwd

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "producers", "submit-batch", *args],
                              env=self.env, cwd=self.cwd, capture_output=True, text=True,
                              timeout=120)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "doc.pdf").write_bytes(b"%PDF-1.4\n" + b"y" * 500 + b"\n%%EOF\n")
    png(tmp_path / "logo.png")
    return tmp_path


@pytest.fixture
def store(redis_location: RedisLocation) -> redis.Redis:
    socket = Path(urlsplit(redis_location.url).path)
    client = redis.Redis.from_url(RedisLocation.from_socket(socket, BATCH_DB).url,
                                  decode_responses=True)
    client.flushdb()
    return client


@pytest.fixture
def cli(work: Path, store: redis.Redis) -> Cli:
    config = write_config(work / "ferry.toml", "http://127.0.0.1:9", "ferry@example.com")
    url = store.connection_pool.connection_kwargs["path"]
    env = {**os.environ, "FERRY_CONFIG": str(config), "FERRY_HOME": str(work / ".ferry"),
           "REDIS_URL": RedisLocation.from_socket(Path(url), BATCH_DB).url}
    return Cli(env, work)


def jsonl(path: Path, *lines: dict[str, Any] | str) -> Path:
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def attachment(obj: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "assets-attachment", "connection": "acme", "file": "doc.pdf",
            "params": {"object": obj}, **extra}


def jobs_in(store: redis.Redis) -> int:
    return int(store.zcard("ferry:idx:all"))


def test_every_bad_line_is_reported_by_number_and_the_good_ones_are_submitted(cli, work, store):
    manifest = jsonl(work / "jobs.jsonl",
                     attachment("1"),
                     "",
                     {"kind": "assets-attachment", "connection": "nowhere", "file": "gone.pdf",
                      "params": {}},
                     "{not json",
                     attachment("2", idempotency_key="m-2"),
                     {"kind": "assets-avatar", "connection": "acme", "file": "doc.pdf",
                      "params": {"object_type": "x", "object": "3"}})
    proc = cli(str(manifest), "--json")
    assert proc.returncode == 2, proc.stderr
    report = json.loads(proc.stdout)
    bad = {(p["line"], p["field"]) for p in report["problems"]}
    assert bad == {(3, "connection"), (3, "params.object"), (3, "file"), (4, ""),
                   (6, "params.object_type"), (6, "file")}
    assert "line 3: connection" in proc.stderr and "line 4: not JSON" in proc.stderr
    assert [s["line"] for s in report["submitted"]] == [1, 5]
    assert report["submitted"][0]["job"]["file"]["path"] == str(work / "doc.pdf")
    assert report["summary"]["submitted"] == 2 and report["summary"]["bad_lines"] == 3
    assert jobs_in(store) == 2

    again = cli(str(jsonl(work / "again.jsonl", attachment("2", idempotency_key="m-2"))),
                "--json")
    assert again.returncode == 0, again.stderr
    same = json.loads(again.stdout)["submitted"][0]
    assert same["created"] is False and same["job"]["id"] == report["submitted"][1]["job"]["id"]
    assert jobs_in(store) == 2


def test_a_line_with_not_before_is_scheduled_in_the_batch_with_its_priority_and_tenant(cli, work, store):
    manifest = jsonl(work / "jobs.jsonl", attachment("1"),
                     attachment("2", not_before="2099-01-01T02:00:00Z", priority="high", tenant="acme-corp"))
    proc = cli(str(manifest), "--json")
    assert proc.returncode == 0, proc.stderr
    now, later = (s["job"] for s in json.loads(proc.stdout)["submitted"])
    assert (now["status"], now["priority"]) == ("queued", "low")  # a batch's jobs default to low
    assert (later["status"], later["priority"], later["tenant"]) == ("scheduled", "high", "acme-corp")
    assert later["not_before"].startswith("2099-01-01T02:00:00") and later["batch"] == now["batch"]


def test_strict_refuses_the_whole_file(cli, work, store):
    manifest = jsonl(work / "jobs.jsonl", attachment("1"), attachment("2"),
                     {"kind": "assets-attachment", "connection": "acme"})
    proc = cli(str(manifest), "--strict")
    assert proc.returncode == 2
    assert "line 3: params.object" in proc.stderr and "line 3: file" in proc.stderr
    assert "nothing submitted" in proc.stderr
    assert jobs_in(store) == 0


def test_csv_takes_params_columns_and_a_params_json_column(cli, work, store):
    (work / "jobs.csv").write_text(
        "kind,connection,file,params.object,params.comment,params,idempotency_key\n"
        "assets-attachment,acme,doc.pdf,10,from a column,,\n"
        'assets-attachment,acme,doc.pdf,,,"{""object"": ""11"", ""comment"": ""json""}",c-11\n'
        'assets-attachment,acme,doc.pdf,12,,"{""object"": ""12""}",\n'
        "assets-avatar,acme,logo.png,,,\"{\"\"object_type\"\": 7, \"\"object\"\": \"\"9\"\"}\",\n")
    proc = cli("jobs.csv", "--json")
    assert proc.returncode == 2, proc.stderr
    report = json.loads(proc.stdout)
    assert [(p["line"], p["field"]) for p in report["problems"]] == [(4, "params.object")]
    params = {s["line"]: s["job"]["params"] for s in report["submitted"]}
    assert params[2] == {"object": "10", "comment": "from a column"}
    assert params[3] == {"object": "11", "comment": "json"}
    assert params[5]["object_type"] == 7
    assert jobs_in(store) == 3


def test_a_csv_with_an_unknown_column_is_refused_whole(cli, work, store):
    (work / "jobs.csv").write_text("kind,connection,file,object\nassets-attachment,acme,doc.pdf,1\n")
    proc = cli("jobs.csv")
    assert proc.returncode == 2
    assert "unknown column(s) object" in proc.stderr
    assert jobs_in(store) == 0


def test_wait_shows_a_summary_and_exits_0_when_every_job_landed(ferry_env: FerryEnv, ferry,
                                                                sandbox, tmp_path):
    seed = sandbox.seed()
    png(tmp_path / "logo.png")
    (tmp_path / "a.pdf").write_bytes(b"%PDF-1.4\n" + b"a" * 3000 + b"\n%%EOF\n")
    manifest = jsonl(tmp_path / "jobs.jsonl",
                     {"kind": "assets-attachment", "connection": "acme", "file": "a.pdf",
                      "params": {"object": seed["object_id"]}},
                     {"kind": "assets-avatar", "connection": "acme", "file": "logo.png",
                      "params": {"object_type": seed["object_type_id"],
                                 "object": seed["object_id"]}})
    proc = ferry_env.cli("submit-batch", str(manifest), "--wait", "--timeout", "90")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 submitted (2 succeeded); 0 bad line(s)" in proc.stdout
    assert "done 2" in proc.stderr


def test_wait_exits_1_when_a_job_fails(ferry_env: FerryEnv, ferry, sandbox, tmp_path):
    seed = sandbox.seed()
    (tmp_path / "a.pdf").write_bytes(b"%PDF-1.4\n" + b"a" * 300 + b"\n%%EOF\n")
    manifest = jsonl(tmp_path / "jobs.jsonl",
                     {"kind": "assets-attachment", "connection": "acme", "file": "a.pdf",
                      "params": {"object": seed["object_id"]}},
                     {"kind": "assets-attachment", "connection": "acme", "file": "a.pdf",
                      "params": {"object": "424242"}})
    proc = ferry_env.cli("submit-batch", str(manifest), "--wait", "--timeout", "90", "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    summary = json.loads(proc.stdout)["summary"]
    assert (summary["succeeded"], summary["failed"]) == (1, 1)
