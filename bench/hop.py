"""What passing a job from one step to the next costs a worker: Celery's chain vs. Ferry's own publish.

    python -m bench.hop [--hops 2000]

A chain carries its remaining signatures in every message; after a step, Celery's tracer pops
the next one and publishes it (``signature.apply_async(chain=rest)``; the router reads the job's
connection from the store to pick the queue). Ferry instead builds the next step's message from
the kind's declaration (``producers.queue.StepMessages``) and the store's transition script
LPUSHes it along with the step's record. Measured on an embedded redis-server, per hop: CPU of
the publishing process (ms), Redis round trips, and the message's bytes in the queue. The
"send_task" row is ``publish_step`` (what the worker uses on a broker other than the store).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import redis
from celery import chain

from bench.common import table
from producers.config import parse_config
from producers.embedded import EmbeddedRedis
from producers.queue import StepMessages, make_celery, publish_step, queue_for_connection, task_name

JOB_ID = "0123456789abcdef0123456789abcdef"
STEPS = ("get_credentials", "media_upload", "link_attachment")


def measure(hops: int) -> list[list[object]]:
    home = Path(tempfile.mkdtemp(prefix="ferry-hop-"))
    server = EmbeddedRedis(home / "redis")
    try:
        location = server.ensure_running()
        config = parse_config({"connections": {"acme": {
            "service": "atlassian", "site_url": "https://a.example", "api_url": "https://b.example",
            "email": "a@b.c", "token_env": "X"}}})
        app = make_celery(location, config)
        client = redis.Redis.from_url(location.url, decode_responses=True)
        client.hset(f"ferry:job:{JOB_ID}", "meta", '{"connection":"acme"}')  # what JobRouter reads
        queue = queue_for_connection(config, "acme")
        messages = StepMessages(app)
        script = client.register_script("for i = 1, #ARGV do redis.call('LPUSH', KEYS[1], ARGV[i]) end return 1")

        def chain_hop() -> None:
            # As Celery's tracer passes a 3-step chain on after its first step.
            rest = [app.signature(task_name(s), args=(JOB_ID,), immutable=True) for s in STEPS[1:]]
            first = chain(app.signature(task_name(STEPS[0]), args=(JOB_ID,), immutable=True), *rest)
            first.freeze()
            nxt = first.tasks[1]
            nxt.apply_async(chain=list(reversed(first.tasks[2:])))

        def ferry_hop() -> None:
            [(_, (key, payload))] = messages.step(JOB_ID, STEPS[1], queue)
            script(keys=[key], args=[payload])  # in Ferry this LPUSH rides the step's own script

        rows: list[list[object]] = []
        for name, hop, trips in (("Celery chain (next signature + the rest)", chain_hop, "2 (router HGET, LPUSH)"),
                                 ("Ferry: next step from the declaration", ferry_hop, "0 (in the step's script)"),
                                 ("Ferry: send_task (outbox, other brokers)",
                                  lambda: publish_step(app, JOB_ID, STEPS[1], queue=queue), "1 (LPUSH)")):
            client.delete(queue)
            cpu_ms = _cpu_ms(hop, hops)
            size = float(client.memory_usage(queue, samples=0) or 0) / max(1, int(client.llen(queue)))
            rows.append([name, cpu_ms, trips, size])
        messages.close()
        client.close()
        return rows
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


def _cpu_ms(hop: Callable[[], None], hops: int) -> float:
    for _ in range(50):
        hop()  # warm up: imports, connections, script load
    started = time.process_time()
    for _ in range(hops):
        hop()
    return (time.process_time() - started) / hops * 1000


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hop", description=__doc__.split("\n")[0])
    parser.add_argument("--hops", type=int, default=2000)
    args = parser.parse_args(argv)
    print(table(["hop", "CPU ms", "Redis round trips", "bytes queued"], measure(args.hops)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
