"""Replay and purge end to end: real Redis, the sandbox over HTTP, the real worker process.

Failures are made by the sandbox's own faults (a 400 on the link or on the media upload, a
short-lived media JWT), then replayed through the CLI, the Python API or the HTTP routes.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from producers import replay as ops
from producers.client import Ferry
from producers.errors import ReplayRefused
from producers.files import inspect_path
from producers.kinds import KINDS
from producers.records import FileInfo, JobRecord, StepError
from producers.store import Filters
from tests import jobs
from tests.fixtures.api import LiveApi
from tests.fixtures.broker import both_brokers
from tests.integration.helpers import png, sha256, uploads_with

LINK_FAULT = {"path": "/attachments/object/[^/]+$", "method": "POST", "status": 400}
API_TOKEN = "replay-test-token"


# ---- helpers -------------------------------------------------------------------------------------
def document(tmp_path: Path, name: str = "report.pdf") -> Path:
    path = tmp_path / name
    path.write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 200 + b"\n%%EOF\n")
    return path


def statuses(record: dict[str, Any] | JobRecord) -> list[str]:
    if isinstance(record, JobRecord):
        return [s.status.value for s in record.steps]
    return [s["status"] for s in record["steps"]]


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def stored_failed_copy(ferry: Ferry, template: JobRecord) -> str:
    """Another job like ``template`` (same kind, params, file, steps), failed at the same step
    with the same outputs before it: what a fault would have left, made without the traffic."""
    record, _ = jobs.create(ferry.store, kind=template.kind, connection=template.connection,
                                   steps=[s.name for s in template.steps], params=template.params,
                                   file=template.file)
    assert template.error is not None
    for step in template.steps:
        if step.result is not None:
            jobs.start_step(ferry.store, record.id, step.name)
            ferry.store.finish_step(record.id, step.name, step.result)
    ferry.store.mark_failed(record.id, template.error.step, template.error)
    return record.id


# ---- one job -------------------------------------------------------------------------------------
@both_brokers
def test_replay_from_the_failed_step_does_not_upload_again(ferry_env, ferry, sandbox, tmp_path):
    seed = sandbox.seed()
    sandbox.configure(media_upload="binary")  # Ferry's first form: one media request per upload
    sandbox.add_fault(**LINK_FAULT, times=1)
    doc = document(tmp_path)
    job = ferry.submit("assets-attachment", connection="acme", file=str(doc),
                       params={"object": seed["object_id"], "comment": "scan"})
    failed = ferry.wait(job.id, timeout=60)
    assert failed.status == "failed"
    assert failed.error is not None and failed.error.step == "link_attachment"
    assert failed.error.status == 400 and failed.error.message

    code, record = ferry_env.cli_json("replay", job.id, "--wait", "--timeout", "60")

    assert code == 0, record
    assert record["id"] == job.id and record["status"] == "succeeded"
    assert statuses(record) == ["reused", "reused", "succeeded"]
    assert len(uploads_with(sandbox, sha256(doc))) == 1, "the file was uploaded again"
    assert len(sandbox.requests(path_contains="/media/file")) == 1
    assert len(sandbox.requests(path_contains="/credentials")) == 1
    first, second = record["runs"]
    assert (first["trigger"], first["outcome"]) == ("submit", "failed")
    assert first["error"]["step"] == "link_attachment" and first["error"]["status"] == 400
    assert second["trigger"].startswith("cli (") and second["from_step"] == "link_attachment"
    assert second["outcome"] == "succeeded" and second["finished_at"]
    linked = [a for a in sandbox.attachments() if str(a.get("mediaId")) == record["result"]["media_id"]]
    assert len(linked) == 1


def test_replay_after_the_jwt_expired_fetches_new_credentials_and_uploads_again(
        ferry, sandbox, tmp_path):
    seed = sandbox.seed()
    sandbox.configure(jwt_ttl_seconds=2, media_upload="binary")  # one media request per upload
    sandbox.add_fault(path="^/media/file", method="POST", status=400, times=1)
    doc = document(tmp_path, "scan.pdf")
    job = ferry.submit("assets-attachment", connection="acme", file=str(doc),
                       params={"object": seed["object_id"]})
    failed = ferry.wait(job.id, timeout=60)
    assert failed.error is not None and failed.error.step == "media_upload", failed
    time.sleep(2.5)  # the JWT's own lifetime is over
    credentials_before = len(sandbox.requests(path_contains="/credentials"))

    replayed = ops.replay(ferry, job.id, trigger="test")
    run = replayed.runs[-1]
    assert run.from_step == "get_credentials"
    assert run.note and "expired" in run.note and "get_credentials" in run.note
    done = ferry.wait(job.id, timeout=60)

    assert done.status == "succeeded", done.error
    assert statuses(done) == ["succeeded", "succeeded", "succeeded"]
    # At least one new credentials request (the worker may fetch twice: a 2 s JWT is shorter
    # than its safety margin, so get_credentials cannot hand it to media_upload).
    assert len(sandbox.requests(path_contains="/credentials")) > credentials_before
    assert len(sandbox.requests(path_contains="/media/file")) == 2  # the refused one + the new one
    assert len(uploads_with(sandbox, sha256(doc))) == 1
    assert [r.outcome for r in done.runs] == ["failed", "succeeded"]


def test_restart_force_and_refusals(ferry_env, ferry, sandbox, tmp_path):
    seed = sandbox.seed()
    doc = document(tmp_path)
    job = ferry.submit("assets-attachment", connection="acme", file=str(doc),
                       params={"object": seed["object_id"]})
    assert ferry.wait(job.id, timeout=60).status == "succeeded"

    with pytest.raises(ReplayRefused, match="succeeded"):
        ops.replay(ferry, job.id)
    proc = ferry_env.cli("replay", job.id)
    assert proc.returncode == 2 and "succeeded" in proc.stderr
    assert ferry_env.cli("replay", "no-such-job").returncode == 2

    code, record = ferry_env.cli_json("replay", job.id, "--force", "--wait", "--timeout", "60")
    assert code == 0 and record["status"] == "succeeded"
    assert statuses(record) == ["succeeded"] * 3  # forced: every step ran again
    assert record["runs"][-1]["from_step"] == "get_credentials"
    assert len(uploads_with(sandbox, sha256(doc))) == 2

    # A restart of a failed job runs every step too, and a running job is refused.
    sandbox.add_fault(**LINK_FAULT, times=1)
    other = ferry.submit("assets-attachment", connection="acme", file=str(doc),
                         params={"object": seed["object_id"]})
    assert ferry.wait(other.id, timeout=60).status == "failed"
    restarted = ops.replay(ferry, other.id, restart=True, trigger="test")
    assert restarted.runs[-1].from_step == "get_credentials"
    assert restarted.status in ("queued", "running")
    with pytest.raises(ReplayRefused):
        ops.replay(ferry, other.id)
    assert ferry.wait(other.id, timeout=60).status == "succeeded"


# ---- many ----------------------------------------------------------------------------------------
def test_bulk_replay_of_500_failed_jobs_completes_once_the_faults_are_gone(
        ferry_env, ferry, sandbox, tmp_path):
    seed = sandbox.seed()
    sandbox.add_fault(path="/object/[^/]+$", method="PUT", status=400)  # every avatar set fails
    image = png(tmp_path / "logo.png")
    first = ferry.submit("assets-avatar", connection="acme", file=str(image),
                         params={"object_type": seed["object_type_id"], "object": seed["object_id"]})
    template = ferry.wait(first.id, timeout=60)
    assert template.error is not None and template.error.step == "set_object_avatar", template
    ids = [first.id] + [stored_failed_copy(ferry, template) for _ in range(499)]
    avatar_uploads = len(sandbox.requests(path_contains="/avatar/upload"))

    code, dry = ferry_env.cli_json("replay", "--failed", "--kind", "assets-avatar", "--step",
                         "set_object_avatar", "--http-status", "400", "--dry-run")
    assert code == 0 and dry["matched"] == 500 and dry["dry_run"] is True
    assert ferry.store.counts()["failed"] == 500  # the dry run replayed nothing

    sandbox.clear_faults()
    started = time.monotonic()
    code, outcome = ferry_env.cli_json("replay", "--failed", "--kind", "assets-avatar",
                             "--rate", "100")
    assert code == 0, outcome
    assert outcome["matched"] == 500 and outcome["replayed"] == 500 and not outcome["refused"]
    assert outcome["seconds"] >= 499 / 100 * 0.95, "the bulk replay was not throttled"

    wait_until(lambda: ferry.store.counts()["succeeded"] == 500, 60, "500 replayed jobs")
    print(f"500 replays: enqueued in {outcome['seconds']} s, "
          f"all succeeded after {time.monotonic() - started:.1f} s")
    assert ferry.store.counts()["failed"] == 0
    assert len(sandbox.requests(path_contains="/avatar/upload")) == avatar_uploads  # reused
    sample = ferry.status(ids[-1])
    assert statuses(sample) == ["reused", "succeeded"] and len(sample.runs) == 2


def test_purge_removes_only_the_filtered_jobs(ferry_env, ferry, tmp_path):
    image = png(tmp_path / "x.png")
    info = FileInfo(path=str(image), name="x.png", size=image.stat().st_size, mime_type="image/png")

    def stored(kind: str, steps: list[str], fail_at: str | None, status: int = 400) -> str:
        record, _ = jobs.create(ferry.store, kind=kind, connection="acme", steps=steps,
                                       params={"object": "1", "object_type": "2"}, file=info)
        if fail_at:
            ferry.store.mark_failed(record.id, fail_at,
                                    StepError(step=fail_at, status=status, message="nope"))
        return record.id

    avatar_steps = ["upload_avatar", "set_object_avatar"]
    attach_steps = ["get_credentials", "media_upload", "link_attachment"]
    avatars_400 = [stored("assets-avatar", avatar_steps, "set_object_avatar") for _ in range(3)]
    avatar_503 = stored("assets-avatar", avatar_steps, "upload_avatar", status=503)
    attachments = [stored("assets-attachment", attach_steps, "link_attachment") for _ in range(2)]
    queued = stored("assets-avatar", avatar_steps, None)
    succeeded = stored("assets-attachment", attach_steps, None)
    jobs.succeed(ferry.store, succeeded, {"media_id": "m"})

    code, dry = ferry_env.cli_json("purge", "--kind", "assets-avatar", "--http-status", "400",
                         "--dry-run")
    assert (code, dry["matched"]) == (0, 3)
    declined = subprocess.run([sys.executable, "-m", "producers", "purge", "--kind", "assets-avatar"],
                              env=ferry_env.env, input="n\n", capture_output=True, text=True,
                              timeout=60)
    assert declined.returncode == 1 and "nothing deleted" in declined.stderr

    code, done = ferry_env.cli_json("purge", "--kind", "assets-avatar", "--http-status", "400",
                          "--yes")
    assert code == 0 and done == {"matched": 3, "deleted": 3, "skipped": 0}
    remaining = set(ops.select(ferry, Filters()))
    assert remaining == {avatar_503, *attachments, queued, succeeded}
    assert all(ferry.store.find(i) is None for i in avatars_400)

    # Queued (or running) jobs are never purged; succeeded ones only when asked for.
    code, done = ferry_env.cli_json("purge", "--status", "queued", "--yes")
    assert done == {"matched": 1, "deleted": 0, "skipped": 1}
    code, done = ferry_env.cli_json("purge", "--yes")  # default: every failed job
    assert done["deleted"] == 3
    assert set(ops.select(ferry, Filters())) == {queued, succeeded}


# ---- over HTTP -----------------------------------------------------------------------------------
@pytest.fixture
def live_api(ferry: Ferry) -> Iterator[LiveApi]:
    with LiveApi(ferry, tokens=[API_TOKEN]) as server:
        yield server


def test_http_replay_bulk_dry_run_and_delete(ferry, sandbox, live_api, tmp_path):
    seed = sandbox.seed()
    sandbox.add_fault(**LINK_FAULT, times=2)
    doc = document(tmp_path)
    jobs = [ferry.submit("assets-attachment", connection="acme", file=str(doc),
                         params={"object": seed["object_id"]}) for _ in range(2)]
    for job in jobs:
        assert ferry.wait(job.id, timeout=60).status == "failed"
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    url = live_api.url

    assert requests.post(f"{url}/jobs/{jobs[0].id}/replay", timeout=10).status_code == 401
    assert requests.post(f"{url}/jobs/{jobs[0].id}/replay", timeout=10,
                         headers={"Authorization": "Bearer wrong"}).status_code == 403
    answer = requests.post(f"{url}/jobs/{jobs[0].id}/replay", headers=auth, timeout=10)
    assert answer.status_code == 202, answer.text
    assert answer.json()["runs"][-1]["trigger"].startswith("api (token #")
    again = requests.post(f"{url}/jobs/{jobs[0].id}/replay", headers=auth, timeout=10)
    assert again.status_code in (409, 202)  # 409 unless it already finished
    assert ferry.wait(jobs[0].id, timeout=60).status == "succeeded"

    dry = requests.post(f"{url}/jobs:replay", headers=auth, timeout=10,
                        json={"error_step": "link_attachment", "dry_run": True})
    assert dry.status_code == 200 and dry.json()["matched"] == 1
    bad = requests.post(f"{url}/jobs:replay", headers=auth, timeout=10, json={"since": "soon"})
    assert bad.status_code == 422
    bulk = requests.post(f"{url}/jobs:replay", headers=auth, timeout=10,
                         json={"kind": "assets-attachment", "rate": 50})
    assert bulk.status_code == 202 and bulk.json()["matched"] == 1
    # The bulk replay runs in the background: wait for the job's second run to end.
    wait_until(lambda: len(ferry.status(jobs[1].id).runs) == 2 and ferry.status(jobs[1].id).done,
               60, "the bulk replay")
    assert ferry.status(jobs[1].id).status == "succeeded"
    progress = requests.get(f"{url}/jobs:replay", headers=auth, timeout=10).json()
    assert progress["matched"] == 1 and progress["by"].startswith("api (token #")
    assert len(uploads_with(sandbox, sha256(doc))) == 2  # one per job, none re-uploaded

    assert requests.delete(f"{url}/jobs/{jobs[1].id}", headers=auth, timeout=10).status_code == 204
    assert requests.delete(f"{url}/jobs/{jobs[1].id}", headers=auth, timeout=10).status_code == 404
    assert ferry.store.find(jobs[1].id) is None


def test_dashboard_session_needs_its_csrf_token(ferry, live_api):
    session = requests.Session()
    login = session.post(f"{live_api.url}/login", data={"token": "wrong", "next": "/"}, timeout=10)
    assert login.status_code == 401
    login = session.post(f"{live_api.url}/login", data={"token": API_TOKEN, "next": "/"},
                         timeout=10, allow_redirects=False)
    assert login.status_code == 303
    cookie = login.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    page = session.get(f"{live_api.url}/", timeout=10)
    assert page.status_code == 200 and "frame-ancestors 'none'" in page.headers["content-security-policy"]
    csrf = page.text.split('name="csrf-token" content="')[1].split('"')[0]

    without = session.post(f"{live_api.url}/jobs:replay", json={"dry_run": True}, timeout=10)
    assert without.status_code == 403
    wrong = session.post(f"{live_api.url}/jobs:replay", json={"dry_run": True}, timeout=10,
                         headers={"X-CSRF-Token": "x" + csrf})
    assert wrong.status_code == 403
    right = session.post(f"{live_api.url}/jobs:replay", json={"dry_run": True}, timeout=10,
                         headers={"X-CSRF-Token": csrf})
    assert right.status_code == 200 and right.json()["matched"] == 0
    assert session.get(f"{live_api.url}/ui/summary", timeout=10).status_code == 200


def test_a_queued_job_whose_message_was_lost_is_republished_only_with_force(ferry, sandbox, tmp_path):
    seed = sandbox.seed()
    doc = document(tmp_path, "lost.pdf")
    spec = KINDS["assets-attachment"]
    info, _ = inspect_path(str(doc), spec.file, ())  # type: ignore[arg-type]
    # What a producer that died between storing the job and publishing it leaves behind.
    record, _ = jobs.create(ferry.store, kind=spec.name, connection="acme", steps=spec.step_names,
                                   params={"object": seed["object_id"]}, file=info)
    with pytest.raises(ReplayRefused, match="force"):
        ops.replay(ferry, record.id)
    ops.replay(ferry, record.id, force=True, trigger="test")
    done = ferry.wait(record.id, timeout=60)
    assert done.status == "succeeded"
    assert "re-published" in (done.runs[-1].note or "")
