"""What each API token may do: a ``Grant`` (its label, scopes, and the connections and tenants whose
jobs it sees), and the tokens ``ferry api`` accepts, read from ``[api.tokens.<label>]`` tables, the
old ``[api] tokens_env`` variable, or ``--tokens-file`` (both of those: full access).

A job outside a grant's connections or tenants does not exist for it. A job's ``tenant`` is
optional (``JobRecord.tenant``, the list row's too): a token with a tenants list sees no job
without a matching tenant. Events name no tenant, so such a token's event stream stays empty.
"""

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from producers.config import ApiConfig, ApiTokenConfig
from producers.errors import ConfigError
from producers.web.scopes import GRANTABLE, Scope


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class Grant:
    label: str
    scopes: frozenset[Scope]
    connections: frozenset[str] | None = None  # None: every connection
    tenants: frozenset[str] | None = None  # None: every tenant, and jobs without one

    @classmethod
    def full(cls, label: str) -> "Grant":
        return cls(label, frozenset(GRANTABLE))

    def allows(self, scope: Scope) -> bool:
        return scope == Scope.PUBLIC or scope in self.scopes

    @property
    def limited(self) -> bool:
        """True when some jobs are hidden from it."""
        return self.connections is not None or self.tenants is not None

    def sees_connection(self, name: str | None) -> bool:
        return self.connections is None or name in self.connections

    def sees_tenant(self, tenant: object) -> bool:
        return self.tenants is None or tenant in self.tenants

    def sees(self, job: object) -> bool:
        """A job record or list row (or anything with ``connection`` and maybe ``tenant``)."""
        return (self.sees_connection(getattr(job, "connection", None))
                and self.sees_tenant(getattr(job, "tenant", None)))

    def sees_event(self, data: Mapping[str, object]) -> bool:
        connection = data.get("connection")
        return (self.sees_connection(connection if isinstance(connection, str) else None)
                and self.sees_tenant(data.get("tenant")))

    def visible(self, names: Iterable[str]) -> list[str]:
        """The connections among ``names`` it sees."""
        return [n for n in names if self.sees_connection(n)]

    def only_connection(self) -> str | None:
        """Its connection when it has exactly one (a list can then be narrowed in the store)."""
        return next(iter(self.connections)) if self.connections and len(self.connections) == 1 else None


@dataclass(frozen=True)
class Token:
    """One accepted bearer token: the secret (compared in constant time, never logged) and its grant."""

    secret: bytes
    digest: str
    grant: Grant


def token_label(token: str) -> str:
    """The label of a token from the old, unlabelled forms: a digest prefix, not the token."""
    return f"token #{digest(token)[:8]}"


def full_access(secrets: Iterable[str]) -> list[Token]:
    """``[api] tokens_env`` and ``--tokens-file``: every token may do anything."""
    return [Token(s.encode(), digest(s), Grant.full(token_label(s))) for s in secrets]


def split_tokens(raw: str) -> list[str]:
    """Tokens separated by commas and/or line breaks (a secret file holds one per line)."""
    return [t.strip() for t in raw.replace("\n", ",").split(",") if t.strip()]


def read_tokens_file(path: str) -> list[str]:
    """The tokens in a file (a mounted secret, e.g. /run/secrets/ferry_api_tokens); none is an error."""
    try:
        tokens = split_tokens(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read the API tokens file {path}: {exc.strerror}") from None
    if not tokens:
        raise ConfigError(f"no API tokens in {path}: put one bearer token per line")
    return tokens


def labelled(api: ApiConfig) -> list[Token]:
    """Every token of the ``[api.tokens.<label>]`` tables (several a label: rotation)."""
    return [Token(s.encode(), digest(s), _grant(label, table))
            for label, table in api.tokens.items() for s in _secrets(label, table)]


def _grant(label: str, table: ApiTokenConfig) -> Grant:
    return Grant(label, frozenset(Scope(s) for s in table.scopes),
                 frozenset(table.connections) if table.connections is not None else None,
                 frozenset(table.tenants) if table.tenants is not None else None)


def _secrets(label: str, table: ApiTokenConfig) -> list[str]:
    if table.token_file:
        return read_tokens_file(table.token_file)
    found = split_tokens(os.environ.get(table.token_env or "", ""))
    if not found:
        raise ConfigError(f"[api.tokens.{label}]: the variable {table.token_env} holds no token")
    return found


LEGACY_WARNING = ("[api] tokens_env ({env}) gives full access to every token in it; give each "
                  "system its own [api.tokens.<label>] table (token_env or token_file, scopes, "
                  "connections) instead")
