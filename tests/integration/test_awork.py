"""awork profile images end to end: upload (multipart part `File`), delete, and the image read."""

from __future__ import annotations

import hashlib

from tests.integration.helpers import job_json, png, read_json, sha256, uploads_with


def test_profile_image_upload_read_and_delete(ferry_env, ferry, sandbox, tmp_path):
    project = sandbox.seed()["awork"]["projects"]
    image = png(tmp_path / "project.png", (120, 80))
    code, job = job_json(ferry_env, "awork-image", "-c", "awork", "--entity", "projects", "--id", project,
                         str(image))
    assert code == 0, job
    result = job["result"]
    assert (result["entity"], result["id"]) == ("projects", project)
    assert (result["mime_type"], result["width"], result["height"]) == ("image/png", 120, 80)
    assert uploads_with(sandbox, sha256(image))
    assert sandbox.images()[f"projects/{project}"]["sha256"] == sha256(image)

    saved = tmp_path / "back.png"
    read = read_json(ferry_env, "awork", "image", "-c", "awork", "--entity", "projects", "--id", project,
                     "-o", str(saved))
    assert read["content_type"] == "image/png"
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == sha256(image)

    code, job = job_json(ferry_env, "awork-image-delete", "-c", "awork", "--entity", "projects",
                         "--id", project)
    assert code == 0, job
    assert job["result"]["already_gone"] is False
    assert f"projects/{project}" not in sandbox.images()


def test_unknown_entity_fails_at_upload_with_awork_message(ferry_env, ferry, sandbox, tmp_path):
    code, job = job_json(ferry_env, "awork-image", "-c", "awork", "--entity", "users", "--id", "nobody",
                         str(png(tmp_path / "u.png")))
    assert code == 1
    assert job["error"]["step"] == "upload_profile_image" and job["error"]["status"] == 404
    assert "The user with id nobody was not found." in job["error"]["message"]


def test_deleting_a_missing_image_fails_with_not_found(ferry_env, ferry, sandbox, tmp_path):
    user = sandbox.seed()["awork"]["users"]
    code, job = job_json(ferry_env, "awork-image-delete", "-c", "awork", "--entity", "users", "--id", user)
    assert code == 1
    assert job["error"]["step"] == "delete_profile_image" and job["error"]["status"] == 404
    assert "not-found" in job["error"]["message"]

    missing = ferry_env.cli("awork", "image", "-c", "awork", "--entity", "users", "--id", user,
                            "-o", str(tmp_path / "x"))
    assert missing.returncode == 1 and "not-found" in missing.stderr
