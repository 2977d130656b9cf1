"""The sandbox's Jira avatar responses validate against the shared OpenAPI subset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests

from sandbox.testing import SandboxControl
from tests.integration.sandbox.util import XSRF, image_bytes

SPEC_PATH = Path("/work/shared/apis/jira-platform-avatars.openapi.json")
API = "/rest/api/3"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    if not SPEC_PATH.exists():
        pytest.skip(f"{SPEC_PATH} not available")
    result: dict[str, Any] = json.loads(SPEC_PATH.read_text())
    return result


def validate(spec: dict[str, Any], schema_name: str, instance: Any) -> None:
    """Validate against components/schemas/<name>, resolving $refs inside the spec document."""
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": spec["components"]}
    jsonschema.Draft7Validator(schema).validate(instance)


def response_schema(spec: dict[str, Any], path: str, method: str, status: str) -> str:
    content = spec["paths"][path][method]["responses"][status]["content"]["application/json"]
    return str(content["schema"]["$ref"]).rsplit("/", 1)[-1]


def test_validator_is_not_vacuous(spec: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate(spec, "Avatars", {"system": [{"isSystemAvatar": True}]})  # no id
    with pytest.raises(jsonschema.ValidationError):
        validate(spec, "SystemAvatars", {"system": [], "extra": 1})


def test_avatar_responses_match_the_spec(sandbox: SandboxControl, spec: dict[str, Any]) -> None:
    seed = sandbox.seed()
    base = sandbox.url + API
    owner_path = f"{API}/universal_avatar/type/{{type}}/owner/{{entityId}}"
    loaded = requests.post(
        f"{base}/universal_avatar/type/project/owner/{seed['project_id']}",
        params={"size": 0},
        data=image_bytes(),
        headers={**XSRF, "Content-Type": "image/png"},
        auth=sandbox.basic,
        timeout=5,
    )
    assert loaded.status_code == 201
    validate(spec, response_schema(spec, owner_path, "post", "201"), loaded.json())
    owner = requests.get(f"{base}/universal_avatar/type/project/owner/{seed['project_id']}", auth=sandbox.basic)
    validate(spec, response_schema(spec, owner_path, "get", "200"), owner.json())
    system = requests.get(f"{base}/avatar/issuetype/system", auth=sandbox.basic)
    validate(spec, response_schema(spec, f"{API}/avatar/{{type}}/system", "get", "200"), system.json())
    project = requests.get(f"{base}/project/FERRY/avatars", auth=sandbox.basic)
    validate(
        spec,
        response_schema(spec, f"{API}/project/{{projectIdOrKey}}/avatars", "get", "200"),
        project.json(),
    )
    avatar2 = requests.post(
        f"{base}/issuetype/{seed['issuetype_id']}/avatar2",
        params={"size": 0},
        data=image_bytes(),
        headers={**XSRF, "Content-Type": "image/png"},
        auth=sandbox.basic,
    )
    avatar2_path = f"{API}/issuetype/{{id}}/avatar2"
    validate(spec, response_schema(spec, avatar2_path, "post", "201"), avatar2.json())
    issuetype = requests.put(
        f"{base}/issuetype/{seed['issuetype_id']}",
        json={"avatarId": int(avatar2.json()["id"])},
        auth=sandbox.basic,
    )
    validate(spec, response_schema(spec, f"{API}/issuetype/{{id}}", "put", "200"), issuetype.json())
    validate(
        spec,
        response_schema(spec, f"{API}/issuetype/{{id}}", "get", "200"),
        requests.get(f"{base}/issuetype/{seed['issuetype_id']}", auth=sandbox.basic).json(),
    )


def test_error_bodies_are_error_collections(sandbox: SandboxControl, spec: dict[str, Any]) -> None:
    seed = sandbox.seed()
    bad = requests.post(
        f"{sandbox.url}{API}/universal_avatar/type/project/owner/{seed['project_id']}",
        params={"size": 500},
        data=image_bytes(),
        headers={**XSRF, "Content-Type": "image/png"},
        auth=sandbox.basic,
    )
    assert bad.status_code == 400
    validate(spec, "ErrorCollection", bad.json())
    missing = requests.get(f"{sandbox.url}{API}/universal_avatar/view/type/project/avatar/1")
    assert missing.status_code == 404
    validate(spec, "ErrorCollection", missing.json())
