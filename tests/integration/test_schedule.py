"""Jobs not before a time, end to end on both brokers: ``ferry submit --in`` stores the job
scheduled, a real worker's releaser queues it when due (on RabbitMQ through the outbox), and its
first step starts no earlier than its ``not_before``."""

from __future__ import annotations

from datetime import datetime

from tests.fixtures.broker import both_brokers
from tests.integration.helpers import png


def _at(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


@both_brokers
def test_a_scheduled_job_waits_for_its_time_then_runs_once(ferry_env, ferry, sandbox, tmp_path):
    users = sandbox.seed()["awork"]["users"]
    code, job = ferry_env.cli_json("submit", "awork-image", "-c", "awork", "--entity", "users", "--id", users,
                                   "--in", "3s", "--json", str(png(tmp_path / "u.png")))
    assert code == 0, job
    assert job["status"] == "scheduled" and job["not_before"]
    code, listed = ferry_env.cli_json("jobs", "--status", "scheduled", "--json")
    assert code == 0 and [j["id"] for j in listed["jobs"]] == [job["id"]], listed

    done = ferry.wait(job["id"], timeout=60)

    assert done.status == "succeeded", done
    first = done.steps[0]
    assert first.started_at is not None and _at(first.started_at) >= _at(job["not_before"])
    assert first.attempts == 1 and len(sandbox.requests(path_contains="/files/images/users")) == 1
