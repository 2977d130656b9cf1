"""The README's main command: from an empty folder, with no REDIS_URL, every sample job lands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from producers.kinds import KINDS


def test_ferry_demo_runs_every_kind_on_an_embedded_redis(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "FERRY_CONFIG", "FERRY_HOME")}
    proc = subprocess.run([sys.executable, "-m", "producers", "demo"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "every sample job succeeded" in proc.stdout
    for kind in KINDS:
        assert kind in proc.stdout
    # The embedded Redis kept its data (AOF) under the local .ferry folder, and was stopped again.
    assert (tmp_path / ".ferry" / "redis" / "appendonly.aof").exists() or \
        any((tmp_path / ".ferry" / "redis").glob("appendonly*"))
    assert not (tmp_path / ".ferry" / "redis" / "redis.sock").exists()
