"""Run the sandbox: print where it listens and which credentials it accepts, then serve.

One uvicorn process (uvloop + httptools when installed): the app is async, state is in memory,
and file bodies stream to disk, so one process is not the bottleneck of Ferry's benchmarks
(see README for the measured ceiling).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import uvicorn

from sandbox import (
    DEFAULT_BEARER,
    DEFAULT_DATA_DIR,
    DEFAULT_EMAIL,
    DEFAULT_HOST,
    DEFAULT_JWT_TTL,
    DEFAULT_PORT,
    DEFAULT_TOKEN,
)
from sandbox.app import create_app
from sandbox.state import Config, Seed


def banner(host: str, port: int, data_dir: Path, config: Config, seed: Seed | None) -> str:
    url = f"http://{host}:{port}"
    lines = [
        f"Ferry sandbox listening on {url}",
        f"  data dir:        {data_dir.resolve()}",
        f"  Basic (Jira, Assets, Marketplace): {config.email} / {config.token}",
        f"  Bearer (awork):  {config.bearer}",
        f"  media JWT TTL:   {config.jwt_ttl_seconds}s",
        f"  open readings:   media_upload={config.media_upload} media_read_back={config.media_read_back} "
        f"attachment_media_id={config.attachment_media_id} link_answer_body={config.link_answer_body} "
        f"link_checks_size={config.link_checks_size} project_owner_keys={config.project_owner_keys} "
        f"artifact_form={config.artifact_form} awork_429={config.awork_429}",
        f"  point site_url / api_url / base_url of every connection at {url}",
        f"  control API:     {url}/_sandbox/  (seed: {url}/_sandbox/seed)",
    ]
    if seed is not None:
        lines.append(
            f"  seeded workspace {seed.workspace_id}, object {seed.object_id}, "
            f"project {seed.project_key} ({seed.project_id})"
        )
    return "\n".join(lines)


def open_readings(media_upload: str = "multipart", no_attachment_media_id: bool = False,
                  empty_link_answer: bool = False, refuse_project_keys: bool = False, *,
                  no_media_read_back: bool = False, lenient_link_size: bool = False,
                  artifact_form: str = "multipart", awork_429: str = "awork") -> dict[str, Any]:
    """The command-line switches of the open readings as config keys (for ``run``)."""
    return {"media_upload": media_upload, "attachment_media_id": not no_attachment_media_id,
            "link_answer_body": not empty_link_answer, "project_owner_keys": not refuse_project_keys,
            "media_read_back": not no_media_read_back, "link_checks_size": not lenient_link_size,
            "artifact_form": artifact_form, "awork_429": awork_429}


def run(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    data_dir: str | Path = DEFAULT_DATA_DIR,
    email: str = DEFAULT_EMAIL,
    token: str = DEFAULT_TOKEN,
    bearer: str = DEFAULT_BEARER,
    seed: bool = False,
    jwt_ttl: int = DEFAULT_JWT_TTL,
    readings: dict[str, Any] | None = None,
) -> None:
    """Start the sandbox in the foreground (blocks until interrupted). ``readings``: config keys
    of the open readings to play (``media_upload``, ``attachment_media_id``, …)."""
    data = Path(data_dir)
    config = Config(email=email, token=token, bearer=bearer, jwt_ttl_seconds=jwt_ttl)
    for key, value in (readings or {}).items():
        problem = config.check(key, value)
        if problem:
            raise ValueError(problem)
        setattr(config, key, value)
    app = create_app(config, data, seed=seed)
    print(banner(host, port, data, config, app.state.sandbox.seed), flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
