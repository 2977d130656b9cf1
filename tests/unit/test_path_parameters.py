"""A producer's parameters never steer where the worker's credentials go.

Every parameter that reaches a destination's URL path is one path segment, refused at submit
otherwise (``Ferry.validate`` is the check every front door runs); and the worker, whatever its
record says, only ever sends its clients' declared routes with each value as one encoded segment.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from producers.client import Ferry
from producers.config import parse_config
from producers.errors import SubmitError
from tests.unit.test_kinds_extra import CONFIG
from worker.clients import assets, awork, jira_avatars, marketplace, media
from worker.http import Destination, Route, UnsafePath

HOSTILE = [
    "..", ".", "...", "../../../../../../project/10000", "../myself", "/", "a/b", "10000/", "?x=1",
    "a?b", "a#b", "%2e%2e", "%2F", "..%2f..", "\u2024\u2024", "\uff0e\uff0e", "a\u2215b", "a b",
    "a\tb", "a\nb", "\x1b]0;pwned\x07", "é", "x" * 10_000, "",
]


def png_file(tmp_path: Path) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), "teal").save(buf, "PNG")
    path = tmp_path / "a.png"
    path.write_bytes(buf.getvalue())
    return str(path)


def pdf_file(tmp_path: Path) -> str:
    path = tmp_path / "a.pdf"
    path.write_bytes(b"%PDF-1.4\n" + b"x" * 100 + b"\n%%EOF\n")
    return str(path)


# (kind, connection, the field under test, valid params around it, which file the kind takes)
FIELDS: list[tuple[str, str, str, dict[str, Any], str | None]] = [
    ("assets-avatar", "acme", "object", {"object_type": 1}, "png"),
    ("assets-avatar", "acme", "workspace", {"object_type": 1, "object": "88"}, "png"),
    ("assets-attachment", "acme", "object", {}, "pdf"),
    ("assets-attachment", "acme", "workspace", {"object": "88"}, "pdf"),
    ("jira-avatar", "acme", "owner", {"type": "project"}, "png"),
    ("jira-avatar-delete", "acme", "owner", {"type": "priority", "avatar": "10500"}, None),
    ("jira-avatar-delete", "acme", "avatar", {"type": "project", "owner": "FERRY"}, None),
    ("marketplace-asset-delete", "marketplace", "asset", {}, None),
    ("awork-image", "awork", "id", {"entity": "users"}, "png"),
    ("awork-image-delete", "awork", "id", {"entity": "projects"}, None),
]


@pytest.fixture
def ferry() -> Ferry:
    # validate() never contacts Redis; the URL only has to parse.
    return Ferry("redis://127.0.0.1:1/0", config=parse_config(CONFIG))


def refusal(ferry: Ferry, kind: str, connection: str, params: dict[str, Any], file: str | None) -> str:
    with pytest.raises(SubmitError) as caught:
        ferry.validate(kind, connection=connection, file=file, params=params)
    return str(caught.value)


# A Marketplace asset name is <folder>/<name> ("images/x.png"): the worker sends it as one segment.
MATRIX = [pytest.param(*case, value, id=f"{case[0]}.{case[2]}-{repr(value)[:24]}")
          for case in FIELDS for value in HOSTILE if not (case[2] == "asset" and value == "a/b")]


@pytest.mark.parametrize(("kind", "connection", "field", "around", "file", "value"), MATRIX)
def test_every_path_parameter_refuses_what_is_not_one_segment(
        ferry, tmp_path, kind, connection, field, around, file, value):
    path = {"png": png_file, "pdf": pdf_file}[file](tmp_path) if file else None
    assert refusal(ferry, kind, connection, {**around, field: value}, path).startswith(field)


@pytest.mark.parametrize(("kind", "connection", "params", "file"), [
    ("assets-avatar", "acme", {"object_type": 1, "object": "ITSM-88", "workspace": "a1b2-c3:d4"}, "png"),
    ("assets-attachment", "acme", {"object": "88", "workspace": "5a3b7c0e-9f1d-4e2a-8b6c-0d1e2f3a4b5c"}, "pdf"),
    ("jira-avatar", "acme", {"type": "project", "owner": "FERRY"}, "png"),
    ("jira-avatar", "acme", {"type": "project", "owner": "10000"}, "png"),
    ("jira-avatar", "acme", {"type": "issuetype", "owner": "10001"}, "png"),
    ("jira-avatar-delete", "acme", {"type": "priority", "owner": "3", "avatar": "10500"}, None),
    ("marketplace-asset-delete", "marketplace", {"asset": "images/6e0565d3-aa.png"}, None),
    ("marketplace-asset-delete", "marketplace",
     {"asset": "https://mp.example/rest/2/assets/artifacts%2F6e0565d3.jar"}, None),
    ("awork-image-delete", "awork", {"entity": "users", "id": "5b3c1e2f-0a1b-4c5d-8e9f-0a1b2c3d4e5f"}, None),
    ("awork-image-delete", "awork", {"entity": "users", "id": "file.v2"}, None),
])
def test_ordinary_ids_keys_and_names_pass(ferry, tmp_path, kind, connection, params, file):
    path = {"png": png_file, "pdf": pdf_file}[file](tmp_path) if file else None
    ferry.validate(kind, connection=connection, file=path, params=params)


@pytest.mark.parametrize(("avatar_type", "owner", "wanted"), [
    ("issuetype", "FERRY", "numeric issuetype id"),
    ("priority", "high", "numeric priority id"),
    ("project", "1FERRY", "project key such as FERRY"),
    ("project", "10000", None),
    ("project", "\u0661\u0662", "project key"),  # Arabic-Indic digits: str.isdigit() says yes
])
def test_jira_owners_take_the_documented_form(ferry, avatar_type, owner, wanted):
    params = {"type": avatar_type, "owner": owner, "avatar": "10500"}
    if wanted is None:
        ferry.validate("jira-avatar-delete", connection="acme", params=params)
    else:
        assert wanted in refusal(ferry, "jira-avatar-delete", "acme", params, None)


def test_a_jira_avatar_id_is_numeric(ferry):
    text = refusal(ferry, "jira-avatar-delete", "acme", {"type": "project", "owner": "FERRY", "avatar": "x1"}, None)
    assert text.startswith("avatar: must be a numeric id")


def test_a_marketplace_asset_name_has_at_most_two_parts(ferry):
    text = refusal(ferry, "marketplace-asset-delete", "marketplace", {"asset": "images/a/b.png"}, None)
    assert "at most two parts" in text


# ---- the worker side: routes ------------------------------------------------------------------
ROUTE = Route("/rest/api/3/universal_avatar/type/{type}/owner/{owner}/avatar/{avatar}")


def sent_path(url: str) -> str:
    """The path as requests will put it on the wire (it normalises through urllib3)."""
    return requests.Request("DELETE", url).prepare().path_url


@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: repr(v)[:24])
def test_a_hostile_value_is_one_segment_on_the_wire_or_nothing_is_sent(value):
    try:
        path = ROUTE.path(type="project", owner="10000", avatar=value)
    except UnsafePath as exc:
        assert "nothing was sent" in exc.message
        return
    wire = sent_path(f"https://acme.example{path.text}")
    assert wire.startswith("/rest/api/3/universal_avatar/type/project/owner/10000/avatar/")
    assert wire.count("/") == ROUTE.template.count("/") and "?" not in wire and "#" not in wire
    assert ROUTE.pattern.fullmatch(wire)


def test_a_destination_sends_only_its_declared_routes():
    declared, other = Route("/file/{id}"), Route("/admin/{id}")
    dest = Destination(requests.Session(), "http://127.0.0.1:9", routes=(declared,))  # nothing listens
    with pytest.raises(UnsafePath, match="not a route this client declares"):
        dest.call("GET", other.path(id="1"))


def test_a_path_that_would_change_on_the_wire_is_refused():
    """Defence in depth: a rendered path that urllib3 would rewrite (dot-segments) is refused."""
    route = Route("/file/{id}")
    dest = Destination(requests.Session(), "http://127.0.0.1:9/media", routes=(route,))
    forged = route.path(id="x")._replace(text="/file/../../admin")
    with pytest.raises(UnsafePath):
        dest.call("GET", forged)


def test_the_base_urls_own_path_is_kept():
    route = Route("/file/{id}")
    dest = Destination(requests.Session(), "https://media.example/prefix/", routes=(route,))
    assert dest.checked_url("GET", route.path(id="m 1")) == "https://media.example/prefix/file/m%201"


@pytest.mark.parametrize("client_routes", [
    [assets.WORKSPACES, assets.AVATAR_UPLOAD, assets.OBJECT_CREATE, assets.OBJECT,
     assets.ATTACHMENT_CREDENTIALS, assets.OBJECT_ATTACHMENTS],
    list(jira_avatars.ROUTES),
    [marketplace.ASSETS, marketplace.ARTIFACT, marketplace.ARTIFACT_FETCH, marketplace.IMAGE,
     marketplace.ASSET],
    [media.FILE, media.FILE_BINARY, media.FILE_BY_ID],
    [awork.image_route("https://api.awork.com/api/v1"), awork.image_route("https://api.awork.com")],
], ids=["assets", "jira", "marketplace", "media", "awork"])
def test_every_declared_route_has_placeholders_only_as_whole_segments(client_routes):
    for route in client_routes:
        for part in route.template.split("/"):
            assert "{" not in part or (part.startswith("{") and part.endswith("}")), route.template
