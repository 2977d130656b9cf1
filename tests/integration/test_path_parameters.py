"""A producer's parameters never steer the worker's credentials (real Redis, the sandbox over
HTTP, a real worker): a parameter that is not one path segment is refused at every front door,
and a record that holds one anyway (written past validation) fails at the worker having sent
nothing at all."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests

from producers import keys
from producers.client import Ferry
from tests.fixtures.api import LiveApi
from tests.integration.test_replay import wait_until

TOKEN = "path-parameters-token"
TRAVERSAL = "../../../../../../project/10000"


@pytest.fixture
def live_api(ferry: Ferry) -> Iterator[LiveApi]:
    with LiveApi(ferry, tokens=[TOKEN]) as server:
        yield server


def test_a_traversal_in_a_parameter_is_refused_by_the_cli_with_exit_2(ferry_env, sandbox):
    done = ferry_env.cli("submit", "jira-avatar-delete", "-c", "acme", "--type", "project",
                         "--owner", "10000", "--avatar", TRAVERSAL)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "avatar" in done.stderr and "numeric id" in done.stderr
    assert not sandbox.requests(path_contains="/project/10000")


@pytest.mark.parametrize(("kind", "params", "field"), [
    ("jira-avatar-delete", {"type": "project", "owner": "10000", "avatar": TRAVERSAL}, "avatar"),
    ("jira-avatar-delete", {"type": "project", "owner": "../myself", "avatar": "1"}, "owner"),
    ("awork-image-delete", {"entity": "users", "id": "../projects/p1"}, "id"),
    ("awork-image-delete", {"entity": "users", "id": "u1?admin=1"}, "id"),
    ("marketplace-asset-delete", {"asset": "images/%2e%2e"}, "asset"),
])
def test_the_http_api_answers_422_naming_the_field_and_stores_nothing(ferry, live_api, kind, params, field):
    connection = {"jira": "acme", "awork": "awork", "marketplace": "marketplace"}[kind.split("-")[0]]
    before = ferry.redis.zcard(keys.index_all())
    answer = requests.post(f"{live_api.url}/jobs", json={"kind": kind, "connection": connection, "params": params},
                           headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert answer.status_code == 422, answer.text
    assert [p["field"] for p in answer.json()["problems"]] == [f"params.{field}"]
    assert ferry.redis.zcard(keys.index_all()) == before


def force_params(ferry: Ferry, job_id: str, params: dict[str, str]) -> None:
    """Rewrite a stored job's parameters past every validation, as a hand-edited record or an
    older Ferry's record could hold them."""
    meta = json.loads(ferry.redis.hget(keys.job(job_id), "meta"))
    meta["params"] = params
    ferry.redis.hset(keys.job(job_id), "meta", json.dumps(meta))


def test_a_record_forced_past_validation_sends_nothing_and_fails_naming_the_parameter(ferry, sandbox):
    ferry.pause("acme", by="test")
    job = ferry.submit("jira-avatar-delete", connection="acme",
                       params={"type": "project", "owner": "10000", "avatar": "10500"})
    wait_until(lambda: int(ferry.redis.scard(keys.parked("acme"))) == 1, 30, "the step to be parked")
    force_params(ferry, job.id, {"type": "project", "owner": "10000", "avatar": TRAVERSAL})
    sent_before = len(sandbox.requests())
    ferry.resume("acme", by="test")

    record = ferry.wait(job.id, timeout=60)
    assert record.status == "failed" and record.error is not None
    assert record.error.step == "delete_avatar" and not record.error.retryable
    assert "nothing was sent" in record.error.message and "avatar" in record.error.message
    assert len(sandbox.requests()) == sent_before, "the worker sent a request for a record it refuses"
