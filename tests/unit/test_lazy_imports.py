"""What a process pays for features it does not use: the worker, the CLI and the API import
SQLAlchemy (about 15 MiB a process) only when an archive is configured (``producers.archive``)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["worker.celery_app", "producers.cli", "producers.web.app", "producers.client"])
def test_a_process_without_an_archive_does_not_import_sqlalchemy(module: str) -> None:
    code = (f"import sys, {module}; "
            "loaded = sorted(m for m in ('sqlalchemy', 'alembic', 'psycopg') if m in sys.modules); "
            "print(','.join(loaded))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert found.stdout.strip() == ""
