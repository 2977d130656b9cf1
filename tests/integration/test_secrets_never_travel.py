"""Jobs name a connection; the API token never reaches Redis, a Celery message, the job store or a
log line. The media JWT lives only in its own expiring key."""

from __future__ import annotations

import base64
import json
import re

import redis

from tests.fixtures.worker import TOKEN_ENV

TOKENS = list(TOKEN_ENV.values())
# A JWT: three base64url parts joined by dots (a bare "eyJ" is only base64 for '{"').
JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def everything_in_redis(client: redis.Redis) -> dict[str, str]:
    dump: dict[str, str] = {}
    for key in client.scan_iter("*"):
        kind = client.type(key)
        if kind == "string":
            dump[key] = str(client.get(key))
        elif kind == "hash":
            dump[key] = json.dumps(client.hgetall(key))
        elif kind == "list":
            items = client.lrange(key, 0, -1)
            dump[key] = json.dumps(items) + "".join(_decoded_bodies(items))
        elif kind == "zset":
            dump[key] = json.dumps(client.zrange(key, 0, -1))
        elif kind == "set":
            dump[key] = json.dumps(sorted(client.smembers(key)))
    return dump


def _decoded_bodies(messages: list[str]) -> list[str]:
    bodies = []
    for raw in messages:
        try:
            bodies.append(base64.b64decode(json.loads(raw)["body"]).decode())
        except (ValueError, KeyError, TypeError):
            continue
    return bodies


def test_no_token_in_redis_messages_records_or_logs(ferry_env, ferry, sandbox, redis_client, worker_process, tmp_path):
    seed = sandbox.seed()
    sandbox.add_fault(path="/attachments/object/[^/]+$", method="POST", status=429, times=1, retry_after=1)
    doc = tmp_path / "a.txt"
    doc.write_text("secret-free content\n")
    job = ferry.submit("assets-attachment", connection="acme", file=str(doc), params={"object": seed["object_id"]})
    seen_while_running = everything_in_redis(redis_client)  # includes the queued Celery message
    done = ferry.wait(job.id, timeout=60)
    assert done.status == "succeeded", done
    for snapshot in (seen_while_running, everything_in_redis(redis_client)):
        for key, value in snapshot.items():
            assert not any(t in value for t in TOKENS), f"API token found in {key}"
            if not key.startswith("ferry:secret:"):
                assert not JWT.search(value), f"a JWT outside its expiring key: {key}"
    secret_keys = [k for k, v in everything_in_redis(redis_client).items() if JWT.search(v)]
    assert secret_keys == [f"ferry:secret:{job.id}:get_credentials"]  # the one place it may live
    log = worker_process.log()
    assert job.id in log  # the log does speak of this job …
    assert not any(t in log for t in TOKENS) and not JWT.search(log)  # … and never of its secrets


def test_the_jwt_key_expires_no_later_than_the_jwt(ferry, sandbox, redis_client, tmp_path):
    sandbox.configure(jwt_ttl_seconds=30)
    seed = sandbox.seed()
    sandbox.add_fault(path="^/media/file", status=503, times=1, retry_after=1)
    doc = tmp_path / "b.txt"
    doc.write_text("x")
    job = ferry.submit("assets-attachment", connection="acme", file=str(doc), params={"object": seed["object_id"]})
    ferry.wait(job.id, timeout=60)
    ttl_ms = redis_client.pttl(f"ferry:secret:{job.id}:get_credentials")
    assert ttl_ms == -2 or 0 < ttl_ms <= 30_000
