"""ferry.toml is read strictly: a misspelt key or table, or a value of the wrong type, is refused
with one line per problem naming the file, the table, the key and (for a misspelling) the nearest
known key. The known keys come from the models in producers/config.py, so a field added there is
accepted without being listed anywhere else."""

from __future__ import annotations

from pathlib import Path

import pytest

from producers.config import ApiConfig, ConnectionConfig, FerryConfig, find_config, load_config, toml_keys
from producers.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

ACME = """
[connections.acme]
service = "atlassian"
site_url = "https://acme.atlassian.net"
api_url = "https://api.atlassian.com"
email = "automation@acme.example"
token_env = "ACME_TOKEN"
"""


def refusal(tmp_path: Path, text: str) -> list[str]:
    """The lines of the ConfigError that loading ``text`` as ferry.toml raises."""
    path = tmp_path / "ferry.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    lines = str(caught.value).splitlines()
    assert all(line.startswith(f"{path}: ") for line in lines), lines
    return [line.removeprefix(f"{path}: ") for line in lines]


# ---- unknown keys and tables -------------------------------------------------------------------
def test_a_misspelt_key_names_its_table_and_the_nearest_known_key(tmp_path: Path) -> None:
    assert refusal(tmp_path, '[files]\nroot = ["/data"]\n') == [
        "unknown key `root` in [files]; did you mean `roots`?"]


def test_a_misspelt_connection_key_is_refused_not_left_for_a_401_later(tmp_path: Path) -> None:
    text = ACME.replace("token_env", "token_evn")
    assert refusal(tmp_path, text) == [
        "unknown key `token_evn` in [connections.acme]; did you mean `token_env`?"]


def test_a_misspelt_table_is_named_as_a_table(tmp_path: Path) -> None:
    assert refusal(tmp_path, '[fles]\nroots = ["/data"]\n' + ACME) == [
        "unknown table [fles]; did you mean [files]?"]
    assert refusal(tmp_path, '[connection.acme]\nservice = "awork"\n') == [
        "unknown table [connection]; did you mean [connections]?"]


def test_a_top_level_key_far_from_any_known_one_lists_the_known_keys(tmp_path: Path) -> None:
    [line] = refusal(tmp_path, "colour = 3\n")
    assert line.startswith("unknown key `colour` at the top level; known keys: ")
    assert "max_attempts" in line and "redis_url" in line


def test_every_problem_is_its_own_line(tmp_path: Path) -> None:
    lines = refusal(tmp_path, 'max_atempts = 3\n[api]\ntoken_env = "X"\n[files]\nroot = []\n')
    assert lines == [
        "unknown key `max_atempts` at the top level; did you mean `max_attempts`?",
        "unknown key `token_env` in [api]; did you mean `tokens_env`?",
        "unknown key `root` in [files]; did you mean `roots`?"]


def test_keys_the_loader_fills_in_are_not_keys_of_the_file(tmp_path: Path) -> None:
    [line] = refusal(tmp_path, ACME + 'name = "other"\n')
    assert line.startswith("unknown key `name` in [connections.acme]; known keys: api_url, base_url")


def test_the_known_keys_are_the_model_fields() -> None:
    """Derived, not listed: a field another change adds to a model is a key of ferry.toml."""
    keys = toml_keys()
    assert set(keys["connections"]["*"]) == set(ConnectionConfig.model_fields) - {"name"}
    assert set(keys["api"]) == set(ApiConfig.model_fields)
    moved = {"path", "file_roots", "allow_http_uris", "allow_private_uris"}
    assert set(keys) == (set(FerryConfig.model_fields) - moved) | {"files"}
    assert keys["files"] == {"roots": None, "allow_http_uris": None, "allow_private_uris": None}


# ---- wrong types -------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    ('max_attempts = "eight"\n',
     "max_attempts: Input should be a valid integer, unable to parse string as an integer (got 'eight')"),
    ('[files]\nroots = "/data"\n', "[files] roots: Input should be a valid tuple (got '/data')"),
    ("[files]\nroots = [1]\n", "[files] roots[0]: Input should be a valid string (got 1)"),
    ('files = "/data"\n', "files: should be a table ([files]), not a string"),
    (ACME + "rate_limit = -1\n", "[connections.acme] rate_limit: Input should be greater than 0 (got -1)"),
    ('[api]\nmax_body_bytes = "big"\n',
     "[api] max_body_bytes: Input should be a valid integer, unable to parse string as an integer "
     "(got 'big')"),
    ('[connections]\nacme = "atlassian"\n',
     "[connections.acme]: Input should be a valid dictionary or instance of ConnectionConfig "
     "(got 'atlassian')"),
    ('[connections.acme]\nservice = "atlassian"\ntoken_env = "T"\n',
     "[connections.acme]: atlassian connection needs site_url, api_url, email"),
])
def test_a_value_of_the_wrong_type_is_one_clear_line(tmp_path: Path, text: str, expected: str) -> None:
    assert refusal(tmp_path, text) == [expected]


# ---- what stays accepted -----------------------------------------------------------------------
def test_the_commented_example_and_an_empty_file_load(tmp_path: Path) -> None:
    example = load_config(REPO / "examples" / "ferry.toml")
    assert example.file_roots == ("/data/uploads",) and example.connection("acme").service == "atlassian"
    (tmp_path / "ferry.toml").write_text("")
    assert load_config(tmp_path / "ferry.toml").connections == {}


def test_the_nearest_ferry_toml_upward_is_found_and_its_relative_roots_start_beside_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command finds the same file from any folder below it (issue 29), and `roots = ["."]`
    means that file's folder wherever the command runs."""
    monkeypatch.delenv("FERRY_CONFIG", raising=False)
    (tmp_path / "ferry.toml").write_text('[files]\nroots = [".", "/data"]\n')
    deeper = tmp_path / "a" / "b"
    deeper.mkdir(parents=True)
    monkeypatch.chdir(deeper)
    assert find_config() == tmp_path.resolve() / "ferry.toml"
    assert load_config().file_roots == (str(tmp_path.resolve()), "/data")


def test_with_no_ferry_toml_anywhere_up_the_config_is_empty(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FERRY_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    assert find_config() is None
    assert load_config().connections == {}


def test_ferry_config_wins_and_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ferry.toml").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FERRY_CONFIG", str(tmp_path / "other.toml"))
    assert find_config() == tmp_path / "other.toml"
    with pytest.raises(ConfigError, match="config file not found"):
        load_config()


@pytest.mark.parametrize("example", sorted((REPO / "examples").glob("*.toml")), ids=lambda p: p.name)
def test_every_example_config_loads_with_connections(example: Path) -> None:
    assert load_config(example).connections
