"""Pure parts of Ferry's answers to the open readings: which media or Marketplace form to try,
how a media name travels, how an attachment record is recognised as this job's and what size it
shows."""

from __future__ import annotations

from typing import Any

import pytest

from worker.clients import marketplace
from worker.clients.assets import CLOCK_SKEW_SECONDS, WantedAttachment, record_size, shown_bytes, size_could_be
from worker.clients.media import FILE, form_order

SINCE = 1_800_000_000.0  # 2027-01-15T08:00:00Z
WANTED = WantedAttachment(media_id="m-1", filename="scan.pdf", size=1536, comment="signed", since=SINCE)


def record(**fields: Any) -> dict[str, Any]:
    """A Data Center shaped record (no mediaId) that matches WANTED unless told otherwise."""
    base = {"id": "7", "filename": "scan.pdf", "filesize": "1.5 kB", "comment": "signed",
            "created": "2027-01-15T08:00:05.000Z"}
    return {**base, **fields}


@pytest.mark.parametrize(("setting", "remembered", "order"), [
    ("auto", None, ("binary", "multipart")),  # Atlassian's own client's form first
    ("auto", "multipart", ("multipart", "binary")),
    ("auto", "nonsense", ("binary", "multipart")),
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


@pytest.mark.parametrize(("shown", "size"), [
    ("490 B", 490), ("3.8 kB", 3900), ("3.8 kB", 3850), ("1.2 MB", 1_250_000), ("1.2 MB", 1_258_291),
    ("1 GB", 1_073_741_824), (40000, 40000),
])
def test_a_shown_size_may_be_1024_or_1000_based(shown, size):
    assert size_could_be(shown, size)


@pytest.mark.parametrize(("shown", "size"), [("0 B", 40000), ("3.8 kB", 40000), ("41 kB", 40_000), (0, 40000)])
def test_a_size_outside_both_readings_is_another_size(shown, size):
    assert not size_could_be(shown, size)


def test_what_a_record_shows_as_its_size():
    assert record_size({"size": 12, "filesize": "1 kB"}) == 12
    assert record_size({"filesize": " 3.8 kB "}) == "3.8 kB"
    assert record_size({"filesize": "unknown"}) is None and record_size({}) is None
    assert (shown_bytes("0 B"), shown_bytes("3.8 kB"), shown_bytes(7)) == ("0", "3.8 kB", "7")


def test_an_unknown_size_does_not_decide_the_match():
    unknown = WantedAttachment(media_id="m-1", filename="scan.pdf", size=1536, comment="signed", since=SINCE,
                               size_known=False)
    assert unknown.matches(record(filesize="0 B")) and not WANTED.matches(record(filesize="0 B"))


@pytest.mark.parametrize(("kind", "remembered", "order"), [
    ("artifact", None, ("multipart", "binary")),
    ("artifact", "binary", ("binary", "multipart")),
    ("artifact", "raw", ("multipart", "binary")),  # not an artifact form: ignored
    ("image", None, ("raw", "multipart", "binary")),
    ("image", "binary", ("binary", "raw", "multipart")),
])
def test_marketplace_form_order(kind, remembered, order):
    assert marketplace.form_order(kind, remembered) == order


def test_after_a_415_the_form_it_names_comes_next_else_the_next_untried():
    image = ("raw", "multipart", "binary")
    assert marketplace.next_form(image, ["raw"], "Unsupported Media Type") == "multipart"
    assert marketplace.next_form(image, ["raw"], "send it as application/binary") == "binary"
    assert marketplace.next_form(image, ["raw", "multipart"], "expected multipart/form-data") == "binary"
    assert marketplace.next_form(("multipart", "binary"), ["multipart", "binary"], "") is None
