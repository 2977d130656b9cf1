"""Pure parts of Ferry's answers to the open readings: which media form to try, how a media
name travels, and how an attachment record is recognised as this job's."""

from __future__ import annotations

from typing import Any

import pytest

from worker.clients.assets import CLOCK_SKEW_SECONDS, WantedAttachment
from worker.clients.media import FILE, form_order

SINCE = 1_800_000_000.0  # 2027-01-15T08:00:00Z
WANTED = WantedAttachment(media_id="m-1", filename="scan.pdf", size=1536, comment="signed", since=SINCE)


def record(**fields: Any) -> dict[str, Any]:
    """A Data Center shaped record (no mediaId) that matches WANTED unless told otherwise."""
    base = {"id": "7", "filename": "scan.pdf", "filesize": "1.5 kB", "comment": "signed",
            "created": "2027-01-15T08:00:05.000Z"}
    return {**base, **fields}


@pytest.mark.parametrize(("setting", "remembered", "order"), [
    ("auto", None, ("multipart", "binary")),
    ("auto", "binary", ("binary", "multipart")),
    ("auto", "nonsense", ("multipart", "binary")),
    ("binary", None, ("binary",)),
    ("multipart", "binary", ("multipart",)),  # a pinned form ignores what was remembered
])
def test_form_order(setting, remembered, order):
    assert form_order(setting, remembered) == order


def test_media_names_are_percent_encoded_never_form_encoded():
    sent = FILE.path(query={"name": "my report+v2 (final).pdf"})
    assert sent.text == "/file?name=my%20report%2Bv2%20%28final%29.pdf"


def test_a_media_id_decides_when_the_record_has_one():
    assert WANTED.matches({"mediaId": "m-1", "filename": "other.pdf"})
    assert not WANTED.matches(record(mediaId="m-2"))


@pytest.mark.parametrize("size", ["1.5 kB", "1.5 KB", "1536 B", 1536, "1.53 kB", "2 kB"])
def test_sizes_as_shown_by_the_service(size):
    assert WANTED.matches(record(filesize=size))


@pytest.mark.parametrize("size", ["1.7 kB", "1535 B", 1537, "3 kB"])
def test_another_size_is_another_file(size):
    assert not WANTED.matches(record(filesize=size))


def test_filename_and_comment_must_be_equal():
    assert not WANTED.matches(record(filename="scan (1).pdf"))
    assert not WANTED.matches(record(comment=""))


def test_only_records_created_since_the_first_attempt_less_clock_skew():
    assert WANTED.matches(record(created="2027-01-15T07:59:30Z"))  # within the skew
    assert CLOCK_SKEW_SECONDS < 65
    assert not WANTED.matches(record(created="2027-01-15T07:58:55Z"))  # 65 s before: an older copy
    assert not WANTED.matches(record(created="2027-01-15T09:58:55+02:00"))
    assert WANTED.matches(record(created="15/Jan/27 8:00 AM"))  # unreadable: name, size, comment decide


def test_the_newest_match_is_chosen():
    assert WANTED.find([record(id="1"), record(id="2", comment="x"), record(id="3")]) == record(id="3")
    assert WANTED.find([record(comment="x")]) is None
