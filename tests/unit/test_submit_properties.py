"""Whatever a caller sends, submitting ends in a job or in a list of problems, never in another
exception: any JSON body of ``POST /jobs``, any argument list of ``ferry submit``, any line of a
``ferry submit-batch`` manifest. Hypothesis generates the input: arbitrary JSON and text, and
job-shaped input built from the kind declarations so that valid jobs are generated too.

Runs on the session's real redis-server, in a database of its own (no worker consumes there).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from producers.cli import cli
from producers.cli.batch import check, read_manifest
from producers.client import Ferry, JobRequest
from producers.config import load_config
from producers.embedded import RedisLocation
from producers.errors import ManifestError, SubmitError
from producers.kinds import KINDS
from producers.records import JobRecord
from producers.web.app import create_app
from producers.web.openapi import Problem
from tests.fixtures.worker import write_config
from tests.integration.helpers import png

DB = 8  # other tests use 0 and 3-7
TOKEN = "property-token"
# derandomize: the same examples on every run, so CI is reproducible (a new seed is a code change).
BOUNDED = settings(max_examples=120, deadline=None, database=None, derandomize=True,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ---- a Ferry over a real Redis, with a file of every type under its root ----------------------
@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("property-files")
    png(root / "logo.png")
    (root / "doc.pdf").write_bytes(b"%PDF-1.4\n" + b"x" * 200 + b"\n%%EOF\n")
    (root / "app.jar").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    (root / "folder").mkdir()
    return root


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory, root: Path) -> Path:
    path = write_config(tmp_path_factory.mktemp("property") / "ferry.toml", "http://127.0.0.1:9",
                        "ferry@example.com")
    with path.open("a") as fh:
        fh.write(f"\n[files]\nroots = [{json.dumps(str(root))}]\n")
    return path


@pytest.fixture(scope="module")
def location(redis_location: RedisLocation) -> RedisLocation:
    return RedisLocation.from_socket(Path(urlsplit(redis_location.url).path), DB)


@pytest.fixture(scope="module")
def ferry(location: RedisLocation, config_path: Path) -> Iterator[Ferry]:
    client = Ferry(location.url, config=load_config(config_path))
    client.redis.flushdb()
    yield client
    client.redis.flushdb()
    client.close()


# ---- what callers send ----------------------------------------------------------------------
# Text the OS or the URL parser refuses outright (they once made a 503, a 500 or a traceback):
# always tried, whatever the generated examples are.
REFUSED_PATHS = ["/tmp/a\x00b.png", "~nobody-at-all/x.png", "/tmp/" + "x" * 300 + ".png"]
REFUSED_URIS = ["https://[::1/app.jar", "http://[x]/a.jar"]
REFUSED_BODIES = [{"kind": "assets-attachment", "connection": "acme", "file": path, "params": {"object": "1"}}
                  for path in REFUSED_PATHS] + \
                 [{"kind": "marketplace-artifact", "connection": "marketplace", "uri": uri} for uri in REFUSED_URIS]


def refused_examples(name: str, wrap: Any = lambda body: body) -> Any:
    """``@example`` for each refused body, passed to the test as ``name``."""
    def decorate(test: Any) -> Any:
        for body in REFUSED_BODIES:
            test = example(**{name: wrap(body)})(test)
        return test
    return decorate


JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) \
    | st.text(max_size=20)
JSON = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)


def paths(root: Path) -> st.SearchStrategy[str]:
    """Files every kind wants, none, a folder, escapes, text the OS refuses, and any text at all."""
    known = [str(root / n) for n in ("logo.png", "doc.pdf", "app.jar", "folder", "missing.png")]
    return st.sampled_from([*known, str(root / ".." / "etc"), "/etc/hostname", "/dev/zero",
                            "relative.png", "", *REFUSED_PATHS]) | st.text(max_size=30)


def param_values(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    """The kind's own parameter names with plausible or arbitrary values, maybe with strangers."""
    names = list(KINDS[kind].params.model_fields)
    plausible = st.sampled_from(["7", "12", "project", "logo", "users", "u-1", "images/a.png", "true",
                                 '{"11": "x"}', "-1", ""]) | st.integers(-5, 5000) | st.booleans()
    own = st.dictionaries(st.sampled_from(names), plausible | JSON, max_size=len(names)) if names \
        else st.just({})
    return st.tuples(own, st.dictionaries(st.text(max_size=8), JSON, max_size=2)).map(
        lambda both: {**both[0], **both[1]})


def job_bodies(root: Path) -> st.SearchStrategy[Any]:
    kinds = st.sampled_from(list(KINDS))
    uris = st.sampled_from(["https://files.example.com/app.jar", "http://x/a.jar", "ftp://x", "https://",
                            *REFUSED_URIS]) | st.text(max_size=20)
    shaped = kinds.flatmap(lambda kind: st.fixed_dictionaries(
        {"kind": st.just(kind), "connection": st.sampled_from(["acme", "marketplace", "awork", "nope"]),
         "file": paths(root) | st.none(), "params": param_values(kind)},
        optional={"uri": uris, "idempotency_key": st.text(max_size=5) | st.none()}))
    loose = st.dictionaries(st.sampled_from(["kind", "connection", "file", "uri", "params", "idempotency_key",
                                             "extra"]), JSON)
    return st.one_of(shaped, shaped, shaped, JSON, loose)  # mostly job-shaped: those reach Ferry.validate


