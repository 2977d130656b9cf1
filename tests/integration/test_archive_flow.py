"""The archive end to end (issue 27): a real worker whose archiver moves a failed job out of Redis
into PostgreSQL; ``ferry status``, ``ferry jobs``, ``GET /jobs``, the dashboard's list and job page
still find it; ``ferry replay`` brings it back and runs it from its failed step."""

from __future__ import annotations

import time
from pathlib import Path

import requests

from producers import keys
from producers.records import JobStatus
from tests.fixtures.api import LiveApi
from tests.fixtures.worker import own_worker

API_TOKEN = "archive-test-token"
LINK_FAULT = {"path": "/attachments/object/[^/]+$", "method": "POST", "status": 400}


def test_an_archived_failed_job_is_found_everywhere_and_replays_from_its_failed_step(
        tmp_path: Path, sandbox, postgres_url: str) -> None:
    from producers.archive.store import ArchiveStore

    ArchiveStore(postgres_url).delete([])  # the schema is the worker's to make
    settings = f'[archive]\nurl = "{postgres_url}"\nhot_seconds = 1\ninterval_seconds = 0.3\n'
    seed = sandbox.seed()
    sandbox.configure(media_upload="binary")  # Ferry's first form: one media request per upload
    sandbox.add_fault(**LINK_FAULT, times=1)
    doc = tmp_path / "march-scan-0042.pdf"
    doc.write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\n%%EOF\n")
    with own_worker(tmp_path / "home", sandbox, settings=settings) as (env, _worker):
        ferry = env.ferry()
        assert ferry.store.archive is not None
        job = ferry.submit("assets-attachment", connection="acme", file=str(doc),
                           params={"object": seed["object_id"]})
        failed = ferry.wait(job.id, timeout=60)
        assert failed.status == JobStatus.FAILED and failed.error and failed.error.step == "link_attachment"
        deadline = time.monotonic() + 30
        while ferry.redis.exists(keys.job(job.id)):  # the archiver's round moves it
            assert time.monotonic() < deadline, "not archived"
            time.sleep(0.2)

        code, shown = env.cli_json("status", job.id)
        assert code == 1 and shown == failed.model_dump(mode="json")  # failed: exit 1, the whole record
        code, listed = env.cli_json("jobs", "--status", "failed", "--file", "SCAN-00",
                                    "--error", failed.error.message[:6])
        assert code == 0 and [j["id"] for j in listed["jobs"]] == [job.id]
        with LiveApi(ferry, tokens=[API_TOKEN]) as api:
            auth = {"Authorization": f"Bearer {API_TOKEN}"}
            got = requests.get(f"{api.url}/jobs/{job.id}", headers=auth, timeout=10)
            assert got.status_code == 200 and got.json()["status"] == "failed"
            page = requests.get(f"{api.url}/jobs", params={"http_status": 400, "file_name": "march"},
                                headers=auth, timeout=10)
            assert [j["id"] for j in page.json()["jobs"]] == [job.id]
            view = requests.get(f"{api.url}/ui/job/{job.id}", headers=auth, timeout=10)
            assert view.status_code == 200 and "link_attachment" in view.text and "HTTP 400" in view.text
            listing = requests.get(f"{api.url}/", params={"q": "march-scan"}, headers=auth, timeout=10)
            assert job.id in listing.text

        code, replayed = env.cli_json("replay", job.id, "--wait", "--timeout", "60")
        assert code == 0, replayed
        assert replayed["status"] == "succeeded"
        assert [s["status"] for s in replayed["steps"]] == ["reused", "reused", "succeeded"]
        assert replayed["runs"][1]["from_step"] == "link_attachment"
        assert len(sandbox.requests(path_contains="/media/file")) == 1  # not uploaded again
        ferry.close()
