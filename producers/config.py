"""ferry.toml: named connections, file roots, retention. Secrets are *named* here, never read here.

A producer only needs to know that a connection exists and which service it points at; the worker
resolves ``token_env`` / ``token_file`` into a credential (``worker.settings``).
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

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
    # atlassian: how files reach the media service (open-readings §1). "auto" tries raw
    # /file/binary first (Atlassian's own client), verifies the stored size and falls back to the
    # seed's multipart /file; the form that worked is remembered per connection.
    media_upload: Literal["multipart", "binary", "auto"] = "auto"
    # Requests this connection may have open at once, shared by all workers (None: no cap).
    max_in_flight: int | None = Field(default=None, gt=0)
    # The Celery queue its steps go to (default ``ferry.<service>``): workers can serve a subset.
    queue: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    # This connection's own stall window (default: the top-level ``stall_seconds``).
    stall_seconds: float | None = Field(default=None, gt=0)

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


ApiScope = Literal["read", "submit", "operate", "admin"]


class ApiTokenConfig(BaseModel):
    """``[api.tokens.<label>]``: one party's bearer tokens and what they may do. The secret is
    named (``token_env`` / ``token_file``, several tokens a line or comma apart for rotation),
    never written here. ``connections`` / ``tenants``: the jobs it sees and touches (unset: all)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    token_env: str | None = None
    token_file: str | None = None
    scopes: tuple[ApiScope, ...]
    connections: tuple[str, ...] | None = None
    tenants: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _secret_and_scopes(self) -> ApiTokenConfig:
        if bool(self.token_env) == bool(self.token_file):
            raise ValueError("an API token needs exactly one of token_env or token_file")
        if not self.scopes:
            raise ValueError("scopes: give at least one of read, submit, operate, admin")
        return self


class ApiConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The old form: every token in this variable has full access (a warning at start says so).
    tokens_env: str = "FERRY_API_TOKENS"
    tokens: dict[str, ApiTokenConfig] = Field(default_factory=dict)
    max_body_bytes: int = 1_000_000
    # The variable holding the bearer token GET /metrics wants; unset: /metrics needs none.
    metrics_token_env: str | None = None
    # The proxies (addresses, networks, "*" for any) whose X-Forwarded-Proto / -For `ferry api`
    # believes: behind a TLS proxy, https then makes the session cookie Secure. Unset: uvicorn's
    # default ($FORWARDED_ALLOW_IPS, else 127.0.0.1 and ::1).
    forwarded_allow_ips: tuple[str, ...] | None = None

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _addresses_or_networks(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for entry in value or ():
            if entry != "*":
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError:
                    raise ValueError(f"{entry!r} is not an IP address, a network (10.0.0.0/8) or \"*\"") from None
        return value


class NotificationsConfig(BaseModel):
    """``[notifications]``: signed completion webhooks (``callback_url``). The secret is named
    here (an environment variable of the worker), never written here or stored with a job."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    secret_env: str = "FERRY_WEBHOOK_SECRET"
    # A delivery is retried (connect errors, timeouts, 408, 429, 5xx) for this long after the job ended.
    retry_window_seconds: int = Field(default=24 * 3600, gt=0)
    # Delay before the first retry when the receiver names none; doubles per attempt (jittered).
    backoff_seconds: float = Field(default=10.0, gt=0)
    max_backoff_seconds: float = Field(default=3600.0, gt=0)
    timeout_seconds: float = Field(default=10.0, gt=0)
    # Callback URLs must be https:// and resolve to public addresses unless these say otherwise.
    allow_http: bool = False
    allow_private: bool = False


class EventsConfig(BaseModel):
    """``[events]``: the stream of job state changes (``ferry events``, ``GET /events``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Roughly how many events the stream keeps (XADD MAXLEN ~): older ones are trimmed.
    max_length: int = Field(default=100_000, ge=100)


class ArchiveConfig(BaseModel):
    """``[archive]``: ended jobs leave Redis for a SQL database (docs/archive.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # sqlite:///path or postgresql://user@host/db; "off": none. Unset: a SQLite file in the Ferry
    # home with the embedded Redis, none with an external one.
    url: str | None = None
    hot_seconds: float = Field(default=24 * 3600, ge=0)  # an ended job stays in Redis this long
    succeeded_days: float = Field(default=30, gt=0)
    failed_days: float = Field(default=180, gt=0)  # failed and cancelled jobs
    batch: int = Field(default=500, ge=1, le=10_000)  # jobs moved per copy-confirm-delete
    interval_seconds: float = Field(default=5.0, gt=0)  # between the archiver's rounds


class TelemetryConfig(BaseModel):
    """``[telemetry]``: OpenTelemetry traces, off unless an OTLP endpoint is named here or in
    ``$OTEL_EXPORTER_OTLP_ENDPOINT`` (``producers.tracecontext``; the ``otel`` extra)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # OTLP over HTTP (protobuf), e.g. "http://otel-collector:4318": spans go to its /v1/traces.
    otlp_endpoint: str | None = Field(default=None, pattern=r"^https?://")


class SchedulingConfig(BaseModel):
    """``[scheduling]``: what runs next on a connection (docs/architecture.md, "What runs next")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Each this many seconds a job waits moves it up one priority (low -> normal -> high).
    aging_seconds: float = Field(default=300.0, gt=0)
    # How many of a connection's jobs may be in its run (in the broker, or started and not
    # ended); the rest wait in Ferry's ready sets, in priority and tenant order. Unset: half a
    # second of a connection's rate_limit (at least 4), else twice its max_in_flight, else
    # OPEN_WINDOW.
    window: int | None = Field(default=None, ge=1)


# The window of a connection with neither a rate_limit nor a max_in_flight: its speed is the
# workers', so the run must keep every worker process busy (a fleet of up to 256 processes at
# two jobs each), while a high job still waits behind at most this many jobs, not behind a
# 50 000-job migration queued before it (issue 25's first case).
OPEN_WINDOW = 512


class FerryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    redis_url: str | None = None
    # Where the Celery queues live (``amqp://…`` for RabbitMQ); default: the job store's Redis.
    broker_url: str | None = None
    connections: dict[str, ConnectionConfig] = Field(default_factory=dict)
    # Files a job may name must resolve (symlinks followed) under one of these. Empty: any path.
    file_roots: tuple[str, ...] = ()
    # A job's ``uri`` must be https:// and name a public host unless these say otherwise (the
    # sandbox, in tests and the demo, is plain http on loopback). ``[files]`` keys, like roots.
    allow_http_uris: bool = False
    allow_private_uris: bool = False
    # Succeeded jobs are forgotten after this; failed ones stay until replayed or purged.
    retention_seconds: int = 7 * 24 * 3600
    idempotency_seconds: int = 24 * 3600
    max_attempts: int = 8
    # Nominal delay before the first retry when the server names none; doubles per attempt (jittered).
    retry_backoff_seconds: float = Field(default=1.0, gt=0)
    # A request whose body stops moving, or whose answer does not begin, for this long is
    # aborted (a stall: half-open TCP, a proxy that stopped reading); a slow but steady upload
    # never is. A connection may set its own.
    stall_seconds: float = Field(default=120.0, gt=0)
    api: ApiConfig = Field(default_factory=ApiConfig)
    notifications: NotificationsConfig = Field(default_factory=NotificationsConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    archive: ArchiveConfig = Field(default_factory=ArchiveConfig)
    scheduling: SchedulingConfig = Field(default_factory=SchedulingConfig)
    path: str | None = None

    @model_validator(mode="after")
    def _token_connections_exist(self) -> FerryConfig:
        for label, token in self.api.tokens.items():
            unknown = sorted(set(token.connections or ()) - set(self.connections))
            if unknown:
                raise ValueError(f"[api.tokens.{label}] connections: unknown {', '.join(unknown)}")
        return self

    def window_of(self, connection: str) -> int | None:
        """How many of ``connection``'s jobs may be in its run (``SchedulingConfig.window``);
        None for a connection not configured."""
        if self.scheduling.window is not None:
            return self.scheduling.window
        conn = self.connections.get(connection)
        if conn is not None and conn.rate_limit:
            return max(4, math.ceil(conn.rate_limit / 2))
        if conn is not None and conn.max_in_flight:
            return 2 * conn.max_in_flight
        return OPEN_WINDOW if conn is not None else None

    def stall_seconds_of(self, connection: str) -> float:
        return self.connection(connection).stall_seconds or self.stall_seconds

    def connection(self, name: str) -> ConnectionConfig:
        try:
            return self.connections[name]
        except KeyError:
            known = ", ".join(sorted(self.connections)) or "none configured"
            raise ConfigError(f"unknown connection {name!r} (known: {known})") from None


def find_config(start: Path | None = None) -> Path | None:
    """The ferry.toml every command uses: ``$FERRY_CONFIG``, else the nearest ``ferry.toml`` in
    ``start`` (the current folder) or a folder above it, so a command run from a subfolder finds
    the same file, and the same Ferry home beside it (``producers.embedded.ferry_home``)."""
    explicit = os.environ.get("FERRY_CONFIG")
    if explicit:
        return Path(explicit)
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / DEFAULT_CONFIG_NAME
        if candidate.is_file():
            return candidate
    return None


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """``explicit``, else :func:`find_config`; None when there is no ferry.toml to read."""
    return Path(explicit) if explicit else find_config()


def no_config_warning() -> str:
    """What a command says when it found no ferry.toml (it goes on with no connections)."""
    return (f"no {DEFAULT_CONFIG_NAME} in {Path.cwd()} or any folder above it, and FERRY_CONFIG is "
            f"unset: no connections; Ferry's data goes to {Path.cwd() / '.ferry'} "
            "(cp examples/sandbox.ferry.toml ferry.toml to try the sandbox)")


def load_config(path: str | os.PathLike[str] | None = None) -> FerryConfig:
    """Read ferry.toml (``path``, else ``$FERRY_CONFIG``, else the nearest ``ferry.toml`` upward).
    None found is an empty config; a file named explicitly must exist. Relative ``[files] roots``
    are relative to the file's folder, wherever the command runs."""
    p = config_path(path)
    if p is None:
        return FerryConfig()
    if not p.exists():
        raise ConfigError(f"config file not found: {p}")
    try:
        raw = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: {exc}") from exc
    config = parse_config(raw, str(p))
    roots = tuple(str(p.resolve().parent / Path(r).expanduser()) for r in config.file_roots)
    return config.model_copy(update={"file_roots": roots}) if roots != config.file_roots else config


def parse_config(raw: dict[str, object], path: str | None = None) -> FerryConfig:
    """Validate ferry.toml's contents strictly: every unknown key or table and every value of the
    wrong type is a problem, one line each, naming the file, the table and the key."""
    where = path or "config"
    problems = unknown_keys(raw, toml_keys())
    data = dict(raw)
    for table in dict.fromkeys(table for table, _ in _MOVED):
        section = data.pop(table, None)
        if section is not None and not isinstance(section, dict):
            problems.append(f"{table}: should be a table ([{table}]), not {_type_name(section)}")
        elif section is not None:
            data.update({field: section[key] for (t, key), field in _MOVED.items()
                         if t == table and key in section})
    conns = data.get("connections")
    if isinstance(conns, dict):
        # Each connection knows its own name; a non-table value is left for pydantic to refuse.
        data["connections"] = {n: {**c, "name": n} if isinstance(c, dict) else c for n, c in conns.items()}
    try:
        config = FerryConfig.model_validate({**data, "path": path})
    except ValidationError as exc:
        # Unknown keys were named above, with a suggestion; pydantic's "extra" errors repeat them.
        problems += [_type_problem(e) for e in exc.errors() if e["type"] != "extra_forbidden"]
    if problems:
        raise ConfigError("\n".join(f"{where}: {p}" for p in problems))
    return config


# ---- strictness ----------------------------------------------------------------------------------
# ferry.toml mirrors the models: a field is a key, a model-typed field is a table, and a dict of
# models is a table of named tables (``[connections.<name>]``). The known keys are read from the
# models each time, so a field added to a model is a key of the file with nothing else to change.
# What the file spells differently is declared here: ``[files] roots`` is FerryConfig.file_roots,
# ``[files] allow_http_uris`` is FerryConfig.allow_http_uris (likewise allow_private_uris), and
# ``name`` (a connection's) and ``path`` (the file's) are filled in by the loader.
Keys = dict[str, "Keys | None"]  # key -> the keys of its table, or None for a plain value
ANY_NAME = "*"  # in a table of named tables: the keys every named table takes
_MOVED: dict[tuple[str, str], str] = {("files", "roots"): "file_roots",
                                      ("files", "allow_http_uris"): "allow_http_uris",
                                      ("files", "allow_private_uris"): "allow_private_uris"}
_SET_BY_LOADER = frozenset({"name", "path"})


def toml_keys(model: type[BaseModel] = FerryConfig) -> Keys:
    """The keys (and tables, with theirs) ferry.toml may hold where ``model`` is read."""
    keys: Keys = {name: _table_keys(field.annotation) for name, field in model.model_fields.items()
                  if name not in _SET_BY_LOADER}
    if model is FerryConfig:
        for (table, key), field_name in _MOVED.items():
            section = keys.setdefault(table, {})
            assert section is not None
            section[key] = keys.pop(field_name)
    return keys


def _table_keys(annotation: Any) -> Keys | None:
    """The keys of the table a field of this type is written as, or None when it is a value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return toml_keys(annotation)
    if get_origin(annotation) is dict:
        named = _table_keys(get_args(annotation)[1])
        return {ANY_NAME: named} if named is not None else None
    if get_origin(annotation) in (Union, UnionType):  # Model | None: still a table
        tables = [t for t in map(_table_keys, get_args(annotation)) if t is not None]
        return tables[0] if tables else None
    return None


def unknown_keys(raw: Mapping[str, object], keys: Keys, table: tuple[str, ...] = ()) -> list[str]:
    """One line for each key or table in ``raw`` (and the tables inside it) not in ``keys``."""
    problems = []
    for key, value in raw.items():
        if ANY_NAME in keys or key in keys:
            inner = keys.get(ANY_NAME, keys.get(key))
            if inner is not None and isinstance(value, dict):
                problems += unknown_keys(value, inner, (*table, key))
            continue
        known = sorted(k for k in keys if k != ANY_NAME)
        near = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        if isinstance(value, dict):
            name = "[" + ".".join((*table, key)) + "]"
            hint = f"did you mean [{'.'.join((*table, near[0]))}]?" if near else _known(known)
            problems.append(f"unknown table {name}; {hint}")
        else:
            place = f"in [{'.'.join(table)}]" if table else "at the top level"
            hint = f"did you mean `{near[0]}`?" if near else _known(known)
            problems.append(f"unknown key `{key}` {place}; {hint}")
    return problems


def _known(known: list[str]) -> str:
    return f"known keys: {', '.join(known)}" if known else "this table takes no keys"


def _type_problem(error: ErrorDetails) -> str:
    """A pydantic error, located as the file spells it: ``[connections.acme] rate_limit``."""
    loc = list(error["loc"])
    moved = {field: place for place, field in _MOVED.items()}
    if loc and loc[0] in moved:
        loc[:1] = moved[str(loc[0])]
    table: list[str] = []
    keys: Keys | None = toml_keys()
    while loc and keys is not None and isinstance(loc[0], str):
        inner = keys.get(ANY_NAME, keys.get(loc[0]))
        if inner is None:
            break  # loc[0] is a plain key of this table
        table.append(str(loc.pop(0)))
        keys = inner
    key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).removeprefix(".")
    place = " ".join(filter(None, [f"[{'.'.join(table)}]" if table else "", key]))
    value = error.get("input")
    got = f" (got {value!r})" if isinstance(value, str | int | float) and error["type"] != "value_error" else ""
    message = f"{error['msg'].removeprefix('Value error, ')}{got}"
    return f"{place}: {message}" if place else message  # a check across tables names its own place


def _type_name(value: object) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "an array"}
    return names.get(type(value), type(value).__name__)
