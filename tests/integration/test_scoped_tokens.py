"""Scoped API tokens, against the real app over the real embedded Redis: every route of the app
answers each scope as ``producers.web.scopes`` declares (the matrix), a refusal names the token's
label and the scope it lacks, and a token limited to connection ``acme`` never sees an awork job,
in the list, a job's status, the counts, the dashboard or the event stream.

Each test module's app has a Redis database of its own (no worker consumes it: jobs stay queued).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from producers.client import Ferry
from producers.config import load_config
from producers.embedded import RedisLocation
from producers.web.app import create_app
from producers.web.scopes import GRANTABLE, Scope, declared
from tests.fixtures.api import LiveApi
from tests.fixtures.worker import write_config

MATRIX_DB, VISIBILITY_DB = 10, 11  # other tests use 0, 3-6 and 9
ONE_SCOPE = {scope.value: f"only-{scope.value}-secret" for scope in GRANTABLE}
ACME_ONLY, EVERYTHING, OPS, TENANT_T1 = "acme-only-secret", "root-secret", "ops-secret", "t1-secret"
AWORK_JOB = {"kind": "awork-image-delete", "connection": "awork", "params": {"entity": "users", "id": "u-1"}}
ACME_JOB = {"kind": "jira-avatar-delete", "connection": "acme",
            "params": {"type": "project", "owner": "10000", "avatar": "10100"}}


def token_tables() -> str:
    tables = [f'[api.tokens.only-{scope}]\ntoken_env = "FERRY_TEST_ONLY_{scope.upper()}"\nscopes = ["{scope}"]\n'
              for scope in ONE_SCOPE]
    everything = '["read", "submit", "operate", "admin"]'
    return "\n".join([*tables,
                      f'[api.tokens.acme-only]\ntoken_env = "FERRY_TEST_ACME_ONLY"\nscopes = {everything}\n'
                      'connections = ["acme"]\n',
                      f'[api.tokens.root]\ntoken_env = "FERRY_TEST_ROOT"\nscopes = {everything}\n',
                      '[api.tokens.ops]\ntoken_env = "FERRY_TEST_OPS"\nscopes = ["read", "operate"]\n',
                      '[api.tokens.t1-only]\ntoken_env = "FERRY_TEST_T1"\nscopes = ["read"]\ntenants = ["t1"]\n'])


@pytest.fixture(scope="module")
def scoped_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    config = write_config(tmp_path_factory.mktemp("scoped") / "ferry.toml", "http://127.0.0.1:9",
                          "ferry@example.com")
    with config.open("a") as fh:
        fh.write("\n" + token_tables())
    with pytest.MonkeyPatch.context() as mp:
        for scope, secret in ONE_SCOPE.items():
            mp.setenv(f"FERRY_TEST_ONLY_{scope.upper()}", secret)
        mp.setenv("FERRY_TEST_ACME_ONLY", ACME_ONLY)
        mp.setenv("FERRY_TEST_ROOT", EVERYTHING)
        mp.setenv("FERRY_TEST_OPS", f"{OPS}-old,{OPS}")  # two tokens of one label: rotation
        mp.setenv("FERRY_TEST_T1", TENANT_T1)
        mp.delenv("FERRY_API_TOKENS", raising=False)
        yield config


def ferry_on(config: Path, redis_location: RedisLocation, db: int) -> Ferry:
    ferry = Ferry(RedisLocation.from_socket(Path(urlsplit(redis_location.url).path), db).url,
                  config=load_config(config))
    ferry.redis.flushdb()
    return ferry


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


# ---- the matrix: every route x every scope -------------------------------------------------------
def concrete(path: str) -> str:
    if path.startswith("/static/"):
        return "/static/ferry.css"
    return path.replace("{job_id}", "no-such-job").replace("{name}", "acme")


def routes(app: FastAPI) -> list[tuple[str, str]]:
    return sorted((method, str(route.path)) for route in iter_route_contexts(app.routes)
                  for method in route.methods or ())


def call(client: TestClient, method: str, path: str, headers: dict[str, str]) -> Any:
    # last_event_id=x: /events, allowed, answers 422 at once instead of streaming for ever.
    return client.request(method, concrete(path), headers=headers, params={"last_event_id": "x"},
                          follow_redirects=False, **({} if method in ("GET", "DELETE") else {"json": {}}))


def test_every_route_answers_each_scope_as_it_declares(scoped_env, redis_location):
    ferry = ferry_on(scoped_env, redis_location, MATRIX_DB)
    app = create_app(ferry)
    client = TestClient(app)
    for method, path in routes(app):
        scope = declared(method, path)
        assert scope is not None, f"{method} {path} declares no scope (see tests/unit/test_route_scopes.py)"
        anonymous = call(client, method, path, {}).status_code
        answers = {name: call(client, method, path, bearer(secret)) for name, secret in ONE_SCOPE.items()}
        where = f"{method} {path} ({scope.value})"
        if scope in (Scope.PUBLIC, Scope.METRICS):
            assert {r.status_code for r in answers.values()} == {anonymous}, where
            continue
        assert anonymous in (401, 303), where  # 303: a dashboard page sends the browser to /login
        for name, answer in answers.items():
            if name == scope.value:
                assert answer.status_code not in (401, 403), (where, answer.text)
            else:
                assert answer.status_code == 403, (where, name)
                detail = answer.json()["detail"]
                assert f"'only-{name}'" in detail and f"'{scope.value}' scope" in detail, detail
    ferry.redis.flushdb()
    ferry.close()


# ---- a token limited to acme -------------------------------------------------------------------
@pytest.fixture(scope="module")
def visibility(scoped_env: Path, redis_location: RedisLocation) -> Iterator[tuple[LiveApi, dict[str, str]]]:
    """A live API whose store holds awork jobs and acme jobs, submitted by the unlimited token."""
    ferry = ferry_on(scoped_env, redis_location, VISIBILITY_DB)
    with LiveApi(ferry) as api:
        ids: dict[str, str] = {}
        for name, body in (("awork", AWORK_JOB), ("acme", ACME_JOB), ("awork-2", {**AWORK_JOB, "params": {
                "entity": "users", "id": "u-2"}}), ("acme-last", {**ACME_JOB, "params": {**ACME_JOB["params"],
                                                                                         "avatar": "10101"}})):
            answer = requests.post(f"{api.url}/jobs", json=body, headers=bearer(EVERYTHING), timeout=10)
            assert answer.status_code == 202, answer.text
            ids[name] = answer.json()["id"]
        yield api, ids
    ferry.redis.flushdb()
    ferry.close()


def get(api: LiveApi, path: str, secret: str = ACME_ONLY, **params: Any) -> requests.Response:
    return requests.get(f"{api.url}{path}", headers=bearer(secret), params=params, timeout=10)


def test_a_token_limited_to_acme_lists_only_acme_jobs(visibility):
    api, ids = visibility
    listed = [j["id"] for j in get(api, "/jobs").json()["jobs"]]
    assert listed == [ids["acme-last"], ids["acme"]]
    assert get(api, "/jobs", connection="awork").json() == {"jobs": [], "next_cursor": None}
    assert [j["id"] for j in get(api, "/ui/jobs").json()["jobs"]] == listed
    assert len(get(api, "/jobs", EVERYTHING).json()["jobs"]) == 4


def test_an_awork_job_does_not_exist_for_it(visibility):
    api, ids = visibility
    assert get(api, f"/jobs/{ids['acme']}").status_code == 200
    for path in (f"/jobs/{ids['awork']}", f"/ui/job/{ids['awork']}", f"/ui/fragments/job/{ids['awork']}"):
        assert get(api, path).status_code == 404, path
    for method, path in (("POST", f"/jobs/{ids['awork']}/cancel"), ("POST", f"/jobs/{ids['awork']}/replay"),
                         ("POST", f"/jobs/{ids['awork']}/notify"), ("DELETE", f"/jobs/{ids['awork']}")):
        answer = requests.request(method, f"{api.url}{path}", headers=bearer(ACME_ONLY), timeout=10)
        assert answer.status_code == 404, (method, path, answer.text)
    assert get(api, f"/jobs/{ids['awork']}", EVERYTHING).json()["status"] == "queued"  # untouched


def test_its_counts_and_dashboard_hold_no_awork_job(visibility):
    api, ids = visibility
    summary = get(api, "/ui/summary").json()
    assert summary["by_status"]["queued"] == 2 and sum(summary["by_status"].values()) == 2
    assert summary["by_connection"] == {"acme": 2}
    assert summary["by_kind"]["awork-image-delete"] == 0
    page = get(api, "/").text
    assert ids["acme"] in page and ids["awork"] not in page and ids["awork-2"] not in page
    assert get(api, "/connections").json()["connections"][0]["name"] == "acme"
    assert len(get(api, "/connections").json()["connections"]) == 1
    dry = requests.post(f"{api.url}/jobs:cancel", json={"dry_run": True}, headers=bearer(ACME_ONLY), timeout=10)
    assert dry.json()["matched"] == 2


def events_until(api: LiveApi, token: str, last: str) -> list[dict[str, Any]]:
    """The events ``GET /events`` sends the token from the start, up to the first of job ``last``."""
    seen: list[dict[str, Any]] = []
    give_up = time.monotonic() + 20  # the stream never ends: a job whose events never come fails here
    with requests.get(f"{api.url}/events", params={"last_event_id": "0"}, headers=bearer(token),
                      stream=True, timeout=20) as stream:
        for line in stream.iter_lines(decode_unicode=True):
            assert time.monotonic() < give_up, f"no event of job {last} in 20 s: {seen}"
            if line.startswith("data: "):
                seen.append(json.loads(line.removeprefix("data: ")))
                if seen[-1]["job"] == last:
                    break
    return seen


def test_its_event_stream_carries_no_awork_event(visibility):
    api, ids = visibility
    seen = events_until(api, ACME_ONLY, ids["acme-last"])  # the last job submitted: all before it was read
    assert {e["job"] for e in seen} == {ids["acme"], ids["acme-last"]}
    assert {e["connection"] for e in seen} == {"acme"}


def test_it_may_not_submit_to_or_pause_another_connection(visibility):
    api, _ = visibility
    refused = requests.post(f"{api.url}/jobs", json=AWORK_JOB, headers=bearer(ACME_ONLY), timeout=10)
    assert refused.status_code == 403
    assert refused.json()["problems"] == [{"field": "connection",
                                           "message": "the token 'acme-only' may not use connection 'awork'"}]
    batch = requests.post(f"{api.url}/jobs:batch", json={"jobs": [AWORK_JOB]}, headers=bearer(ACME_ONLY), timeout=10)
    assert batch.json()["results"][0]["status"] == 403 and batch.json()["created"] == 0
    paused = requests.post(f"{api.url}/connections/awork/pause", headers=bearer(ACME_ONLY), timeout=10)
    assert paused.status_code == 403


def test_a_tenants_limit_sees_only_its_tenants_jobs(visibility):
    """A job's ``tenant`` (issue 25): a tenants-limited token sees the jobs of its tenants and no
    other job (none without a tenant); the counts, from indexes with no tenant, count none."""
    api, ids = visibility
    assert get(api, "/jobs", TENANT_T1).json()["jobs"] == []
    assert get(api, f"/jobs/{ids['acme']}", TENANT_T1).status_code == 404
    assert sum(get(api, "/ui/summary", TENANT_T1).json()["by_status"].values()) == 0
    answer = requests.post(f"{api.url}/jobs", json={**ACME_JOB, "tenant": "t1"}, headers=bearer(EVERYTHING),
                           timeout=10)
    assert answer.status_code == 202 and answer.json()["tenant"] == "t1"
    mine = answer.json()["id"]
    try:
        assert [j["id"] for j in get(api, "/jobs", TENANT_T1).json()["jobs"]] == [mine]
        assert get(api, f"/jobs/{mine}", TENANT_T1).json()["tenant"] == "t1"
        assert get(api, f"/jobs/{ids['acme']}", TENANT_T1).status_code == 404
        assert {e["job"] for e in events_until(api, TENANT_T1, mine)} == {mine}  # its events, and no other
    finally:
        requests.post(f"{api.url}/jobs/{mine}/cancel", headers=bearer(EVERYTHING), timeout=10)
        requests.delete(f"{api.url}/jobs/{mine}", headers=bearer(EVERYTHING), timeout=10)


# ---- the dashboard's session ---------------------------------------------------------------------
def log_in(api: LiveApi, secret: str) -> requests.Session:
    browser = requests.Session()
    answer = browser.post(f"{api.url}/login", data={"token": secret, "next": "/"}, allow_redirects=False,
                          headers={"Origin": api.url}, timeout=10)
    assert answer.status_code == 303, answer.text
    return browser


def test_the_dashboard_hides_the_buttons_its_token_may_not_press(visibility):
    api, ids = visibility
    reader = log_in(api, ONE_SCOPE["read"]).get(f"{api.url}/", timeout=10).text
    assert "only-read" in reader and ids["acme"] in reader
    assert not any(f'data-action="{a}' in reader for a in ("replay", "purge", "cancel", "pause", "resume"))
    operator = log_in(api, OPS).get(f"{api.url}/", timeout=10).text
    assert 'data-action="cancel"' in operator and 'data-action="pause"' in operator
    assert 'data-action="purge-matching"' not in operator


def test_a_session_remembers_its_label_and_the_audit_line_names_it(visibility, caplog):
    api, _ = visibility
    browser = log_in(api, f"{OPS}-old")  # the label's older token, still accepted while rotating
    page = browser.get(f"{api.url}/", timeout=10).text
    csrf = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
    with caplog.at_level(logging.INFO, logger="ferry.audit"):
        answer = browser.post(f"{api.url}/connections/acme/pause", headers={"X-CSRF-Token": csrf}, timeout=10)
        browser.post(f"{api.url}/connections/acme/resume", headers={"X-CSRF-Token": csrf}, timeout=10)
    assert answer.status_code == 200, answer.text
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "ferry.audit"]
    assert [(line["action"], line["who"]) for line in lines] == [("pause", "ops"), ("resume", "ops")]
    refused = browser.post(f"{api.url}/jobs:purge", json={"dry_run": True}, headers={"X-CSRF-Token": csrf},
                           timeout=10)
    assert refused.status_code == 403 and "'ops' lacks the 'admin' scope" in refused.json()["detail"]


def test_another_token_s_bulk_replay_is_not_shown_to_a_limited_token(visibility):
    api, _ = visibility
    started = requests.post(f"{api.url}/jobs:replay", json={"ids": []}, headers=bearer(EVERYTHING), timeout=10)
    assert started.status_code == 202 and started.json()["by"] == "api (root)"
    assert get(api, "/jobs:replay", EVERYTHING).json()["by"] == "api (root)"
    assert get(api, "/jobs:replay").json() is None
