"""The dashboard in real headless Chromium (Debian's ``chromium`` driven by Playwright through
``executable_path``; nothing is downloaded), over the real API server, Redis, worker and sandbox.

Skipped when ``/usr/bin/chromium`` is missing, unless ``CI=true``: then it fails, because CI
must run it. ``FERRY_DASHBOARD_SCREENSHOT=docs/dashboard.png`` also saves the README screenshot.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from producers.client import Ferry
from tests.fixtures.api import LiveApi
from tests.integration.helpers import png
from tests.integration.test_replay import API_TOKEN, LINK_FAULT, document, wait_until

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Our own Playwright for this module only (not pytest-playwright's session-wide one, whose
    event loop would stay running and break later tests that call ``asyncio.run``)."""
    if not Path(CHROMIUM).exists():
        message = f"Debian's chromium is not installed ({CHROMIUM}): apt-get install chromium"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        yield browser
        browser.close()


@pytest.fixture
def tab(chromium: Browser) -> Iterator[Page]:
    context = chromium.new_context(viewport={"width": 1440, "height": 900})
    yield context.new_page()
    context.close()


@pytest.fixture
def live_api(ferry: Ferry) -> Iterator[LiveApi]:
    with LiveApi(ferry, tokens=[API_TOKEN]) as server:
        yield server


def seed_jobs(ferry: Ferry, sandbox: Any, tmp_path: Path) -> str:
    """A few real jobs of both Assets kinds: most succeed, two fail. Returns the id of the
    attachment that failed at its link step (a one-time sandbox fault)."""
    seed = sandbox.seed()
    doc, image = document(tmp_path), png(tmp_path / "logo.png")
    attach = {"object": seed["object_id"], "comment": "scan"}
    avatar = {"object_type": seed["object_type_id"], "object": seed["object_id"]}
    ids = [ferry.submit("assets-attachment", connection="acme", file=str(doc), params=attach).id
           for _ in range(4)]
    ids += [ferry.submit("assets-avatar", connection="acme", file=str(image), params=avatar).id
            for _ in range(2)]
    for job_id in ids:
        ferry.wait(job_id, timeout=60)
    sandbox.add_fault(**LINK_FAULT, times=1)
    failing = ferry.submit("assets-attachment", connection="acme", file=str(doc), params=attach)
    assert ferry.wait(failing.id, timeout=60).status == "failed"
    broken = ferry.submit("assets-avatar", connection="acme", file=str(image),
                          params={"object_type": "999999", "object": "424242"})
    assert ferry.wait(broken.id, timeout=60).status == "failed"
    return failing.id


