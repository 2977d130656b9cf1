"""Hostile input, on the worker side: a real worker with its own ferry.toml (``[files] roots``,
no private URLs) and the sandbox. Whatever a producer accepted (a looser config, or a file that
changed after submit), the worker checks the file and the URL against its OWN rules just before
it uses them, and refuses for good, having sent nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from producers.client import Ferry
from producers.config import load_config
from producers.errors import SubmitError
from producers.kinds import AWORK_MAX_BYTES
from producers.records import JobRecord, JobStatus, StepStatus
from sandbox.testing import SandboxControl
from tests.fixtures.worker import SANDBOX_URIS, FerryEnv, own_worker, write_config
from tests.integration.helpers import png

CREDENTIALS = "/attachments/object/.*/credentials"
PDF = b"%PDF-1.4\n" + b"x" * 2000 + b"\n%%EOF\n"


@dataclass
class Setup:
    env: FerryEnv  # the worker's own config: roots = [root], http allowed, private hosts not
    root: Path
    strict: Ferry  # a producer with the worker's config
    loose: Ferry  # a producer with no roots and every URL allowed
    default_config: Path  # no [files] table at all


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, sandbox_server: Any) -> Iterator[Setup]:
    home = tmp_path_factory.mktemp("hostile")
    root = home / "uploads"
    root.mkdir()
    control = sandbox_server.control()
    files = {"roots": [str(root)], "allow_http_uris": True}
    with own_worker(home, control, files=files) as (env, _):
        loose = write_config(home / "loose.toml", control.url, control.email, files=SANDBOX_URIS)
        default = write_config(home / "default.toml", control.url, control.email)
        strict, lax = env.ferry(), Ferry(env.location.url, config=load_config(loose))
        yield Setup(env, root, strict, lax, default)
        strict.close()
        lax.close()


def attach(ferry: Ferry, sandbox: SandboxControl, path: Path) -> JobRecord:
    return ferry.submit("assets-attachment", connection="acme", file=str(path),
                        params={"object": sandbox.seed()["object_id"]})


def swapped_after_submit(setup: Setup, sandbox: SandboxControl, path: Path,
                         swap: Callable[[Path], None]) -> JobRecord:
    """Submit an attachment of ``path`` (a regular file inside the roots: the producer accepts
    it), hold its first step with a 503 until it waits for a retry, then ``swap`` the file and
    let the job run on to the upload step, which opens it."""
    sandbox.add_fault(path=CREDENTIALS, status=503, retry_after=1)
    job = attach(setup.strict, sandbox, path)
    wait_for(lambda: setup.strict.status(job.id).step("get_credentials").status == StepStatus.RETRYING)
    swap(path)
    sandbox.clear_faults()
    return setup.strict.wait(job.id, timeout=60)


def wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def refused_at_upload(job: JobRecord, sandbox: SandboxControl, words: str) -> None:
    """Failed for good at the upload step with ``words``, and no byte went to the media service."""
    assert job.status == JobStatus.FAILED and job.error is not None, job
    assert job.error.step == "media_upload" and not job.error.retryable, job.error
    assert words in job.error.message, job.error.message
    assert sandbox.requests(path_contains="/media/file") == []


def pdf_in(folder: Path, name: str = "report.pdf") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(PDF)
    return path


def replace_with_link_to_passwd(path: Path) -> None:
    path.unlink()
    path.symlink_to("/etc/passwd")


def replace_with_directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


def replace_with_fifo(path: Path) -> None:  # opening a FIFO for reading would block: it must not
    path.unlink()
    os.mkfifo(path)


def replace_folder_with_link(target: str) -> Callable[[Path], None]:
    """The file's folder becomes a link to ``target``: the file's name now leads there."""
    def swap(path: Path) -> None:
        path.unlink()
        path.parent.rmdir()
        path.parent.symlink_to(target)
    return swap


# ---- files ---------------------------------------------------------------------------------------
def test_a_link_to_etc_passwd_swapped_in_after_submit_is_not_followed(setup, sandbox, tmp_path):
    job = swapped_after_submit(setup, sandbox, pdf_in(setup.root / tmp_path.name),
                               replace_with_link_to_passwd)
    refused_at_upload(job, sandbox, "symbolic link")


def test_a_folder_swapped_for_a_link_to_etc_leads_outside_the_roots(setup, sandbox, tmp_path):
    """The last component is a regular file (O_NOFOLLOW passes): where it really is decides."""
    path = pdf_in(setup.root / tmp_path.name / "etc", "passwd")
    job = swapped_after_submit(setup, sandbox, path, replace_folder_with_link("/etc"))
    refused_at_upload(job, sandbox, "file is outside the worker's roots")


@pytest.mark.parametrize("swap", [replace_with_directory, replace_with_fifo,
                                  replace_folder_with_link("/dev")],
                         ids=["directory", "fifo", "device"])
def test_what_is_not_a_regular_file_is_refused(setup, sandbox, tmp_path, swap):
    path = pdf_in(setup.root / tmp_path.name / "dev", "null")  # after the device swap: /dev/null
    refused_at_upload(swapped_after_submit(setup, sandbox, path, swap), sandbox, "not a regular file")


def test_a_file_outside_the_workers_roots_is_refused_though_a_looser_producer_took_it(
        setup, sandbox, tmp_path):
    outside = pdf_in(tmp_path / "elsewhere")
    job = setup.loose.wait(attach(setup.loose, sandbox, outside).id, timeout=60)
    refused_at_upload(job, sandbox, "file is outside the worker's roots")


def test_the_same_file_inside_the_roots_goes_through(setup, sandbox, tmp_path):
    job = setup.strict.wait(attach(setup.strict, sandbox, pdf_in(setup.root / tmp_path.name)).id,
                            timeout=60)
    assert job.status == JobStatus.SUCCEEDED, job.error


# ---- the file's type and size, as it is when it is sent -----------------------------------------------
def changed_while_paused(setup: Setup, sandbox: SandboxControl, path: Path,
                         change: Callable[[Path], None]) -> JobRecord:
    """Submit an awork image of ``path`` while awork is paused (its step parks, nothing is
    sent), ``change`` the file, resume, and wait for the job to end."""
    setup.strict.pause("awork", by="test")
    try:
        job = setup.strict.submit("awork-image", connection="awork", file=str(path),
                                  params={"entity": "users", "id": sandbox.seed()["awork"]["users"]})
        wait_for(lambda: parked(setup) == 1)
        change(path)
    finally:
        setup.strict.resume("awork", by="test")
    return setup.strict.wait(job.id, timeout=60)


def parked(setup: Setup) -> int:
    return int(next(c["parked"] for c in setup.strict.connections() if c["name"] == "awork"))


def refused_before_sending(job: JobRecord, sandbox: SandboxControl, words: str) -> None:
    assert job.status == JobStatus.FAILED and job.error is not None, job
    assert job.error.step == "upload_profile_image" and not job.error.retryable, job.error
    assert "the file changed after submit" in job.error.message and words in job.error.message, job.error
    assert sandbox.requests(path_contains="/files/images/") == []


def test_an_image_swapped_for_a_text_file_after_submit_is_refused_before_sending(setup, sandbox, tmp_path):
    """It once went up under the type sniffed at submit."""
    image = png(setup.root / f"{tmp_path.name}.png")
    job = changed_while_paused(setup, sandbox, image, lambda path: path.write_text("not an image\n" * 100))
    refused_before_sending(job, sandbox, "is application/octet-stream; accepted: image/png")


def test_an_image_grown_past_awork_s_limit_after_submit_is_refused_without_reading_it(setup, sandbox, tmp_path):
    """It once went to awork past its 100 MB cap. The file is sparse: nothing reads 100 MB."""
    image = png(setup.root / f"{tmp_path.name}.png")
    job = changed_while_paused(setup, sandbox, image, lambda path: os.truncate(path, AWORK_MAX_BYTES + 1))
    refused_before_sending(job, sandbox, f"is {AWORK_MAX_BYTES + 1} bytes; the limit is {AWORK_MAX_BYTES} bytes")


@pytest.mark.parametrize("path", ["/dev/null", "/etc"])
def test_a_device_or_a_directory_is_refused_at_submit(setup, path):
    with pytest.raises(SubmitError) as refused:
        setup.loose.validate("assets-attachment", connection="acme", file=path, params={"object": "1"})
    assert [p.field for p in refused.value.problems] == ["file"]


# ---- URLs ----------------------------------------------------------------------------------------
def submit_cli(config: Path, env: FerryEnv, uri: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "producers", "submit", "marketplace-artifact", "-c", "marketplace",
         "--uri", uri], env={**env.env, "FERRY_CONFIG": str(config)},
        capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("uri", "words"), [
    ("https://127.0.0.1:9/plugin.jar", "loopback"),
    ("https://169.254.169.254/latest/plugin.jar", "metadata"),
    ("https://[::ffff:10.0.0.1]/plugin.jar", "private"),
    ("http://93.184.216.34/plugin.jar", "allow_http_uris"),
])
def test_the_default_config_refuses_private_and_plain_http_urls_at_submit(setup, uri, words):
    done = submit_cli(setup.default_config, setup.env, uri)
    assert done.returncode == 2 and "uri:" in done.stderr and words in done.stderr, done.stderr


def test_the_worker_refuses_a_private_url_a_permissive_producer_accepted(setup, sandbox):
    uri = f"{sandbox.url}/plugin.jar"  # the sandbox: plain http on loopback
    job = setup.loose.submit("marketplace-artifact", connection="marketplace", uri=uri)
    done = setup.loose.wait(job.id, timeout=60)
    assert done.status == JobStatus.FAILED and done.error is not None, done
    assert done.error.step == "upload_artifact" and not done.error.retryable
    assert "loopback" in done.error.message and "allow_private_uris" in done.error.message
    assert sandbox.requests(path_contains="/artifact/fetch") == []  # never handed to Marketplace
