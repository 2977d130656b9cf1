"""The two Assets flows end to end: CLI → Redis → real worker → sandbox over HTTP."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from tests.fixtures.broker import both_brokers
from tests.integration.helpers import job_json, png, sha256, uploads_with


@both_brokers
def test_avatar_lands_on_existing_object_with_the_servers_uuid(ferry_env, ferry, sandbox, tmp_path):
    seed = sandbox.seed()
    image = png(tmp_path / "logo.png")
    code, job = job_json(ferry_env, "assets-avatar", "-c", "acme", "--object-type",
                            seed["object_type_id"], "--object", seed["object_id"], str(image))
    assert code == 0, job
    assert job["status"] == "succeeded"
    assert [s["name"] for s in job["steps"]] == ["upload_avatar", "set_object_avatar"]
    result = job["result"]
    assert result["object_id"] == seed["object_id"]
    assert result["avatar_uuid"] != job["steps"][0]["result"]["client_uuid"]  # the server's, not ours
    assert uploads_with(sandbox, sha256(image)), "the sandbox never received these bytes"


def test_avatar_creates_an_object_from_attributes(ferry_env, ferry, sandbox, tmp_path):
    seed = sandbox.seed()
    image = png(tmp_path / "new.png")
    code, job = job_json(ferry_env, "assets-avatar", "-c", "acme", "--object-type",
                            seed["object_type_id"], "--attributes", '{"1": "Laptop 42"}', str(image))
    assert code == 0, job
    assert job["result"]["created"] is True
    assert job["result"]["object_id"] not in (None, "None", seed["object_id"])


@both_brokers
def test_attachment_three_steps_land_the_exact_bytes(ferry_env, ferry, sandbox, tmp_path):
    seed = sandbox.seed()
    doc = tmp_path / "report.pdf"
    doc.write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 400 + b"\n%%EOF\n")
    code, job = job_json(ferry_env, "assets-attachment", "-c", "acme", "--object", seed["object_id"],
                            "--comment", "scan", str(doc))
    assert code == 0, job
    assert [s["name"] for s in job["steps"]] == ["get_credentials", "media_upload", "link_attachment"]
    assert all(s["status"] == "succeeded" and s["attempts"] == 1 for s in job["steps"])
    assert uploads_with(sandbox, sha256(doc))
    assert not re.search(r"eyJ[\w-]+\.eyJ[\w-]+\.", json.dumps(job))  # no media JWT in the record or the CLI
    linked = [a for a in sandbox.attachments() if str(a.get("mediaId")) == job["result"]["media_id"]]
    assert len(linked) == 1
    assert linked[0]["filename"] == "report.pdf"


def test_permanent_error_fails_at_its_step_with_the_destinations_message(ferry_env, ferry, sandbox, tmp_path):
    image = png(tmp_path / "x.png")
    code, job = job_json(ferry_env, "assets-avatar", "-c", "acme", "--object-type", "999999",
                            "--object", "424242", str(image))
    assert code == 1
    assert job["status"] == "failed"
    assert job["error"]["step"] in ("upload_avatar", "set_object_avatar")
    assert 400 <= job["error"]["status"] < 500
    assert job["error"]["message"]


@both_brokers
def test_429_with_retry_after_is_retried_no_sooner_than_asked(ferry_env, ferry, sandbox, tmp_path):
    seed = sandbox.seed()
    sandbox.add_fault(path="/attachments/object/.*/credentials", status=429, times=1, retry_after=2)
    doc = tmp_path / "notes.txt"
    doc.write_text("hello\n" * 100)
    started = time.monotonic()
    code, job = job_json(ferry_env, "assets-attachment", "-c", "acme", "--object", seed["object_id"],
                            str(doc))
    assert code == 0, job
    creds = job["steps"][0]
    assert creds["attempts"] == 2
    hits = [r for r in sandbox.requests(path_contains="/credentials")]
    times = sorted(r["time"] for r in hits)
    assert len(times) >= 2 and _seconds_between(times[0], times[1]) >= 2.0
    assert time.monotonic() - started >= 2.0


def test_media_401_fetches_new_credentials_once(ferry_env, ferry, sandbox, tmp_path):
    seed = sandbox.seed()
    sandbox.add_fault(path="^/media/file", status=401, times=1)
    doc = tmp_path / "a.txt"
    doc.write_text("x" * 1000)
    code, job = job_json(ferry_env, "assets-attachment", "-c", "acme", "--object", seed["object_id"],
                            str(doc))
    assert code == 0, job
    assert job["steps"][1]["result"]["credentials_refreshed"] is True


def test_validation_refuses_before_enqueueing(ferry_env, ferry, tmp_path):
    proc = ferry_env.cli("submit", "assets-avatar", "-c", "nope", "--object-type", "2",
                         "--object", "1", str(tmp_path / "missing.png"))
    assert proc.returncode == 2
    assert "unknown connection" in proc.stderr and "no such file" in proc.stderr
    assert ferry.jobs().jobs == []


def _seconds_between(a: Any, b: Any) -> float:
    if isinstance(a, int | float):
        return float(b) - float(a)
    from datetime import datetime
    return (datetime.fromisoformat(str(b).replace("Z", "+00:00"))
            - datetime.fromisoformat(str(a).replace("Z", "+00:00"))).total_seconds()


def test_avatar_upload_429_is_retried_after_the_servers_delay(ferry_env, ferry, sandbox, tmp_path):
    seed = sandbox.seed()
    sandbox.add_fault(path="/avatar/upload", status=429, times=1, retry_after=2)
    image = png(tmp_path / "retry.png")
    code, job = job_json(ferry_env, "assets-avatar", "-c", "acme", "--object-type", seed["object_type_id"],
                            "--object", seed["object_id"], str(image))
    assert code == 0, job
    upload = job["steps"][0]
    assert upload["attempts"] == 2
    times = sorted(r["time"] for r in sandbox.requests(path_contains="/avatar/upload"))
    assert _seconds_between(times[0], times[1]) >= 2.0
    assert len(uploads_with(sandbox, sha256(image))) >= 1


def test_attachment_to_an_unknown_object_fails_at_credentials_with_the_destinations_message(
        ferry_env, ferry, sandbox, tmp_path):
    doc = tmp_path / "orphan.txt"
    doc.write_text("no object for me\n")
    code, job = job_json(ferry_env, "assets-attachment", "-c", "acme", "--object", "987654", str(doc))
    assert code == 1
    assert job["error"]["step"] == "get_credentials" and job["error"]["status"] == 404
    assert job["error"]["message"]
    assert [s["status"] for s in job["steps"]] == ["failed", "pending", "pending"]
    assert job["steps"][0]["attempts"] == 1  # a 404 is not retried
