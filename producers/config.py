"""ferry.toml: named connections, file roots, retention. Secrets are *named* here, never read here.

A producer only needs to know that a connection exists and which service it points at; the worker
resolves ``token_env`` / ``token_file`` into a credential (``worker.settings``).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from producers.errors import ConfigError

Service = Literal["atlassian", "marketplace", "awork"]

DEFAULT_CONFIG_NAME = "ferry.toml"


class ConnectionConfig(BaseModel):
    """One destination account. ``token_env``/``token_file`` name where the secret is, not the secret."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    service: Service
    site_url: str | None = None  # atlassian: https://<site>.atlassian.net (Jira + workspace discovery)
    api_url: str | None = None  # atlassian: https://api.atlassian.com (Assets gateway)
    base_url: str | None = None  # marketplace / awork
    email: str | None = None
    token_env: str | None = None
    token_file: str | None = None
    # Requests per second this connection may send, shared by all workers (None: no own limit).
    rate_limit: float | None = Field(default=None, gt=0)
    # Requests this connection may have open at once, shared by all workers (None: no cap).
    max_in_flight: int | None = Field(default=None, gt=0)
    # The Celery queue its steps go to (default ``ferry.<service>``): workers can serve a subset.
    queue: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")

    @model_validator(mode="after")
    def _check(self) -> ConnectionConfig:
        missing = [f for f in self._required_fields() if not getattr(self, f)]
        if not (self.token_env or self.token_file):
            missing.append("token_env or token_file")
        if missing:
            raise ValueError(f"{self.service} connection needs {', '.join(missing)}")
        return self

    def _required_fields(self) -> list[str]:
        if self.service == "atlassian":
            return ["site_url", "api_url", "email"]
        if self.service == "marketplace":
            return ["base_url", "email"]
        return ["base_url"]


class ApiConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tokens_env: str = "FERRY_API_TOKENS"
    max_body_bytes: int = 1_000_000


class FerryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    redis_url: str | None = None
    # Where the Celery queues live (``amqp://…`` for RabbitMQ); default: the job store's Redis.
    broker_url: str | None = None
    connections: dict[str, ConnectionConfig] = Field(default_factory=dict)
    # Files a job may name must resolve (symlinks followed) under one of these. Empty: any path.
    file_roots: tuple[str, ...] = ()
    # Succeeded jobs are forgotten after this; failed ones stay until replayed or purged.
    retention_seconds: int = 7 * 24 * 3600
    idempotency_seconds: int = 24 * 3600
    max_attempts: int = 8
    api: ApiConfig = Field(default_factory=ApiConfig)
    path: str | None = None

    def connection(self, name: str) -> ConnectionConfig:
        try:
            return self.connections[name]
        except KeyError:
            known = ", ".join(sorted(self.connections)) or "none configured"
            raise ConfigError(f"unknown connection {name!r} (known: {known})") from None


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    return Path(explicit or os.environ.get("FERRY_CONFIG") or DEFAULT_CONFIG_NAME)


def load_config(path: str | os.PathLike[str] | None = None) -> FerryConfig:
    """Read ferry.toml (``$FERRY_CONFIG``, default ``./ferry.toml``). A missing default file is empty."""
    p = config_path(path)
    if not p.exists():
        if path or os.environ.get("FERRY_CONFIG"):
            raise ConfigError(f"config file not found: {p}")
        return FerryConfig()
    try:
        raw = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: {exc}") from exc
    return parse_config(raw, str(p))


def parse_config(raw: dict[str, object], path: str | None = None) -> FerryConfig:
    data = dict(raw)
    files = data.pop("files", None)
    if isinstance(files, dict) and "roots" in files:
        data["file_roots"] = tuple(files["roots"])
    conns = data.get("connections")
    if isinstance(conns, dict):
        data["connections"] = {n: {**c, "name": n} for n, c in conns.items() if isinstance(c, dict)}
    try:
        return FerryConfig.model_validate({**data, "path": path})
    except ValidationError as exc:
        where = path or "config"
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{where}: {problems}") from exc