# ---- HTTP -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def http(ferry: Ferry) -> Iterator[TestClient]:
    with TestClient(create_app(ferry, tokens=[TOKEN]),
                    headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


@pytest.mark.parametrize("path", ["/jobs", "/jobs:batch"])
def test_any_json_body_is_answered_with_a_job_or_the_problems(http, root, path):
    @BOUNDED
    @given(body=job_bodies(root))
    @refused_examples("body")
    def answer(body: Any) -> None:
        sent = {"jobs": [body]} if path == "/jobs:batch" and isinstance(body, dict) else body
        response = http.post(path, json=sent)  # a server error would raise here
        assert response.status_code in (200, 202, 409, 422), response.text
        if response.status_code in (200, 202) and path == "/jobs":
            JobRecord.model_validate(response.json())
        elif response.status_code in (200, 202):
            [item] = response.json()["results"]
            assert (item["job"] is None) == bool(item["problems"]), item
        else:
            refused = Problem.model_validate(response.json())
            assert refused.problems and all(isinstance(p.field, str) for p in refused.problems)

    answer()


def test_any_request_is_validated_into_a_job_or_problems(ferry, root):
    @BOUNDED
    @given(body=job_bodies(root))
    @refused_examples("body")
    def validate(body: Any) -> None:
        try:
            request = JobRequest.model_validate(body)
        except ValidationError as exc:
            assert exc.errors()
            return
        try:
            spec, params, _ = ferry.validate(request.kind, connection=request.connection, file=request.file,
                                             uri=request.uri, params=request.params)
        except SubmitError as exc:
            assert exc.problems
            return
        assert spec.name == request.kind and isinstance(params, spec.params)

    validate()


# ---- the command line -----------------------------------------------------------------------
def flags(kind: str) -> list[str]:
    names = ["--" + n.replace("_", "-") for n in KINDS[kind].params.model_fields]
    return [*names, "-c", "--connection", "--uri", "--idempotency-key", "--json", "--timeout", "--help"]


def submit_arguments(root: Path) -> st.SearchStrategy[list[str]]:
    word = st.sampled_from(["acme", "marketplace", "awork", "7", "project", "logo", "users", "x", "",
                            "-", "--"]) | paths(root) | st.text(max_size=15)
    kind = st.sampled_from(list(KINDS)) | st.text(max_size=10)
    return kind.flatmap(lambda k: st.lists(st.sampled_from(flags(k)) | word if k in KINDS else word,
                                           max_size=8).map(lambda rest: ["submit", k, *rest]))


def test_any_submit_argument_list_is_a_job_or_a_usage_error(ferry, config_path, location, root):
    runner = CliRunner()
    env = {"REDIS_URL": location.url, "FERRY_CONFIG": str(config_path)}

    @BOUNDED
    @given(args=submit_arguments(root))
    @refused_examples("args", lambda body: ["submit", body["kind"], "-c", body["connection"],
                                            *(["--uri", body["uri"]] if "uri" in body else [body["file"]]),
                                            *[f"--{k}={v}" for k, v in body.get("params", {}).items()]])
    def run(args: list[str]) -> None:
        result = runner.invoke(cli, args, env=env, obj={})
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        assert result.exit_code in (0, 2), (args, result.output)
        if result.exit_code == 2:
            assert "error" in result.output.lower() or "usage" in result.output.lower(), result.output

    run()


# ---- manifest lines -------------------------------------------------------------------------
def manifest_lines(root: Path) -> st.SearchStrategy[tuple[str, str]]:
    jsonl = job_bodies(root).map(lambda body: json.dumps(body)) | st.text(max_size=40)
    header = st.lists(st.sampled_from(["kind", "connection", "file", "uri", "idempotency_key", "params",
                                       "params.object", "params.object_type", "params.entity", "colour"]),
                      min_size=1, max_size=5, unique=True)
    cell = st.sampled_from(list(KINDS)) | paths(root) | st.sampled_from(['{"object": "1"}', "[]", "acme"]) \
        | st.text(max_size=10)
    csv = st.tuples(header, st.lists(cell, max_size=6)).map(
        lambda hr: ",".join(hr[0]) + "\n" + ",".join(json.dumps(c) if "," in c else c for c in hr[1]))
    return st.tuples(st.just(".jsonl"), jsonl) | st.tuples(st.just(".csv"), csv)


def test_any_manifest_line_is_a_job_or_its_problems(ferry, root, tmp_path_factory):
    folder = tmp_path_factory.mktemp("manifests")

    @BOUNDED
    @given(manifest=manifest_lines(root))
    @refused_examples("manifest", lambda body: (".jsonl", json.dumps(body)))
    def read(manifest: tuple[str, str]) -> None:
        suffix, text = manifest
        path = folder / f"manifest{suffix}"
        path.write_text(text, encoding="utf-8")
        try:
            lines = read_manifest(path)
        except ManifestError as exc:
            assert str(exc)
            return
        check(ferry, lines)
        for line in lines:
            assert (line.request is not None and not line.problems) or line.problems, line

    read()
