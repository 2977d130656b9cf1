"""The README's main command: from an empty folder, with no REDIS_URL, every sample job lands,
and it does so again on the next run in the same folder (same embedded Redis, new sandbox)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from producers.kinds import KINDS


def run_demo(folder: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "FERRY_CONFIG", "FERRY_HOME")}
    return subprocess.run([sys.executable, "-m", "producers", "demo"], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=300)


def test_ferry_demo_runs_every_kind_on_an_embedded_redis(tmp_path: Path) -> None:
    proc = run_demo(tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "every sample job succeeded" in proc.stdout
    # It says where its config is and how to keep its stack running (issue 29).
    assert f"Config: {tmp_path.resolve() / '.ferry' / 'demo' / 'ferry.toml'}" in proc.stdout
    assert "ferry demo --keep" in proc.stdout
    for kind in KINDS:
        assert kind in proc.stdout
    # The embedded Redis kept its data (AOF) under the local .ferry folder, and was stopped again.
    assert (tmp_path / ".ferry" / "redis" / "appendonly.aof").exists() or \
        any((tmp_path / ".ferry" / "redis").glob("appendonly*"))
    assert not (tmp_path / ".ferry" / "redis" / "redis.sock").exists()

    # The second run finds what the first left in the persistent Redis (cached workspace ids,
    # finished jobs) and a sandbox that knows nothing of it: it must succeed all the same.
    again = run_demo(tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "every sample job succeeded" in again.stdout
