"""The Assets workspace id is discovered from the site once and cached under the site's URL. A
cached id the gateway no longer knows (the workspace was recreated, the site moved, a new sandbox
behind the same URL) costs one discovery and one re-run of the step, not the job."""

from __future__ import annotations

from pathlib import Path

import redis

from producers import keys
from producers.client import Ferry
from sandbox.testing import SandboxControl

STALE = "0b9f5a9e-0000-4000-8000-00000000dead"


def submit_attachment(ferry: Ferry, object_id: str, tmp_path: Path) -> str:
    doc = tmp_path / "report.pdf"
    doc.write_bytes(b"%PDF-1.4\n" + b"0" * 2000 + b"\n%%EOF\n")
    job = ferry.submit("assets-attachment", connection="acme", params={"object": object_id}, file=str(doc))
    return job.id


def discoveries(sandbox: SandboxControl) -> int:
    return len(sandbox.requests("/rest/servicedeskapi/assets/workspace"))


def test_a_stale_cached_workspace_is_discovered_again_and_the_step_rerun(
        ferry: Ferry, sandbox: SandboxControl, redis_client: redis.Redis, tmp_path: Path) -> None:
    redis_client.set(keys.workspace_cache(sandbox.url), STALE)
    job = ferry.wait(submit_attachment(ferry, sandbox.seed()["object_id"], tmp_path), timeout=60)

    assert job.status == "succeeded", job.error
    credentials = job.step("get_credentials")
    assert credentials.attempts == 1  # re-run within the attempt: no retry, no backoff
    assert credentials.result and credentials.result["workspace_id"] != STALE
    assert [r["status"] for r in sandbox.requests(STALE)] == [404]
    assert discoveries(sandbox) == 1
    assert redis_client.get(keys.workspace_cache(sandbox.url)) == credentials.result["workspace_id"]


def test_a_404_that_rediscovery_does_not_explain_fails_without_a_rerun(
        ferry: Ferry, sandbox: SandboxControl, tmp_path: Path) -> None:
    first = ferry.wait(submit_attachment(ferry, sandbox.seed()["object_id"], tmp_path), timeout=60)
    assert first.status == "succeeded", first.error  # the workspace id is cached now

    job = ferry.wait(submit_attachment(ferry, "424242", tmp_path), timeout=60)

    assert job.status == "failed" and job.error is not None
    assert (job.error.step, job.error.status) == ("get_credentials", 404)
    assert discoveries(sandbox) == 2  # the first job's, and one check that the cached id still holds
    assert len(sandbox.requests("/object/424242")) == 1  # the same id again: not worth a re-run


def test_the_cache_is_keyed_by_site_not_by_connection_name() -> None:
    assert keys.workspace_cache("https://acme.atlassian.net/") == keys.workspace_cache("https://acme.atlassian.net")
    assert keys.workspace_cache("https://acme.atlassian.net") != keys.workspace_cache("https://other.atlassian.net")
