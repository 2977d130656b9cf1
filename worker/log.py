"""structlog, JSON lines, with secrets redacted before anything is rendered.

Context (job_id, kind, step, connection, attempt) is bound per step in ``worker.tasks``.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

REDACTED = "[redacted]"
_SECRET_KEY = re.compile(r"(authorization|token|jwt|secret|password|api[_-]?key|credential)", re.I)
# Inline secrets in free text: auth headers, JWTs (three base64url parts), basic-auth in URLs.
_SECRET_TEXT = (
    re.compile(r"\b(Basic|Bearer)\s+[A-Za-z0-9._~+/=-]+", re.I),
    re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),
    re.compile(r"(?<=://)[^/@\s:]+:[^/@\s]+(?=@)"),
)


def redact_text(text: str) -> str:
    for pattern in _SECRET_TEXT:
        text = pattern.sub(lambda m: _keep_scheme(m.group(0)), text)
    return text


def _keep_scheme(match: str) -> str:
    head = match.split(None, 1)[0]
    return f"{head} {REDACTED}" if head.lower() in ("basic", "bearer") else REDACTED


def _redact(value: Any, key: str = "") -> Any:
    if key and _SECRET_KEY.search(key) and value not in (None, ""):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    return value


def redact_secrets(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: tokens, JWTs and Authorization headers never reach the output."""
    for key in list(event_dict):
        event_dict[key] = _redact(event_dict[key], key)
    return event_dict


def configure_logging(level: int = logging.INFO) -> None:
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_secrets,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def get_logger(**context: Any) -> Any:
    return structlog.get_logger("ferry").bind(**context)
