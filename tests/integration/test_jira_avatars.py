"""Jira avatars end to end: CLI → Redis → real worker → sandbox, and the synchronous reads."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from tests.integration.helpers import job_json, read_json, sha256, uploads_with


def striped_png(path: Path, size: tuple[int, int] = (64, 48)) -> Path:
    """Teal, with an 8 px red band on the left: the centred square holds no red, the top-left
    square (the API's default) does."""
    image = Image.new("RGB", size, (0, 128, 128))
    image.paste((255, 0, 0), (0, 0, 8, size[1]))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    path.write_bytes(buf.getvalue())
    return path


def jira_state(sandbox: Any, table: str, entity_id: str) -> dict[str, Any]:
    return next(e for e in sandbox.avatars()[table] if e["id"] == entity_id)


def custom_avatars(sandbox: Any, owner: str) -> list[dict[str, Any]]:
    return [a for a in sandbox.avatars()["jira"] if not a["system"] and a["owner"] == owner]


@pytest.mark.parametrize(("avatar_type", "seed_key", "table"), [
    ("project", "project_id", "projects"),
    ("issuetype", "issuetype_id", "issuetypes"),
    ("priority", "priority_id", "priorities"),
])
def test_avatar_lands_centred_and_becomes_current(ferry_env, ferry, sandbox, tmp_path, avatar_type,
                                                  seed_key, table):
    owner = sandbox.seed()[seed_key]
    image = striped_png(tmp_path / "logo.png")
    code, job = job_json(ferry_env, "jira-avatar", "-c", "acme", "--type", avatar_type,
                         "--owner", owner, "--set-current", str(image))
    assert code == 0, job
    assert [s["name"] for s in job["steps"]] == ["load_avatar", "set_current_avatar"]
    result = job["result"]
    assert result["crop"] == {"x": 8, "y": 0, "size": 48}
    assert result["set_current"] is True and result["adopted"] is False
    received = uploads_with(sandbox, sha256(image))
    assert len(received) == 1 and received[0]["content_type"] == "image/png"
    assert jira_state(sandbox, table, owner)["avatarId"] == result["avatar_id"]


def test_without_set_current_the_second_step_changes_nothing(ferry_env, ferry, sandbox, tmp_path):
    seed = sandbox.seed()
    before = jira_state(sandbox, "projects", seed["project_id"])["avatarId"]
    image = striped_png(tmp_path / "a.png")
    code, job = job_json(ferry_env, "jira-avatar", "-c", "acme", "--type", "project",
                         "--owner", seed["project_key"], "--x", "0", "--y", "0", "--size", "16",
                         str(image))
    assert code == 0, job
    assert job["result"]["set_current"] is False
    assert job["result"]["crop"] == {"x": 0, "y": 0, "size": 16}
    assert jira_state(sandbox, "projects", seed["project_id"])["avatarId"] == before
    assert uploads_with(sandbox, sha256(image))


def test_unknown_owner_fails_at_load_avatar_with_jiras_message(ferry_env, ferry, sandbox, tmp_path):
    image = striped_png(tmp_path / "a.png")
    code, job = job_json(ferry_env, "jira-avatar", "-c", "acme", "--type", "project",
                         "--owner", "NOPE", str(image))
    assert code == 1
    assert job["error"]["step"] == "load_avatar"
    assert job["error"]["status"] == 404
    assert "No project with id or key 'NOPE' was found." in job["error"]["message"]
    assert not sandbox.uploads()


def test_a_retry_adopts_the_avatar_an_earlier_attempt_left(ferry_env, ferry, sandbox, tmp_path):
    """Attempt 1 gets a 503; before attempt 2 an avatar appears on the owner (as if attempt 1 had
    landed and only its answer was lost): attempt 2 adopts it instead of loading a second one."""
    seed = sandbox.seed()
    owner = seed["issuetype_id"]
    sandbox.add_fault(path="/universal_avatar/type/issuetype/owner/", method="POST", status=503,
                      times=1, retry_after=2)
    image = striped_png(tmp_path / "a.png")
    job = ferry.submit("jira-avatar", connection="acme", file=str(image),
                       params={"type": "issuetype", "owner": owner})
    _wait_for(lambda: ferry.status(job.id).step("load_avatar").status == "retrying")
    landed = requests.post(
        f"{sandbox.url}/rest/api/3/universal_avatar/type/issuetype/owner/{owner}",
        params={"size": 0}, data=image.read_bytes(), auth=sandbox.basic, timeout=10,
        headers={"Content-Type": "image/png", "X-Atlassian-Token": "no-check"}).json()
    record = ferry.wait(job.id, timeout=30)
    assert record.status == "succeeded", record.error
    assert record.step("load_avatar").attempts == 2
    assert record.result is not None and record.result["adopted"] is True
    assert record.result["avatar_id"] == landed["id"]
    assert [a["id"] for a in custom_avatars(sandbox, owner)] == [landed["id"]]


def test_delete_avatar_and_its_permanent_errors(ferry_env, ferry, sandbox, tmp_path):
    seed = sandbox.seed()
    owner = seed["project_id"]
    _, loaded = job_json(ferry_env, "jira-avatar", "-c", "acme", "--type", "project", "--owner", owner,
                         str(striped_png(tmp_path / "a.png")))
    avatar_id = loaded["result"]["avatar_id"]
    code, job = job_json(ferry_env, "jira-avatar-delete", "-c", "acme", "--type", "project",
                         "--owner", owner, "--avatar", avatar_id)
    assert code == 0, job
    assert job["result"]["deleted_avatar_id"] == avatar_id and job["result"]["already_gone"] is False
    assert custom_avatars(sandbox, owner) == []

    system_id = next(a["id"] for a in sandbox.avatars()["jira"] if a["system"] and a["type"] == "project")
    code, job = job_json(ferry_env, "jira-avatar-delete", "-c", "acme", "--type", "project",
                         "--owner", owner, "--avatar", system_id)
    assert code == 1
    assert job["error"]["step"] == "delete_avatar" and job["error"]["status"] == 403
    assert "System avatars cannot be deleted." in job["error"]["message"]


def test_reads_return_what_the_sandbox_holds(ferry_env, ferry, sandbox, tmp_path):
    seed = sandbox.seed()
    owner = seed["project_id"]
    _, job = job_json(ferry_env, "jira-avatar", "-c", "acme", "--type", "project", "--owner", owner,
                      "--set-current", str(striped_png(tmp_path / "a.png")))
    avatar_id = job["result"]["avatar_id"]

    listed = read_json(ferry_env, "jira", "avatars", "--type", "project", "--owner", owner)
    assert [a["id"] for a in listed["custom"]] == [avatar_id]
    assert listed["custom"][0]["selected"] is True
    system = {a["id"] for a in sandbox.avatars()["jira"] if a["system"] and a["type"] == "project"}
    assert {a["id"] for a in listed["system"]} == system
    users = read_json(ferry_env, "jira", "avatars", "--type", "user")
    assert users["custom"] == [] and len(users["system"]) == 3

    by_id = tmp_path / "by-id.png"
    saved = read_json(ferry_env, "jira", "avatar-image", "--type", "project", "--avatar", avatar_id,
                      "--size", "large", "-o", str(by_id))
    assert saved["bytes"] == by_id.stat().st_size and saved["content_type"] == "image/png"
    with Image.open(by_id) as rendition:
        assert rendition.size == (48, 48)
        assert rendition.convert("RGB").getpixel((0, 0)) == (0, 128, 128)  # centred: no red band
    by_owner = tmp_path / "by-owner.png"
    read_json(ferry_env, "jira", "avatar-image", "--type", "project", "--owner", owner,
              "--size", "large", "-o", str(by_owner))
    assert by_owner.read_bytes() == by_id.read_bytes()
    default = tmp_path / "default.svg"
    saved = read_json(ferry_env, "jira", "avatar-image", "--type", "priority", "--format", "svg",
                      "-o", str(default))
    assert saved["content_type"].startswith("image/svg+xml") and default.read_bytes().lstrip().startswith(b"<")

    missing = ferry_env.cli("jira", "avatar-image", "--type", "project", "--avatar", "999",
                            "-o", str(tmp_path / "none.png"))
    assert missing.returncode == 1 and "Avatar 999 not found." in missing.stderr
    assert not (tmp_path / "none.png").exists()

    # A wrong token names the connection and the variable it came from, not just "HTTP 401".
    wrong = subprocess.run([sys.executable, "-m", "producers", "jira", "avatars", "--type", "user"],
                           env={**ferry_env.env, "FERRY_TEST_ATLASSIAN_TOKEN": "not-the-token"},
                           capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 1 and "HTTP 401" in wrong.stderr, wrong.stderr
    assert "connection 'acme': check the token in $FERRY_TEST_ATLASSIAN_TOKEN" in wrong.stderr


def _wait_for(condition: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
