"""Alembic migrations of the archive (``ferry archive migrate``; every worker runs them at start)."""
