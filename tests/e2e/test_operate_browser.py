"""The operator's panels in real headless Chromium, over the real API server, Redis, prefork
worker and sandbox: pause a connection and see its jobs wait, cancel one, resume and see the
other finish; cancel by filter after the dry-run count; search by id, key or file name.

``FERRY_OPERATE_SCREENSHOT=docs/operate.png`` also saves the README screenshot.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from producers import keys
from tests.e2e.test_dashboard_browser import chromium, live_api, tab  # noqa: F401 - fixtures
from tests.integration.test_replay import API_TOKEN, document

pytestmark = pytest.mark.browser


def log_in(page: Page, url: str) -> None:
    page.goto(url + "/login")
    page.fill('input[name="token"]', API_TOKEN)
    page.click('button[type="submit"]')


def test_pause_wait_cancel_resume_and_search(tab: Page, ferry, sandbox, live_api, tmp_path):  # noqa: F811
    page = tab
    seed = sandbox.seed()
    log_in(page, live_api.url)
    # The fixture emptied Redis; the worker's next heartbeat (every 5 s) fills the panel again.
    expect(page.locator("#workers-panel tr.worker")).to_have_count(1, timeout=15_000)
    acme = page.locator('#connections-panel tr[data-connection="acme"]')

    acme.locator('button[data-action="pause"]').click()
    expect(acme.locator(".state")).to_contain_text("paused")
    jobs = [ferry.submit("assets-attachment", connection="acme", file=str(document(tmp_path, f"scan-{i}.pdf")),
                         params={"object": seed["object_id"]}, idempotency_key=f"scan-{i}").id
            for i in range(2)]
    expect(acme.locator(".parked")).to_have_text("2", timeout=15_000)  # both wait, no attempt spent
    expect(page.locator("#rows tr.row.s-queued")).to_have_count(2)
    assert not sandbox.requests(path_contains="/credentials")

    page.locator(f'#rows tr[data-id="{jobs[0]}"] button[data-action="cancel"]').click()
    expect(page.locator(f'#rows tr[data-id="{jobs[0]}"] .status')).to_have_text("cancelled")

    acme.locator('button[data-action="resume"]').click()
    expect(acme.locator(".state")).to_contain_text("active")
    expect(page.locator(f'#rows tr[data-id="{jobs[1]}"] .status')).to_have_text("succeeded", timeout=30_000)
    assert ferry.status(jobs[0]).status == "cancelled"
    assert ferry.redis.scard(keys.parked("acme")) == 0

    # Cancel by filter: the dry-run count first, nothing changes until confirmed.
    acme.locator('button[data-action="pause"]').click()
    expect(acme.locator(".state")).to_contain_text("paused")
    more = [ferry.submit("assets-attachment", connection="acme", file=str(document(tmp_path, f"bulk-{i}.pdf")),
                         params={"object": seed["object_id"]}).id for i in range(3)]
    expect(acme.locator(".parked")).to_have_text("3", timeout=15_000)
    page.goto(live_api.url + "/?status=queued&connection=acme")
    page.click("#cancel-matching")
    expect(page.locator("#bulk-message")).to_contain_text("3 job(s) match")
    assert ferry.store.statuses(more) == ["queued"] * 3
    if os.environ.get("FERRY_OPERATE_SCREENSHOT"):
        shot = Path(os.environ["FERRY_OPERATE_SCREENSHOT"])
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
    page.click("#bulk-confirm")
    expect(page.locator("#bulk-message")).to_contain_text("Cancelled 3 job(s)")
    assert ferry.store.statuses(more) == ["cancelled"] * 3
    page.locator('#connections-panel tr[data-connection="acme"] button[data-action="resume"]').click()
    expect(page.locator('#connections-panel tr[data-connection="acme"] .state')).to_contain_text("active")

    # Search: by job id, by idempotency key, by part of the file name.
    for text, expected in ((jobs[1], [jobs[1]]), ("scan-0", [jobs[0]]), ("bulk-", more)):
        page.goto(live_api.url + "/")
        page.fill("#f-q", text)
        page.click("#apply")
        rows = page.locator("#rows tr.row")
        expect(rows).to_have_count(len(expected))
        assert sorted(rows.evaluate_all("rows => rows.map(r => r.dataset.id)")) == sorted(expected)
