"""The worker fleet as the store sees it: heartbeats, and what the reapers share (one reaper a
round, a revived step once per window, which queues are empty)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from producers import keys
from producers.store.core import StoreCore
from producers.store.types import dump


class Workers(StoreCore):
    def beat(self, node: str, data: dict[str, Any], ttl: int) -> None:
        """One worker process says it is alive (and what it runs); forgotten ``ttl`` s after its last beat."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(keys.heartbeat(node), dump(data), ex=ttl)
            pipe.zadd(keys.heartbeats(), {node: time.time()})
            pipe.execute()

    def end_beat(self, node: str) -> None:
        """A worker process stopping cleanly takes itself off the list at once."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(keys.heartbeat(node))
            pipe.zrem(keys.heartbeats(), node)
            pipe.execute()

    def heartbeats(self) -> list[dict[str, Any]]:
        """The live worker processes' heartbeats (expired ones leave the list)."""
        nodes = [str(n) for n in self.redis.zrange(keys.heartbeats(), 0, -1)]
        if not nodes:
            return []
        raws = self.redis.mget([keys.heartbeat(n) for n in nodes])
        gone = [n for n, raw in zip(nodes, raws, strict=True) if raw is None]
        if gone:
            self.redis.zrem(keys.heartbeats(), *gone)
        return [json.loads(raw) for raw in raws if raw is not None]

    def workers(self) -> list[dict[str, Any]]:
        """One entry per worker (its main process), with the steps its pool's processes run now."""
        beats = self.heartbeats()
        mains = {(b["hostname"], b["pid"]): {**b, "running": list(b.get("running", []))}
                 for b in beats if not b.get("parent")}
        orphans = []
        for b in beats:
            if b.get("parent"):
                main = mains.get((b["hostname"], b["parent"]))
                if main is None:
                    orphans.append(b)
                else:
                    main["running"] += b.get("running", [])
        return sorted([*mains.values(), *orphans], key=lambda w: (w["hostname"], w["pid"]))

    # ---- the reapers (worker.recovery) --------------------------------------------------------
    def claim_reaper_round(self, holder: str, seconds: int) -> bool:
        """True for the one reaper that has this round (``seconds`` long)."""
        return bool(self.redis.set(keys.reaper_round(), holder, nx=True, ex=max(1, seconds)))

    def mark_revived(self, job_id: str, step: str, seconds: int) -> bool:
        """True the first time a job's step is revived within ``seconds``."""
        return bool(self.redis.set(keys.revived(job_id, step), 1, nx=True, ex=seconds))

    def empty_lists(self, names: Sequence[str]) -> set[str]:
        """Which of the Redis lists ``names`` (a Redis broker's queues) hold nothing now."""
        with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.llen(name)
            return {name for name, length in zip(names, pipe.execute(), strict=True) if not length}
