"""The archive of ended jobs (issue 27): history beyond Redis, in SQLite or PostgreSQL.

``schema`` the tables, ``migrations/`` their Alembic revisions (``migrate`` runs them), ``store``
the ``ArchiveStore`` (upsert, reads), ``search`` the filters as SQL, ``mover`` the rounds that
move ended jobs out of Redis (run by one worker at a time, ``worker/archiver.py``). docs/archive.md.

Which archive: ``[archive] url``; without one, a SQLite file in the Ferry home when Ferry runs its
embedded Redis, and none with an external Redis (processes on several machines must not each
write a file of their own). Needs the ``archive`` extra (SQLAlchemy, Alembic, psycopg); a
producer-only install without it reads Redis alone.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from producers.config import FerryConfig

if TYPE_CHECKING:
    from producers.archive.store import ArchiveStore

OFF = "off"
FILE_NAME = "archive.sqlite3"


def archive_url(config: FerryConfig, *, embedded: bool) -> str | None:
    """The archive's URL, or None when there is none (see the module's doc)."""
    url = config.archive.url
    if url is not None:
        return None if url.strip() in ("", OFF) else url
    if not embedded:
        return None
    from producers.embedded import ferry_home
    return f"sqlite:///{ferry_home() / FILE_NAME}"


def shown_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, as ``ArchiveStore``'s repr (SQLAlchemy's
    ``hide_password``) shows it: for ``ferry info`` and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user.partition(':')[0]}:***@{host}"))


def uses_embedded_redis(config: FerryConfig, redis_url: str | None = None) -> bool:
    """True when no Redis URL is given anywhere: Ferry runs its own."""
    return not (redis_url or os.environ.get("REDIS_URL") or config.redis_url)


def installed() -> bool:
    try:
        import alembic  # noqa: F401
        import sqlalchemy  # noqa: F401
    except ImportError:
        return False
    return True


def open_archive(config: FerryConfig, *, embedded: bool) -> ArchiveStore | None:
    """The configured archive (None: none, or the ``archive`` extra is not installed)."""
    url = archive_url(config, embedded=embedded)
    if url is None or not installed():
        return None
    from producers.archive.store import ArchiveStore
    return ArchiveStore(url)
