"""The submit-time file check (``producers.files.inspect_path``): on Linux it opens the path once
(O_PATH) and reads the real path from /proc; everywhere its answers, refusals and their words are
those of the check by name (realpath, stat, open), which it falls back to where /proc is missing.
Also: the type sniff's shortcut changes no answer, and a batch on a local disk is inspected
without threads."""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import fakeredis
import filetype
import pytest
from PIL import Image

from producers import files
from producers import submit as submit_module
from producers.client import Ferry, JobRequest
from producers.config import parse_config
from producers.errors import SubmitError
from producers.files import FileRule, _inspect_by_name, inspect_path, sniff_mime

PDF = b"%PDF-1.4\n" + b"x" * 200 + b"\n%%EOF\n"


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height)).save(out, "PNG")
    return out.getvalue()


PNG_3x2 = png(3, 2)
ANY = FileRule()
IMAGE = FileRule(image=True)
ON_LINUX = pytest.mark.skipif(not files._PROC_FD, reason="the /proc way is Linux's")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "doc.pdf").write_bytes(PDF)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "secret.pdf").write_bytes(PDF)
    return tmp_path / "root"


def both(path: str | Path, roots: tuple[str, ...], rule: FileRule = ANY) -> tuple[object, list[str]]:
    """``inspect_path``'s answer, checked equal to the check by name's."""
    fast = inspect_path(str(path), rule, roots)
    slow = _inspect_by_name(str(path), rule, roots)
    assert fast == slow
    info, problems = fast
    return info, [p.message for p in problems]


def test_a_regular_file_inside_the_roots(root: Path) -> None:
    info, problems = both(root / "doc.pdf", (str(root),))
    assert problems == []
    assert info == files.FileInfo(path=str((root / "doc.pdf").resolve()), name="doc.pdf", size=len(PDF),
                                  mime_type="application/pdf")


