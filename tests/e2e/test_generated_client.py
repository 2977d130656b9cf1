"""A client generated from the served OpenAPI document works: openapi-python-client (offline, from
the file) writes a Python package into a temporary folder, and that package, not Ferry's code,
submits a job of each kind to the live API, reads one back and is refused as the document says."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests

from producers.kinds import KINDS
from tests.e2e.conftest import AUTH, TOKEN, ContractApi

PACKAGE = "ferry_generated_client"


@pytest.fixture(scope="module")
def document(contract_api: ContractApi) -> dict[str, Any]:
    return dict(requests.get(f"{contract_api.url}/openapi.json", headers=AUTH, timeout=10).json())


@pytest.fixture(scope="module")
def client_package(document: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("generated")
    path = folder / "openapi.json"
    path.write_text(json.dumps(document))
    config = folder / "generator.json"
    config.write_text(json.dumps({"package_name_override": PACKAGE, "post_hooks": []}))
    generator = Path(sys.executable).with_name("openapi-python-client")
    run = subprocess.run([str(generator), "generate", "--path", str(path), "--meta", "none",
                          "--output-path", str(folder / PACKAGE), "--config", str(config),
                          "--fail-on-warning"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    sys.path.insert(0, str(folder))
    yield folder / PACKAGE
    sys.path.remove(str(folder))
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        del sys.modules[name]


def generated(module: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{module}")


def test_the_generated_client_submits_a_job_of_each_kind_and_reads_it_back(contract_api, document,
                                                                          client_package):
    client = generated("client").AuthenticatedClient(base_url=contract_api.url, token=TOKEN)
    models, post_job = generated("models"), generated("api.jobs.post_job")
    get_job = generated("api.jobs.get_job")
    # Which class is which kind: the document's discriminator says, as it would to any user.
    mapping = document["components"]["schemas"]["JobSubmission"]["discriminator"]["mapping"]
    assert set(mapping) == set(KINDS)
    for kind, example in contract_api.example_jobs().items():
        member = getattr(models, mapping[kind].rsplit("/", 1)[1])
        body = member.from_dict({"kind": kind, **example})
        answer = post_job.sync_detailed(client=client, body=body)
        assert answer.status_code == 202, answer.content
        job = answer.parsed
        assert isinstance(job, models.JobRecord) and job.kind == kind
        assert job.status == models.JobStatus.QUEUED
        read = get_job.sync(client=client, job_id=job.id)
        assert isinstance(read, models.JobRecord) and read.to_dict() == job.to_dict()


def test_the_generated_client_reads_refusals_as_the_problem_body(contract_api, client_package):
    client = generated("client").AuthenticatedClient(base_url=contract_api.url, token=TOKEN)
    models, post_job = generated("models"), generated("api.jobs.post_job")
    example = contract_api.example_jobs()["awork-image"]
    body = models.AworkImageJob.from_dict({**example, "kind": "awork-image", "connection": "acme",
                                           "file": str(contract_api.root / "doc.pdf")})
    refused = post_job.sync_detailed(client=client, body=body).parsed
    assert isinstance(refused, models.Problem)
    assert {p.field for p in refused.problems} == {"connection", "file"}

    nobody = generated("client").AuthenticatedClient(base_url=contract_api.url, token="not-a-token")
    forbidden = generated("api.jobs.get_job").sync_detailed(client=nobody, job_id="0" * 32)
    assert forbidden.status_code == 403 and isinstance(forbidden.parsed, models.Problem)
    missing = generated("api.jobs.get_job").sync_detailed(client=client, job_id="0" * 32)
    assert missing.status_code == 404 and "0" * 32 in missing.parsed.detail
