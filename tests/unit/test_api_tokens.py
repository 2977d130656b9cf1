"""``[api.tokens.<label>]``: each system's tokens, named (never written) in ferry.toml, with the
scopes and the connections and tenants it may reach. The old ``[api] tokens_env`` and
``--tokens-file`` stay full access."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from producers.config import FerryConfig, load_config
from producers.errors import ConfigError
from producers.web.app import api_tokens
from producers.web.grants import Grant, full_access, labelled
from producers.web.scopes import GRANTABLE, Scope
from tests.unit.test_config import ACME, refusal

READER = '[api.tokens.dashboards]\ntoken_env = "DASH_TOKENS"\nscopes = ["read"]\n'


def config(tmp_path: Path, text: str) -> FerryConfig:
    (tmp_path / "ferry.toml").write_text(text)
    return load_config(tmp_path / "ferry.toml")


# ---- the tables ----------------------------------------------------------------------------------
def test_a_table_names_its_secret_its_scopes_and_what_it_reaches(tmp_path: Path) -> None:
    found = config(tmp_path, ACME + '[api.tokens.acme-intake]\ntoken_file = "/run/secrets/intake"\n'
                                    'scopes = ["submit", "read"]\nconnections = ["acme"]\ntenants = ["t1"]\n')
    table = found.api.tokens["acme-intake"]
    assert (table.token_file, table.scopes, table.connections, table.tenants) == (
        "/run/secrets/intake", ("submit", "read"), ("acme",), ("t1",))


@pytest.mark.parametrize(("text", "expected"), [
    ('[api.tokens.x]\nscopes = ["read"]\n',
     "[api.tokens.x]: an API token needs exactly one of token_env or token_file"),
    ('[api.tokens.x]\ntoken_env = "A"\ntoken_file = "/f"\nscopes = ["read"]\n',
     "[api.tokens.x]: an API token needs exactly one of token_env or token_file"),
    ('[api.tokens.x]\ntoken_env = "A"\nscopes = []\n',
     "[api.tokens.x]: scopes: give at least one of read, submit, operate, admin"),
    ('[api.tokens.x]\ntoken_env = "A"\nscopes = ["write"]\n',
     "[api.tokens.x] scopes[0]: Input should be 'read', 'submit', 'operate' or 'admin' (got 'write')"),
    ('[api.tokens.x]\ntoken_env = "A"\nscopes = ["read"]\nconnections = ["nowhere"]\n',
     "[api.tokens.x] connections: unknown nowhere"),
])
def test_a_wrong_table_is_one_clear_line(tmp_path: Path, text: str, expected: str) -> None:
    assert refusal(tmp_path, text) == [expected]


def test_the_secret_itself_is_no_key_of_the_file(tmp_path: Path) -> None:
    lines = refusal(tmp_path, '[api.tokens.x]\ntoken = "s3cret"\ntoken_env = "A"\nscopes = ["read"]\n')
    assert len(lines) == 1 and lines[0].startswith("unknown key `token` in [api.tokens.x]")
    assert "s3cret" not in lines[0]


# ---- the tokens they give ------------------------------------------------------------------------
def test_a_variable_or_file_may_hold_several_tokens_of_one_label_for_rotation(tmp_path, monkeypatch) -> None:
    (tmp_path / "ops").write_text("ops-old\nops-new\n")
    monkeypatch.setenv("DASH_TOKENS", "dash-old, dash-new")
    found = config(tmp_path, READER + f'[api.tokens.ops]\ntoken_file = "{tmp_path / "ops"}"\n'
                                      'scopes = ["operate"]\n')
    tokens = {t.secret: t.grant for t in labelled(found.api)}
    assert {s: g.label for s, g in tokens.items()} == {b"dash-old": "dashboards", b"dash-new": "dashboards",
                                                       b"ops-old": "ops", b"ops-new": "ops"}
    assert tokens[b"ops-new"].scopes == {Scope.OPERATE}


def test_a_table_whose_variable_holds_no_token_stops_the_start(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("DASH_TOKENS", raising=False)
    with pytest.raises(ConfigError, match=r"\[api.tokens.dashboards\]: the variable DASH_TOKENS holds no token"):
        labelled(config(tmp_path, READER).api)


def test_the_old_tokens_env_gives_full_access_with_one_warning_naming_the_new_form(
        tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("DASH_TOKENS", "dash")
    monkeypatch.setenv("OLD_TOKENS", "old-one,old-two")
    found = config(tmp_path, '[api]\ntokens_env = "OLD_TOKENS"\n' + READER)
    with caplog.at_level(logging.WARNING, logger="ferry.api"):
        tokens = api_tokens(found)
    grants = {t.secret: t.grant for t in tokens}
    assert grants[b"old-one"].scopes == set(GRANTABLE) and not grants[b"old-one"].limited
    assert grants[b"dash"].scopes == {Scope.READ}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "[api.tokens.<label>]" in warnings[0]
    assert "old-one" not in caplog.text and "old-two" not in caplog.text  # tokens are never logged


def test_tokens_given_by_file_are_full_access_labelled_without_showing_them() -> None:
    (token,) = full_access(["file-token"])
    assert token.grant.scopes == set(GRANTABLE) and not token.grant.limited
    assert token.grant.label.startswith("token #") and "file-token" not in token.grant.label


# ---- what a grant sees ---------------------------------------------------------------------------
def test_a_connections_limit_hides_the_jobs_of_other_connections() -> None:
    grant = Grant("acme-only", frozenset({Scope.READ}), connections=frozenset({"acme"}))
    assert grant.sees(SimpleNamespace(connection="acme"))
    assert not grant.sees(SimpleNamespace(connection="awork"))
    assert grant.sees_event({"connection": "acme"}) and not grant.sees_event({"connection": "awork"})


def test_a_tenants_limit_reads_the_job_s_tenant_and_hides_jobs_without_one() -> None:
    """Jobs get an optional ``tenant`` in issue 25; until then no job matches a tenants limit."""
    grant = Grant("t1-only", frozenset({Scope.READ}), tenants=frozenset({"t1"}))
    assert grant.sees(SimpleNamespace(connection="acme", tenant="t1"))
    assert not grant.sees(SimpleNamespace(connection="acme", tenant="t2"))
    assert not grant.sees(SimpleNamespace(connection="acme"))
    assert not grant.sees_event({"connection": "acme"})


def test_a_grant_without_limits_sees_every_job() -> None:
    grant = Grant.full("everything")
    assert grant.sees(SimpleNamespace(connection="awork")) and grant.sees(SimpleNamespace(connection="x", tenant="y"))
