"""No token, JWT or Authorization header reaches a log line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from worker.log import configure_logging, get_logger, redact_secrets, redact_text

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJjbGllbnQifQ.c2lnbmF0dXJl"


def test_secret_keys_are_redacted_whatever_their_value():
    event = redact_secrets(None, "info", {"event": "x", "token": "abc", "mediaJwtToken": JWT,
                                          "headers": {"Authorization": "Basic Zm9vOmJhcg=="}})
    assert event["token"] == event["mediaJwtToken"] == "[redacted]"
    assert event["headers"]["Authorization"] == "[redacted]"


def test_secrets_inside_free_text_are_redacted():
    text = redact_text(f"sent Authorization: Bearer {JWT} to https://me:s3cret@host/x and jwt {JWT}")
    assert JWT not in text and "s3cret" not in text
    assert "Bearer [redacted]" in text


def test_rendered_log_line_has_no_secret():
    buf = io.StringIO()
    logger = structlog.wrap_logger(structlog.PrintLogger(buf), processors=[
        redact_secrets, structlog.processors.JSONRenderer()])
    logger.info("upload failed", error=f"401 for Bearer {JWT}", job_id="j1")
    line = json.loads(buf.getvalue())
    assert JWT not in buf.getvalue() and line["job_id"] == "j1"


@pytest.fixture
def json_log(tmp_path: Path) -> Iterator[Path]:
    """The worker's logging set up to write into a file; this process's logging restored after."""
    root = logging.getLogger()
    saved_handlers, saved_level, saved_structlog = root.handlers[:], root.level, structlog.get_config()
    path = tmp_path / "worker.log"
    configure_logging(logging.INFO, str(path))
    yield path
    for handler in root.handlers:
        handler.close()
    root.handlers = saved_handlers
    root.setLevel(saved_level)
    structlog.configure(**saved_structlog)
    logging.captureWarnings(False)


def test_every_record_is_one_redacted_json_line_whoever_logged_it(json_log: Path) -> None:
    get_logger(job_id="j1").info("credentials fetched", token="abc", detail=f"Bearer {JWT}")
    logging.getLogger("celery.worker").warning("sent Authorization: Bearer %s", JWT)
    try:
        raise RuntimeError(f"multi\nline\nfailure with jwt {JWT}")
    except RuntimeError:
        logging.getLogger("celery.app.trace").exception("task crashed")

    text = json_log.read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert [line["logger"] for line in lines] == ["ferry", "celery.worker", "celery.app.trace"]
    assert lines[0]["token"] == "[redacted]" and lines[0]["job_id"] == "j1"
    assert lines[1]["event"] == "sent Authorization: Bearer [redacted]"
    assert "RuntimeError" in lines[2]["exception"]  # the traceback stays inside its line
    assert JWT not in text
