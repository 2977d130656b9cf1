"""The HTTP API does what its OpenAPI document says, proven by a fuzzer.

schemathesis reads the document the live API serves, generates requests for every operation
(boundary and invalid ones in its coverage phase, random ones in fuzzing, chains that follow the
document's links from ``POST /jobs`` in the stateful phase) and checks every answer against it: no
server error, only declared statuses, content types and headers, bodies matching the declared
schema. A fixed seed makes a failure reproducible (``st replay``, or the same command again).

Random submissions are nearly all refused (a random path is outside the roots), so a job of each
kind is first submitted the way the document describes it, and its answer checked the same way.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from jsonschema import Draft202012Validator
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from producers.kinds import KINDS
from tests.e2e.conftest import AUTH, TOKEN, ContractApi

CHECKS = (not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance)
SEED = 20_150
EXAMPLES = 40  # per operation and phase: with the coverage phase, ~2000 requests in ~40 s


@pytest.fixture(scope="module")
def document(contract_api: ContractApi) -> dict[str, Any]:
    served = requests.get(f"{contract_api.url}/openapi.json", headers=AUTH, timeout=10)
    assert served.status_code == 200
    return dict(served.json())


def schema_validator(document: dict[str, Any], name: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}",
                                 "components": document["components"]})


def test_a_job_of_each_kind_is_described_and_answered_as_documented(contract_api, document):
    submission = schema_validator(document, "JobSubmission")
    operation = schemathesis.openapi.from_dict(document)["/jobs"]["POST"]
    examples = contract_api.example_jobs()
    assert set(examples) == set(KINDS)
    for kind, example in examples.items():
        body = {"kind": kind, **example}
        assert not list(submission.iter_errors(body)), kind
        case = operation.Case(body=body, headers=AUTH)
        response = case.call(base_url=contract_api.url)
        assert response.status_code == 202, response.text
        case.validate_response(response, checks=list(CHECKS))


def test_every_kind_is_a_member_of_the_submission_union_with_its_own_params(document):
    union = document["components"]["schemas"]["JobSubmission"]
    assert union["discriminator"]["propertyName"] == "kind"
    members = {kind: ref.rsplit("/", 1)[1] for kind, ref in union["discriminator"]["mapping"].items()}
    assert set(members) == set(KINDS)
    schemas = document["components"]["schemas"]
    for kind, member in members.items():
        properties = schemas[member]["properties"]
        takes = {"file", "uri"} & set(properties)
        spec = KINDS[kind]
        assert takes == (set() if spec.file is None else {"file", "uri"} if spec.file.uri_allowed
                         else {"file"}), kind
        params = schemas[properties["params"]["$ref"].rsplit("/", 1)[1]]
        assert set(params["properties"]) == set(spec.params.model_fields), kind
    entity = schemas["AworkImageParams"]["properties"]["entity"]
    assert "users" in entity["enum"]
    assert "logo" in schemas["MarketplaceImageParams"]["properties"]["image_type"]["enum"]
    assert schemas["JiraAvatarDeleteJob"]["required"] == ["kind", "connection", "params"]


def test_every_error_answer_is_the_one_problem_body(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert {"503"} <= set(responses), (method, path)
            if operation.get("security"):
                assert {"401", "403"} <= set(responses), (method, path)
            for status, response in responses.items():
                if int(status) >= 400 and path not in OWN_BODIES:
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Problem"}, (method, path, status)
    assert "HTTPValidationError" not in document["components"]["schemas"]


NOT_FUZZED = ("/events", "/readyz")
OWN_BODIES = ("/healthz", "/readyz")  # probes answer 503 with a body of their own (declared)


def test_schemathesis_finds_no_answer_the_document_does_not_describe(contract_api, document, tmp_path):
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(document))
    st = Path(sys.executable).with_name("st")
    run = subprocess.run(
        [str(st), "--no-color", "run", str(path), "--url", contract_api.url,
         "--header", f"Authorization: Bearer {TOKEN}", "--checks", ",".join(c.__name__ for c in CHECKS),
         "--seed", str(SEED), "--max-examples", str(EXAMPLES), "--workers", "2",
         "--phases", "examples,coverage,fuzzing,stateful", "--request-timeout", "20",
         # An event stream never ends, and /readyz answers 503 by design while no worker runs here:
         # their own tests (test_notifications.py, test_operate.py) check them.
         *(arg for path in NOT_FUZZED for arg in ("--exclude-path", path))],
        capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-12_000:] + run.stderr[-3000:]
    operations = sum(len(item) for path, item in document["paths"].items() if path not in NOT_FUZZED)
    assert f"Tested: {operations}" in run.stdout, run.stdout[-3000:]
