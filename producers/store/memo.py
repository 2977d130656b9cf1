"""What steps keep for later beside the job record: short-lived secrets (the media JWT), a
step's memo of its first attempt, and caches a connection shares (its Assets workspace id, the
upload forms that worked). None of it is a record: each expires on its own."""

from __future__ import annotations

import json
from typing import Any

from producers import keys
from producers.store.core import StoreCore
from producers.store.types import dump


class Memos(StoreCore):
    def put_secret(self, job_id: str, step: str, data: dict[str, Any], ttl_seconds: float) -> None:
        """Keep a short-lived secret (the media JWT) for the next step, never past its own expiry."""
        ms = int(ttl_seconds * 1000)
        if ms > 0:
            self.redis.set(keys.job_secret(job_id, step), dump(data), px=ms)

    def get_secret(self, job_id: str, step: str) -> dict[str, Any] | None:
        raw = self.redis.get(keys.job_secret(job_id, step))
        return json.loads(raw) if raw else None

    def step_memo(self, job_id: str, step: str) -> str | None:
        """What the step noted before its first attempt (``keep_step_memo``), if it did."""
        value = self.redis.get(keys.step_memo(job_id, step))
        return None if value is None else str(value)

    def keep_step_memo(self, job_id: str, step: str, value: str) -> bool:
        """Note ``value`` for the step's later attempts, unless one is noted already (False);
        kept as long as a succeeded job (a purge removes it)."""
        return bool(self.redis.set(keys.step_memo(job_id, step), value, nx=True, ex=self.retention_seconds))

    def cached_workspace(self, site_url: str) -> str | None:
        value = self.redis.get(keys.workspace_cache(site_url))
        return str(value) if value else None

    def cache_workspace(self, site_url: str, workspace_id: str, seconds: int) -> None:
        self.redis.set(keys.workspace_cache(site_url), workspace_id, ex=seconds)

    def forget_workspace(self, site_url: str) -> None:
        self.redis.delete(keys.workspace_cache(site_url))

    def upload_form(self, connection: str, asset: str) -> str | None:
        """The upload form that last worked on ``connection`` for one kind of asset, if known."""
        value = self.redis.get(keys.upload_form(connection, asset))
        return None if value is None else str(value)

    def remember_upload_form(self, connection: str, asset: str, form: str, seconds: int) -> None:
        self.redis.set(keys.upload_form(connection, asset), form, ex=seconds)

    def forget_upload_form(self, connection: str, asset: str) -> None:
        self.redis.delete(keys.upload_form(connection, asset))