def test_relative_paths_and_dot_dots_resolve_as_before(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(root)
    assert both("doc.pdf", (str(root),))[1] == []
    assert both(f"../{root.name}/./doc.pdf", (str(root),))[1] == []
    path = f"../{root.name}/../elsewhere/secret.pdf"
    assert both(path, (str(root),))[1] == [f"{path} is outside the allowed roots ({root})"]


def test_missing_directory_and_fifo_are_no_file(root: Path) -> None:
    os.mkfifo(root / "pipe")
    (root / "folder").mkdir()
    for name in ("missing.pdf", "folder", "pipe"):
        assert both(root / name, (str(root),)) == (None, [f"no such file: {root / name}"])


def test_a_fifo_does_not_hang_submit(root: Path) -> None:
    """Nobody writes to the FIFO: an open for reading without O_NONBLOCK (or O_PATH) would wait
    for ever. Checked on a thread so a regression fails instead of hanging the run."""
    os.mkfifo(root / "pipe")
    config = parse_config({"connections": {"acme": {
        "service": "atlassian", "site_url": "https://acme.example", "api_url": "https://api.example",
        "email": "a@b.c", "token_env": "X"}}, "files": {"roots": [str(root)]}})
    ferry = Ferry(config=config, redis_client=fakeredis.FakeRedis(decode_responses=True))
    refused: list[SubmitError] = []

    def submit() -> None:
        try:
            ferry.submit("assets-attachment", connection="acme", file=str(root / "pipe"), params={"object": "1"})
        except SubmitError as exc:
            refused.append(exc)

    thread = threading.Thread(target=submit, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "submitting a FIFO hung"
    assert [p.message for p in refused[0].problems] == [f"no such file: {root / 'pipe'}"]


def test_a_device_outside_the_roots_is_refused_as_outside(root: Path) -> None:
    assert both("/dev/zero", (str(root),))[1] == [f"/dev/zero is outside the allowed roots ({root})"]


def test_outside_and_symlinks_escaping_the_roots(root: Path) -> None:
    elsewhere = root.parent / "elsewhere" / "secret.pdf"
    (root / "escape.pdf").symlink_to(elsewhere)
    (root / "inner.pdf").symlink_to(root / "doc.pdf")
    (root / "dangling.pdf").symlink_to(root / "gone.pdf")
    roots = (str(root),)
    assert both(elsewhere, roots)[1] == [f"{elsewhere} is outside the allowed roots ({root})"]
    assert both(root / "escape.pdf", roots)[1] == [f"{root / 'escape.pdf'} is outside the allowed roots ({root})"]
    info, problems = both(root / "inner.pdf", roots)
    assert problems == [] and getattr(info, "path", None) == str((root / "doc.pdf").resolve())
    assert both(root / "dangling.pdf", roots) == (None, [f"no such file: {root / 'dangling.pdf'}"])
    # A prefix of the name is not a parent: /…/root-evil is not under /…/root.
    (root.parent / f"{root.name}-evil").mkdir()
    (root.parent / f"{root.name}-evil" / "doc.pdf").write_bytes(PDF)
    assert "outside the allowed roots" in both(root.parent / f"{root.name}-evil" / "doc.pdf", roots)[1][0]
    # No roots configured: anything readable passes (the HTTP API refuses paths without roots).
    assert both(elsewhere, ())[1] == []


def test_the_root_itself_and_slash_as_a_root(root: Path) -> None:
    assert both(root / "doc.pdf", ("/",))[1] == []
    assert both(root, (str(root),)) == (None, [f"no such file: {root}"])


def test_a_root_that_is_a_symlink_retargeted_at_runtime(root: Path, tmp_path: Path) -> None:
    """Roots are resolved once per roots tuple; a refusal is always decided on freshly resolved
    roots, so a root's link swapped to another folder never refuses a file wrongly."""
    link = tmp_path / "current"
    link.symlink_to(root)
    roots = (str(link),)
    assert both(link / "doc.pdf", roots)[1] == []
    link.unlink()
    link.symlink_to(tmp_path / "elsewhere")
    assert both(link / "secret.pdf", roots)[1] == []
    assert "outside the allowed roots" in both(root / "doc.pdf", roots)[1][0]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file(root: Path) -> None:
    (root / "doc.pdf").chmod(0)
    assert both(root / "doc.pdf", (str(root),)) == (None, [f"not readable: {root / 'doc.pdf'}"])


@ON_LINUX
def test_an_unreadable_file_said_so_by_the_reopen(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As root every file opens; the refusal of the /proc reopen stands in for a mode-0 file."""
    real_open = os.open

    def refusing(path: str, flags: int, *args: int) -> int:
        if str(path).startswith("/proc/self/fd/"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args)

    monkeypatch.setattr(files.os, "open", refusing)
    assert inspect_path(str(root / "doc.pdf"), ANY, (str(root),))[1][0].message == f"not readable: {root / 'doc.pdf'}"


def test_bad_path_text_is_still_the_callers_to_word(root: Path) -> None:
    with pytest.raises(ValueError):
        inspect_path("doc\0.pdf", ANY, (str(root),))


@ON_LINUX
def test_no_descriptor_is_left_open(root: Path) -> None:
    os.mkfifo(root / "pipe")
    before = len(os.listdir("/proc/self/fd"))
    for name in ("doc.pdf", "pipe", "missing", "."):
        inspect_path(str(root / name), IMAGE, (str(root),))
        inspect_path(str(root / name), ANY, ("/nowhere",))
    assert len(os.listdir("/proc/self/fd")) == before


def test_without_proc_the_name_way_answers(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "_PROC_FD", False)
    assert inspect_path(str(root / "doc.pdf"), ANY, (str(root),)) == _inspect_by_name(str(root / "doc.pdf"), ANY,
                                                                                      (str(root),))


def test_image_dimensions_from_the_open_file(root: Path) -> None:
    (root / "a.png").write_bytes(PNG_3x2)
    info, problems = both(root / "a.png", (str(root),), IMAGE)
    assert problems == [] and (getattr(info, "width", None), getattr(info, "height", None)) == (3, 2)
    info, _ = both(root / "doc.pdf", (str(root),), IMAGE)
    assert getattr(info, "width", 0) is None


def test_a_head_longer_than_the_sniff_window_is_cut_at_it(root: Path) -> None:
    (root / "big.bin").write_bytes(b"\x00" * (files.SNIFF_BYTES * 3))
    info, _ = both(root / "big.bin", (str(root),))
    assert getattr(info, "size", None) == files.SNIFF_BYTES * 3


@pytest.mark.parametrize("head", [
    b"PK\x03\x04" + b"\x00" * 26 + b"[Content_Types].xml" + b"\x00" * 100 + b"PK\x03\x04" + b"\x00" * 26 + b"word/",
    b"PK\x03\x04" + b"\x00" * 26 + b"mimetypeapplication/vnd.oasis.opendocument.text",
    b"PK\x03\x04" + b"\x00" * 100,
    b"\x1a\x45\xdf\xa3" + b"\x00" * 20 + b"\x42\x82\x84webm",
    b"\x1a\x45\xdf\xa3" + b"\x00" * 20 + b"\x42\x82\x88matroska",
    b"\x1a\x45\xdf\xa3" + b"\x00" * 40,
    b"xx PK\x03\x04 and \x42\x82\x84webm later",
    PDF, PNG_3x2, b"", b"plain text", os.urandom(8192), b"\xff\xd8\xff" + os.urandom(100),
])
def test_the_sniff_shortcut_changes_no_answer(head: bytes) -> None:
    expected = filetype.guess(head) if head else None
    assert filetype.match(head, files._matchers_for(head)) is expected
    if expected is not None:
        assert sniff_mime(head, "x") == expected.mime


# ---- a batch's files: inline on a local disk, threads when the disk waits -----------------------
@pytest.fixture
def ferry(root: Path) -> Iterator[Ferry]:
    for n in range(submit_module.FILE_THREADS_FROM * 2):
        (root / f"doc-{n}.pdf").write_bytes(PDF)
    config = parse_config({"connections": {"acme": {
        "service": "atlassian", "site_url": "https://acme.example", "api_url": "https://api.example",
        "email": "a@b.c", "token_env": "X"}}, "files": {"roots": [str(root)]}})
    yield Ferry(config=config, redis_client=fakeredis.FakeRedis(decode_responses=True))


def batch(root: Path) -> list[JobRequest]:
    return [JobRequest(kind="assets-attachment", connection="acme", file=str(root / f"doc-{n}.pdf"),
                       params={"object": "1"}) for n in range(submit_module.FILE_THREADS_FROM * 2)]


def inspecting_threads(ferry: Ferry, root: Path) -> set[str]:
    names: set[str] = set()
    real = submit_module.inspect_path

    def noting(path: str, rule: FileRule, roots: tuple[str, ...]):  # type: ignore[no-untyped-def]
        names.add(threading.current_thread().name)
        return real(path, rule, roots)

    submit_module.inspect_path = noting  # type: ignore[assignment]
    try:
        outcomes = ferry._validate_many(batch(root), require_file_roots=False)
    finally:
        submit_module.inspect_path = real
    assert not any(isinstance(o, SubmitError) for o in outcomes)
    return names


def test_a_batch_on_a_local_disk_is_inspected_without_threads(ferry: Ferry, root: Path) -> None:
    assert inspecting_threads(ferry, root) == {threading.current_thread().name}


@ON_LINUX
def test_a_batch_on_a_slow_disk_is_inspected_on_threads(ferry: Ferry, root: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    real = files.os.fstat

    def slow_fstat(fd: int) -> os.stat_result:  # a network disk's round trip
        time.sleep(submit_module.SLOW_FILE_WAIT * 2)
        return real(fd)

    monkeypatch.setattr(files.os, "fstat", slow_fstat)
    names = inspecting_threads(ferry, root)
    assert any(name.startswith("ferry-inspect") for name in names)
