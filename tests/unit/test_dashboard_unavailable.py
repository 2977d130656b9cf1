"""Redis lost while the dashboard is open (issue 29): a browser's page says so as a page, while
API clients keep their JSON Problem; both are 503."""

from __future__ import annotations

import fakeredis
from fastapi.testclient import TestClient

from producers.client import Ferry
from producers.config import FerryConfig
from producers.web.app import create_app


def test_a_page_is_a_page_and_the_api_stays_json_when_redis_is_gone() -> None:
    server = fakeredis.FakeServer()
    server.connected = False  # every command now fails as a lost connection does
    ferry = Ferry("redis://unused", config=FerryConfig(),
                  redis_client=fakeredis.FakeRedis(server=server, decode_responses=True))
    client = TestClient(create_app(ferry, tokens=["t"]))
    auth = {"Authorization": "Bearer t"}

    page = client.get("/ui/job/" + "0" * 32, headers={**auth, "Accept": "text/html,application/xhtml+xml"})
    assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
    assert "The job store is unavailable" in page.text

    api = client.get("/jobs", headers={**auth, "Accept": "application/json"})
    assert api.status_code == 503 and api.json()["detail"].startswith("the job store or the broker is unavailable")
