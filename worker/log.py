"""One JSON object per line, from every process of a worker, with secrets redacted first.

structlog's events and every stdlib record (Celery's own, Python warnings) go through one handler
on the root logger, rendered by the same processors (``ProcessorFormatter``), and each line is
written with a single ``write()``: lines from the main process and its pool children never merge.
Context (job_id, kind, step, connection, attempt) is bound per step in ``worker.tasks``.
"""

from __future__ import annotations

import logging
import os
import re
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


class JsonLineHandler(logging.Handler):
    """Writes each formatted record as one line with one ``os.write()`` on a file descriptor:
    there is no Python buffer for a fork to copy or for a concurrent writer to split, so lines of
    the pool's processes never interleave (Linux appends each write to a file whole; on a pipe
    that holds for lines up to PIPE_BUF, 4 KiB)."""

    def __init__(self, fd: int = 2) -> None:
        super().__init__()
        self.fd = fd

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
            while data:  # a write cut short (a signal, a full pipe) goes on where it stopped
                data = data[os.write(self.fd, data):]
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        if self.fd > 2:  # a log file we opened; never the process's own stdio
            os.close(self.fd)
            self.fd = -1
        super().close()


def _add_pid(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Which process wrote the line: the main process or one of the pool's children."""
    event_dict["pid"] = os.getpid()
    return event_dict


# What every line gets, whether it started as a structlog event or as a stdlib record.
_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    _add_pid,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def configure_logging(level: int = logging.INFO, logfile: str | None = None) -> None:
    """Route this process's structlog events and stdlib records to one JSON-lines handler on the
    root logger: stderr, or ``logfile`` (opened for appending, so each line is added whole)."""
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *_SHARED,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.stdlib.BoundLogger,
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    fd = os.open(logfile, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640) if logfile else 2
    handler = JsonLineHandler(fd)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, redact_secrets,
                    structlog.processors.JSONRenderer()]))
    root = logging.getLogger()
    for old in root.handlers:
        old.close()
    root.handlers = [handler]
    root.setLevel(level)
    # Celery's own "Task … received" / "… succeeded in" lines repeat, with only a task id, what
    # Ferry's step lines say with the job, kind, step, connection, attempt and duration: two more
    # formatted lines per step for nothing. Its warnings and errors still come through.
    for name in _CELERY_PER_TASK:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    logging.captureWarnings(True)  # a warning is a log record too, not a plain-text line


_CELERY_PER_TASK = ("celery.worker.strategy", "celery.app.trace")


def get_logger(**context: Any) -> Any:
    return structlog.get_logger("ferry").bind(**context)
