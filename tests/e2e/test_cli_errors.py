"""What a user sees when something around Ferry is wrong: one clear line, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def ferry(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "producers", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def test_an_unreachable_redis_is_one_line_and_exit_1(tmp_path: Path) -> None:
    env = {**os.environ, "REDIS_URL": "redis://127.0.0.1:9/0"}  # the discard port: nothing listens
    proc = ferry("jobs", env=env, cwd=tmp_path)
    assert proc.returncode == 1
    assert "cannot reach Redis" in proc.stderr and "Traceback" not in proc.stderr


def test_a_broken_config_file_is_named_with_its_problem(tmp_path: Path) -> None:
    config = tmp_path / "ferry.toml"
    config.write_text('[connections.acme]\nservice = "atlassian"\nsite_url = "https://x"\n')
    proc = ferry("jobs", env={**os.environ, "FERRY_CONFIG": str(config)}, cwd=tmp_path)
    assert proc.returncode == 2
    assert "ferry.toml" in proc.stderr and "token_env or token_file" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_misspelt_config_key_is_refused_by_every_command_that_loads_the_file(tmp_path: Path) -> None:
    config = tmp_path / "ferry.toml"
    config.write_text('[files]\nroot = ["/data/uploads"]\n')
    env = {**os.environ, "FERRY_CONFIG": str(config), "REDIS_URL": "redis://127.0.0.1:9/0"}
    for command in (["jobs"], ["status", "0" * 32], ["worker"], ["jira", "avatars", "--type", "project"]):
        proc = ferry(*command, env=env, cwd=tmp_path)
        assert proc.returncode == 2, (command, proc.stderr)
        assert proc.stderr.strip() == f"error: {config}: unknown key `root` in [files]; did you mean `roots`?"


def test_a_config_value_of_the_wrong_type_is_refused_with_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "ferry.toml"
    config.write_text('max_attempts = "eight"\n[files]\nroots = "/data"\n')
    proc = ferry("jobs", env={**os.environ, "FERRY_CONFIG": str(config)}, cwd=tmp_path)
    assert proc.returncode == 2
    assert sorted(proc.stderr.splitlines()) == [
        f"error: {config}: [files] roots: Input should be a valid tuple (got '/data')",
        f"error: {config}: max_attempts: Input should be a valid integer, unable to parse string as "
        "an integer (got 'eight')"]
