"""The archive's pure parts: a record written back into a hash reads back the same
(``codec.encode``, what a replay of an archived job restores), the archive's row of a record, the
``error`` filter, and which archive a configuration means."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from producers.archive import archive_url
from producers.archive.store import engine_url, row_of
from producers.config import parse_config
from producers.records import JobRecord, StepError
from producers.store import Filters, codec
from producers.store.selection import _error_matches

RECORD = {
    "id": "a" * 32, "kind": "assets-attachment", "connection": "acme", "status": "failed",
    "created_at": "2026-03-01T10:00:00.000Z", "updated_at": "2026-03-01T10:00:05.000Z",
    "finished_at": "2026-03-01T10:00:05.000Z", "params": {"object": "88"}, "idempotency_key": "scan-88",
    "file": {"path": "/data/march-scan.pdf", "name": "march-scan.pdf", "size": 3, "mime_type": "application/pdf"},
    "steps": [{"name": "get_credentials", "status": "succeeded", "attempts": 1, "result": {"ok": 1},
               "history": [{"run": 1, "number": 1, "started_at": "2026-03-01T10:00:00.000Z",
                            "finished_at": "2026-03-01T10:00:01.000Z", "status": "succeeded"}]},
              {"name": "media_upload", "status": "succeeded", "attempts": 2,
               "progress": {"bytes_sent": 3, "bytes_total": 3, "updated_at": "2026-03-01T10:00:02.000Z"}},
              {"name": "link_attachment", "status": "failed", "attempts": 1,
               "error": {"step": "link_attachment", "status": 400, "message": "Object 88 has no attachments"}}],
    "error": {"step": "link_attachment", "status": 400, "message": "Object 88 has no attachments",
              "at": "2026-03-01T10:00:05.000Z"},
    "runs": [{"number": 1, "trigger": "submit", "from_step": "get_credentials",
              "started_at": "2026-03-01T10:00:00.000Z", "outcome": "failed"}],
    "callback_url": "https://hooks.example/x", "batch": "b1",
    "notifications": [{"id": "d1", "event": "job.failed", "run": 1, "created_at": "2026-03-01T10:00:05.000Z",
                       "status": "delivered", "attempts": 1}],
}


def test_an_archived_record_written_back_reads_the_same() -> None:
    record = JobRecord.model_validate({**RECORD, "tenant": "t1", "priority": "high"})
    fields = codec.encode({**record.model_dump(mode="json"), "_score": 42})
    assert codec.decode(fields, record.id) == record
    assert JobRecord.model_validate(codec.as_json(fields, record.id)) == record  # the archiver's fast path
    assert codec.as_json(fields, record.id)["tenant"] == "t1"
    assert json.loads(fields[codec.META])["tenant"] == "t1" and fields[codec.SCORE] == "42"


def test_the_row_keeps_the_whole_record_and_the_columns_lists_filter_by() -> None:
    record = JobRecord.model_validate({**RECORD, "tenant": "t1", "priority": "high"})
    row = row_of(record.model_dump(mode="json"), 42)
    assert (row["status"], row["error_step"], row["error_status"], row["file_name"], row["tenant"]) == \
        ("failed", "link_attachment", 400, "march-scan.pdf", "t1")
    assert JobRecord.model_validate_json(row["record"]) == record
    assert json.loads(row["record"])["priority"] == "high"


def test_the_error_filter_matches_a_fragment_of_the_message_in_any_case() -> None:
    filters = Filters.parse({"error": "NO ATTACH"})
    error = StepError(step="link_attachment", status=400, message="Object 88 has no attachments")
    assert filters.error == "NO ATTACH" and filters.reads_errors
    assert _error_matches(error.model_dump_json(), filters)
    assert not _error_matches(error.model_dump_json(), Filters(error="rate limit"))


@pytest.mark.parametrize(("table", "embedded", "expected"), [
    ({}, True, "sqlite:///HOME/archive.sqlite3"),
    ({}, False, None),
    ({"url": "postgresql://db/ferry"}, False, "postgresql://db/ferry"),
    ({"url": "off"}, True, None),
])
def test_which_archive_a_configuration_means(table: dict[str, str], embedded: bool, expected: str | None,
                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRY_HOME", str(tmp_path))
    config = parse_config({"archive": table} if table else {})
    found = archive_url(config, embedded=embedded)
    assert found == (expected.replace("HOME", str(tmp_path)) if expected else None)


def test_postgresql_urls_use_psycopg_3() -> None:
    assert engine_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert engine_url("sqlite:///x") == "sqlite:///x"