def test_filter_open_replay_and_see_it_succeed(tab: Page, ferry, sandbox, live_api, tmp_path):
    page = tab
    failed_id = seed_jobs(ferry, sandbox, tmp_path)

    page.goto(live_api.url + "/")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.fill('input[name="token"]', API_TOKEN)
    page.click('button[type="submit"]')
    expect(page.locator("#rows tr.row")).to_have_count(8)
    expect(page.locator(".count.s-failed b")).to_have_text("2")

    page.select_option("#f-status", "failed")
    page.click("#apply")
    expect(page).to_have_url(re.compile(r"status=failed"))
    expect(page.locator("#rows tr.row")).to_have_count(2)
    expect(page.locator("#rows tr.row.s-failed")).to_have_count(2)

    page.click(f'a[href="/ui/job/{failed_id}"]')
    expect(page.locator("#job-id")).to_have_text(failed_id)
    expect(page.locator(".job-head .badge").first).to_have_text("failed")
    expect(page.locator('li.step[data-step="link_attachment"] .http')).to_have_text("HTTP 400")

    page.click("#replay")
    # No reload: the page polls and redraws itself.
    expect(page.locator(".job-head .badge").first).to_have_text("succeeded", timeout=30_000)
    expect(page.locator('li.step[data-step="media_upload"] .badge')).to_have_text("reused")
    expect(page.locator("table.runs tbody tr")).to_have_count(2)
    expect(page.locator("table.runs tbody tr").first).to_contain_text("dashboard (token #")
    assert ferry.status(failed_id).status == "succeeded"

    page.goto(live_api.url + "/")
    expect(page.locator(".count.s-failed b")).to_have_text("1")
    expect(page.locator(".count.s-succeeded b")).to_have_text("7")
    shot = Path(os.environ.get("FERRY_DASHBOARD_SCREENSHOT") or tmp_path / "dashboard.png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    assert page.screenshot(path=str(shot), full_page=True)[:8] == b"\x89PNG\r\n\x1a\n"


def test_bulk_replay_by_filter_shows_the_dry_run_count_first(tab: Page, ferry, sandbox, live_api,
                                                             tmp_path):
    page = tab
    seed = sandbox.seed()
    sandbox.add_fault(**LINK_FAULT, times=3)
    doc = document(tmp_path)
    ids = [ferry.submit("assets-attachment", connection="acme", file=str(doc),
                        params={"object": seed["object_id"]}).id for _ in range(3)]
    for job_id in ids:
        assert ferry.wait(job_id, timeout=60).status == "failed"

    page.goto(live_api.url + "/login")
    page.fill('input[name="token"]', API_TOKEN)
    page.click('button[type="submit"]')
    page.goto(live_api.url + "/?status=failed&error_step=link_attachment")
    expect(page.locator("#rows tr.row")).to_have_count(3)
    page.click("#replay-matching")
    expect(page.locator("#bulk-message")).to_contain_text("3 job(s) match")
    assert all(ferry.status(i).status == "failed" for i in ids)  # nothing before confirming
    page.click("#bulk-confirm")
    expect(page.locator("#bulk-message")).to_contain_text("Replaying 3 job(s)")
    # The replays go out in the background at the default rate: wait for each job's second run.
    for job_id in ids:
        wait_until(lambda j=job_id: len(ferry.status(j).runs) == 2 and ferry.status(j).done,
                   60, f"job {job_id} replayed")
        assert ferry.status(job_id).status == "succeeded"
    expect(page.locator("#rows tr.row")).to_have_count(0, timeout=10_000)


HOSTILE = "<script>window.pwned=1<img src=x onerror=window.pwned=2>"  # no "/": it names a file


def test_markup_in_a_file_name_and_a_destination_error_shows_as_text(tab: Page, ferry, sandbox,
                                                                     live_api, tmp_path):
    """A file name and the destination's error message are the page's two ways in for someone
    else's text; the templates escape both, so they show as text and nothing runs."""
    image = png(tmp_path / f"{HOSTILE}.png")
    # A job's parameters cannot carry it (each is one URL path segment), so the destination says it.
    sandbox.add_fault(path=r"^/api/v1/files/images/", status=400, message=f"no user {HOSTILE}", times=1)
    job = ferry.submit("awork-image", connection="awork", file=str(image),
                       params={"entity": "users", "id": "u1"})
    failed = ferry.wait(job.id, timeout=60)
    assert failed.status == "failed" and failed.error is not None and "<script>" in failed.error.message

    page = tab
    page.goto(live_api.url + "/login")
    page.fill('input[name="token"]', API_TOKEN)
    page.click('button[type="submit"]')
    page.goto(f"{live_api.url}/ui/job/{job.id}")
    expect(page.locator(".failure .msg")).to_contain_text(HOSTILE)
    expect(page.locator("#job")).to_contain_text(f"{HOSTILE}.png")
    page.goto(live_api.url + "/?status=failed")
    expect(page.locator(f'#rows tr[data-id="{job.id}"] .why')).to_contain_text(HOSTILE)
    page.wait_for_timeout(2500)  # one poll of the fragments, which redraw the rows
    expect(page.locator(f'#rows tr[data-id="{job.id}"] .why')).to_contain_text(HOSTILE)
    assert page.locator("img[src=x]").count() == 0
    assert page.evaluate("window.pwned") is None
