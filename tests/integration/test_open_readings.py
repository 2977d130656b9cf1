"""Ferry is correct under every reading of the real APIs that the evidence allows
(shared/apis/open-readings.md): CLI → Redis → real worker → a sandbox playing that reading."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from tests.integration.helpers import job_json, png, read_json, sha256, uploads_with
from tests.integration.test_jira_avatars import striped_png
from tests.integration.test_marketplace import jar


def document(path: Path, seed: int = 0, size: int = 40_000) -> Path:
    path.write_bytes(hashlib.sha256(str(seed).encode()).digest() * (size // 32))
    return path


def attach(ferry_env: Any, sandbox: Any, file: Path, comment: str = "scan") -> tuple[int, dict[str, Any]]:
    return job_json(ferry_env, "assets-attachment", "-c", "acme", "--object", sandbox.seed()["object_id"],
                    "--comment", comment, str(file))


def media_posts(sandbox: Any) -> list[dict[str, Any]]:
    return [r for r in sandbox.requests(path_contains="/media/file") if r["method"] == "POST"]


def attachments_of(sandbox: Any, file: Path) -> list[dict[str, Any]]:
    return [a for a in sandbox.attachments() if a["filename"] == file.name]


def assert_landed_once(sandbox: Any, file: Path) -> None:
    """Exactly one attachment of ``file`` on the object, holding its exact bytes."""
    linked = attachments_of(sandbox, file)
    assert len(linked) == 1, linked
    assert linked[0]["sha256"] == sha256(file)
    assert sandbox.file_bytes(linked[0]["sha256"]) == file.read_bytes()


# ---- 1. media upload form, under each attachment record shape -----------------------------------
@pytest.mark.parametrize("records_carry_media_id", [True, False], ids=["with-mediaId", "dc-records"])
@pytest.mark.parametrize("media_reading", ["multipart", "binary"])
def test_attachment_lands_whole_under_each_reading(ferry_env, ferry, sandbox, tmp_path, media_reading,
                                                   records_carry_media_id):
    sandbox.configure(media_upload=media_reading, attachment_media_id=records_carry_media_id)
    doc = document(tmp_path / "contract 2026.pdf")
    code, job = attach(ferry_env, sandbox, doc)
    assert code == 0, job
    upload = job["steps"][1]["result"]
    assert upload["upload_form"] == media_reading
    # binary first (Atlassian's own client); under the seed's reading /file/binary is a 404
    assert upload["upload_forms_tried"] == (["binary", "multipart"] if media_reading == "multipart" else ["binary"])
    assert upload["size"] == doc.stat().st_size and upload["size_verified"] is True
    assert job["result"]["attachment_id"] is not None
    assert_landed_once(sandbox, doc)


def test_under_binary_media_without_read_back_every_job_lands_its_bytes_with_one_upload(ferry_env, ferry,
                                                                                         sandbox, tmp_path):
    sandbox.configure(media_upload="binary", media_read_back=False)
    for n in range(2):
        doc = document(tmp_path / f"doc-{n}.bin", seed=n, size=30_000 + n)
        posts, credentials = len(media_posts(sandbox)), len(sandbox.requests(path_contains="/credentials"))
        code, job = attach(ferry_env, sandbox, doc)
        assert code == 0, job
        assert_landed_once(sandbox, doc)
        assert [r["path"] for r in media_posts(sandbox)[posts:]] == ["/media/file/binary"]
        assert len(sandbox.requests(path_contains="/credentials")) == credentials + 1
        assert job["steps"][1]["result"]["credentials_refreshed"] is False


def test_under_the_seeds_multipart_reading_the_form_that_worked_is_remembered(ferry_env, ferry, sandbox,
                                                                             tmp_path):
    first, second = document(tmp_path / "first.bin", seed=1), document(tmp_path / "second.bin", seed=2)
    assert attach(ferry_env, sandbox, first)[0] == 0
    posts = len(media_posts(sandbox))
    code, job = attach(ferry_env, sandbox, second)
    assert code == 0, job
    assert job["steps"][1]["result"]["upload_forms_tried"] == ["multipart"]
    assert [r["path"] for r in media_posts(sandbox)[posts:]] == ["/media/file"]
    assert_landed_once(sandbox, first)
    assert_landed_once(sandbox, second)


@pytest.mark.parametrize("records_carry_media_id", [True, False], ids=["with-mediaId", "dc-records"])
def test_a_size_nobody_will_tell_is_verified_from_the_attachment_record(ferry_env, ferry, sandbox, tmp_path,
                                                                       records_carry_media_id):
    sandbox.configure(media_upload="multipart-sizeless", media_read_back=False,
                      attachment_media_id=records_carry_media_id)
    doc = document(tmp_path / "unsized.pdf")
    code, job = attach(ferry_env, sandbox, doc)
    assert code == 0, job
    upload = job["steps"][1]["result"]
    assert upload["size_verified"] is False and upload["size"] == doc.stat().st_size
    assert upload["upload_forms_tried"] == ["binary", "multipart"]  # binary is a 404 here; no second upload
    assert upload["credentials_refreshed"] is False  # a read-back 403 is no reason for new credentials
    assert len(sandbox.requests(path_contains="/credentials")) == 1
    assert_landed_once(sandbox, doc)


@pytest.mark.parametrize("link_checks_size", [True, False], ids=["link-refuses", "link-accepts"])
@pytest.mark.parametrize("records_carry_media_id", [True, False], ids=["with-mediaId", "dc-records"])
def test_a_short_file_seen_only_at_the_link_fails_for_good_and_the_form_is_probed_again(
        ferry_env, ferry, sandbox, tmp_path, link_checks_size, records_carry_media_id):
    assert attach(ferry_env, sandbox, document(tmp_path / "before.bin", seed=1))[0] == 0  # remembers multipart
    sandbox.configure(media_upload="binary", media_read_back=False, link_checks_size=link_checks_size,
                      attachment_media_id=records_carry_media_id)
    doc = document(tmp_path / "moved.bin", seed=2)
    posts = len(media_posts(sandbox))
    code, job = attach(ferry_env, sandbox, doc)
    assert code == 1, job
    assert [r["path"] for r in media_posts(sandbox)[posts:]] == ["/media/file"]  # no second upload
    assert job["error"]["step"] == "link_attachment" and job["steps"][2]["attempts"] == 1
    if link_checks_size:
        assert job["error"]["status"] == 400 and attachments_of(sandbox, doc) == []
    else:
        linked = attachments_of(sandbox, doc)
        assert len(linked) == 1
        assert (f"media service stored 0 of {doc.stat().st_size} bytes" in job["error"]["message"]
                and f"remove attachment {linked[0]['id']} on object" in job["error"]["message"])
    later = document(tmp_path / "later.bin", seed=3)
    code, job = attach(ferry_env, sandbox, later)
    assert code == 0, job
    assert job["steps"][1]["result"]["upload_forms_tried"] == ["binary"]
    assert_landed_once(sandbox, later)


def test_a_remembered_form_that_is_gone_is_dropped_for_the_other(ferry_env, ferry, sandbox, tmp_path):
    sandbox.configure(media_upload="binary")
    assert attach(ferry_env, sandbox, document(tmp_path / "first.bin", seed=1))[0] == 0
    sandbox.configure(media_upload="multipart")  # the service moves back: /file/binary answers 404
    later = document(tmp_path / "later.bin", seed=2)
    code, job = attach(ferry_env, sandbox, later)
    assert code == 0, job
    assert job["steps"][1]["result"]["upload_forms_tried"] == ["binary", "multipart"]
    assert_landed_once(sandbox, later)
    code, job = attach(ferry_env, sandbox, document(tmp_path / "third.bin", seed=3))
    assert job["steps"][1]["result"]["upload_forms_tried"] == ["multipart"]


def test_when_no_form_stores_the_whole_file_the_job_fails_saying_how_much_landed(ferry_env, ferry, sandbox,
                                                                                  tmp_path):
    sandbox.configure(media_upload="binary")
    sandbox.add_fault(path="^/media/file/binary", status=404)  # and the raw form is gone too
    doc = document(tmp_path / "lost.bin")
    code, job = attach(ferry_env, sandbox, doc)
    assert code == 1
    assert job["error"]["step"] == "media_upload"
    assert f"media service stored 0 of {doc.stat().st_size} bytes" in job["error"]["message"]
    assert job["steps"][1]["attempts"] == 1  # permanent: not retried
    assert sandbox.attachments() == []  # an empty file is never linked


# ---- 2. duplicate links on retry ----------------------------------------------------------------
@pytest.mark.parametrize("lost", [{"status": 502}, {"cut": True}], ids=["502", "cut"])
def test_a_lost_link_reply_without_media_ids_leaves_exactly_one_attachment(ferry_env, ferry, sandbox, tmp_path,
                                                                           lost):
    sandbox.configure(attachment_media_id=False)
    sandbox.add_fault(path="/attachments/object/[^/]+$", method="POST", lost_reply=True, times=1, **lost)
    doc = document(tmp_path / "signed.pdf")
    code, job = attach(ferry_env, sandbox, doc)
    assert code == 0, job
    link = job["steps"][2]
    assert link["attempts"] == 2 and link["result"]["already_linked"] is True
    assert_landed_once(sandbox, doc)
    assert link["result"]["attachment_id"] == attachments_of(sandbox, doc)[0]["id"]


def test_an_identical_attachment_linked_before_the_job_is_not_mistaken_for_ours(ferry_env, ferry, sandbox,
                                                                                 tmp_path):
    sandbox.configure(attachment_media_id=False)
    doc = document(tmp_path / "weekly.pdf")
    assert attach(ferry_env, sandbox, doc)[0] == 0
    sandbox.add_fault(path="/attachments/object/[^/]+$", method="POST", status=503, times=1)
    code, job = attach(ferry_env, sandbox, doc, comment="second week")
    assert code == 0, job
    assert job["result"]["already_linked"] is False  # the first job's record has another comment
    assert len(attachments_of(sandbox, doc)) == 2


@pytest.mark.parametrize("records_carry_media_id", [True, False], ids=["with-mediaId", "dc-records"])
def test_an_empty_link_answer_is_a_success_found_by_listing(ferry_env, ferry, sandbox, tmp_path,
                                                            records_carry_media_id):
    sandbox.configure(link_answer_body=False, attachment_media_id=records_carry_media_id)
    doc = document(tmp_path / "quiet.pdf")
    code, job = attach(ferry_env, sandbox, doc)
    assert code == 0, job
    assert job["steps"][2]["attempts"] == 1
    assert_landed_once(sandbox, doc)
    assert job["result"]["attachment_id"] == attachments_of(sandbox, doc)[0]["id"]


# ---- 3. creates that cannot be repeated ---------------------------------------------------------
def test_a_lost_reply_on_object_create_fails_outcome_unknown_with_one_object(ferry_env, ferry, sandbox, tmp_path):
    seed = sandbox.seed()
    sandbox.add_fault(path="/object/create$", lost_reply=True, status=502)
    image = striped_png(tmp_path / "laptop.png")
    code, job = job_json(ferry_env, "assets-avatar", "-c", "acme", "--object-type", seed["object_type_id"],
                         "--attributes", '{"1": "Laptop 42"}', str(image))
    assert code == 1, job
    assert job["error"]["step"] == "set_object_avatar" and job["error"]["status"] == 502
    assert "outcome unknown" in job["error"]["message"] and "check workspace" in job["error"]["message"]
    assert job["steps"][1]["attempts"] == 1
    assert len([o for o in sandbox.objects() if o["id"] != seed["object_id"]]) == 1


@pytest.mark.parametrize("lost", [{"status": 502}, {"status": 504}, {"cut": True}], ids=["502", "504", "cut"])
def test_a_lost_reply_on_an_artifact_upload_fails_outcome_unknown_with_one_asset(ferry_env, ferry, sandbox,
                                                                                 tmp_path, lost):
    sandbox.add_fault(path="/rest/2/assets/artifact$", lost_reply=True, **lost)
    code, job = job_json(ferry_env, "marketplace-artifact", "-c", "marketplace", str(jar(tmp_path / "app.jar")))
    assert code == 1, job
    assert "outcome unknown" in job["error"]["message"]
    assert job["steps"][0]["attempts"] == 1
    assert len(sandbox.assets()) == 1


@pytest.mark.parametrize("status", [429, 503])
def test_a_create_answered_not_processed_is_retried(ferry_env, ferry, sandbox, tmp_path, status):
    sandbox.add_fault(path="/rest/2/assets/artifact$", status=status, times=1, retry_after=1)
    code, job = job_json(ferry_env, "marketplace-artifact", "-c", "marketplace", str(jar(tmp_path / "app.jar")))
    assert code == 0, job
    assert job["steps"][0]["attempts"] == 2
    assert len(sandbox.assets()) == 1


# ---- 3b. Marketplace upload forms, image keys ---------------------------------------------------
def artifact_posts(sandbox: Any) -> list[dict[str, Any]]:
    return [r for r in sandbox.requests(path_contains="/rest/2/assets/artifact") if r["method"] == "POST"]


def test_raw_artifacts_land_once_and_the_form_is_remembered(ferry_env, ferry, sandbox, tmp_path):
    sandbox.configure(artifact_form="raw")
    first, second = jar(tmp_path / "app-1.0.jar"), jar(tmp_path / "app-1.1.jar")
    code, job = job_json(ferry_env, "marketplace-artifact", "-c", "marketplace", str(first))
    assert code == 0, job
    assert job["steps"][0]["result"]["upload_forms_tried"] == ["multipart", "binary"]  # a 415 creates nothing
    assert [r["status"] for r in artifact_posts(sandbox)] == [415, 200]
    assert len(sandbox.assets()) == 1 and len(uploads_with(sandbox, sha256(first))) == 1
    assert sandbox.assets()[0]["size"] == first.stat().st_size
    assert sandbox.file_bytes(sha256(first)) == first.read_bytes()
    second.write_bytes(second.read_bytes() + b"\0")  # another artifact
    code, job = job_json(ferry_env, "marketplace-artifact", "-c", "marketplace", str(second))
    assert code == 0, job
    assert job["steps"][0]["result"]["upload_forms_tried"] == ["binary"]
    assert len(artifact_posts(sandbox)) == 3


def test_an_image_refused_with_415_goes_through_the_other_forms_once_each(ferry_env, ferry, sandbox, tmp_path):
    sandbox.add_fault(path="/rest/2/assets/image/", status=415, times=1)  # raw refused: multipart, then binary
    image = png(tmp_path / "banner.png")
    code, job = job_json(ferry_env, "marketplace-image", "-c", "marketplace", "--image-type", "banner", str(image))
    assert code == 0, job
    assert job["steps"][0]["result"]["upload_forms_tried"] == ["raw", "multipart", "binary"]
    assert len(sandbox.assets()) == 1 and sandbox.file_bytes(sha256(image)) == image.read_bytes()


def test_icon_is_refused_at_submit_listing_the_v2_keys(ferry_env, sandbox, tmp_path):
    refused = ferry_env.cli("submit", "marketplace-image", "-c", "marketplace", "--image-type", "icon",
                            str(png(tmp_path / "icon.png")))
    assert refused.returncode == 2
    assert "title-logo" in refused.stderr and "screenshot-thumbnail" in refused.stderr
    assert sandbox.assets() == []


# ---- 3c. awork behind Kong ----------------------------------------------------------------------
def test_a_kong_429_from_awork_is_waited_out_as_it_asks_and_its_message_shown(ferry_env, ferry, sandbox,
                                                                              tmp_path):
    sandbox.configure(awork_429="kong")
    sandbox.add_fault(path="/files/images/users/", method="POST", status=429, times=1, retry_after=2)
    user = sandbox.seed()["awork"]["users"]
    code, job = job_json(ferry_env, "awork-image", "-c", "awork", "--entity", "users", "--id", user,
                         str(png(tmp_path / "me.png")))
    assert code == 0, job
    refused = job["steps"][0]["history"][0]
    assert refused["http_status"] == 429 and refused["message"] == "API rate limit exceeded"
    assert refused["retry_delay"] == 2


# ---- 4. project avatars by key ------------------------------------------------------------------
def test_project_avatar_by_key_against_a_service_that_takes_only_ids(ferry_env, ferry, sandbox, tmp_path):
    sandbox.configure(project_owner_keys=False)
    seed = sandbox.seed()
    key, project_id = seed["project_key"], seed["project_id"]
    image = striped_png(tmp_path / "logo.png")
    code, job = job_json(ferry_env, "jira-avatar", "-c", "acme", "--type", "project", "--owner", key,
                         "--set-current", str(image))
    assert code == 0, job
    avatar_id = job["result"]["avatar_id"]
    assert job["steps"][0]["result"]["owner_id"] == project_id
    project = next(p for p in sandbox.avatars()["projects"] if p["id"] == project_id)
    assert project["avatarId"] == avatar_id
    listed = read_json(ferry_env, "jira", "avatars", "-c", "acme", "--type", "project", "--owner", key)
    assert avatar_id in [a["id"] for a in listed["custom"]]
    code, job = job_json(ferry_env, "jira-avatar-delete", "-c", "acme", "--type", "project", "--owner", key,
                         "--avatar", avatar_id)
    assert code == 0, job
    assert avatar_id not in [a["id"] for a in sandbox.avatars()["jira"]]
