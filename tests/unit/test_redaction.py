"""No token, JWT or Authorization header reaches a log line."""

from __future__ import annotations

import io
import json

import structlog

from worker.log import redact_secrets, redact_text

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
