"""``ferry demo``: the whole thing on one machine, from nothing.

Starts (or finds) the embedded Redis, the sandbox and a worker; writes a ferry.toml whose
connections point at the sandbox; submits one sample job of every declared kind (a second wave
for the kinds that act on what the first wave created, such as deletes); waits for them; prints
where each one landed. Exit code 0 only if every sample job succeeded.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from rich.console import Console
from rich.table import Table

from producers.archive import archive_url
from producers.client import Ferry
from producers.config import FerryConfig, load_config
from producers.embedded import EmbeddedRedis, ferry_home, resolve_redis
from producers.kinds import KINDS
from producers.records import JobRecord, JobStatus
from sandbox.testing import SandboxControl, SandboxProcess, ferry_connections
from worker.processes import WorkerProcess

# Wide enough that "where it landed" stays readable when the output is a log, not a terminal.
console = Console(highlight=False, width=max(140, shutil.get_terminal_size().columns))
TOKENS = {"FERRY_DEMO_ATLASSIAN_TOKEN": "sandbox-token", "FERRY_DEMO_AWORK_TOKEN": "sandbox-awork-token"}
Seed = dict[str, Any]
Results = dict[str, JobRecord]


@dataclass(frozen=True)
class Sample:
    """One demo job: its kind, connection, parameters (from the sandbox's seed and the results of
    the first wave) and file."""

    kind: str
    connection: str
    params: Callable[[Seed, Results], dict[str, Any]]
    file: Callable[[Path], Path] | None = None
    uri: Callable[[Seed, Results], str] | None = None
    wave: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


def _png(name: str, size: tuple[int, int], colour: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        img = Image.new("RGB", size, colour)
        for x in range(size[0]):  # a diagonal stripe, so crops are visible in the sandbox's images
            img.putpixel((x, min(size[1] - 1, x * size[1] // size[0])), (255, 255, 255))
        img.save(path, "PNG")
        return path
    return make


def _pdf(folder: Path) -> Path:
    path = folder / "inspection-report.pdf"
    path.write_bytes(b"%PDF-1.4\n% Ferry demo\n" + b"0" * 20_000 + b"\n%%EOF\n")
    return path


def _jar(folder: Path) -> Path:
    path = folder / "demo-plugin-1.0.0.jar"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as jar:
        jar.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\nBundle-Name: Ferry demo\n")
        jar.writestr("atlassian-plugin.xml", "<atlassian-plugin key='ferry.demo' name='Ferry demo'/>")
    path.write_bytes(buf.getvalue())
    return path


def _result(results: Results, kind: str, key: str) -> str:
    record = results[kind]
    return str((record.result or {}).get(key, ""))


SAMPLES: list[Sample] = [
    Sample("assets-avatar", "acme", lambda s, r: {"object_type": s["object_type_id"], "object": s["object_id"]},
           file=_png("laptop.png", (300, 200), "steelblue")),
    Sample("assets-attachment", "acme", lambda s, r: {"object": s["object_id"], "comment": "Ferry demo"},
           file=_pdf),
    Sample("jira-avatar", "acme", lambda s, r: {"type": "project", "owner": s["project_id"], "set_current": True},
           file=_png("project.png", (240, 160), "darkorange")),
    Sample("marketplace-artifact", "marketplace", lambda s, r: {}, file=_jar),
    Sample("marketplace-image", "marketplace", lambda s, r: {"image_type": "logo"},
           file=_png("app-logo.png", (144, 144), "seagreen")),
    Sample("awork-image", "awork", lambda s, r: {"entity": "users", "id": s["awork"]["users"]},
           file=_png("user.png", (128, 128), "slateblue")),
    # Second wave: the deletes act on what the first wave created.
    Sample("jira-avatar-delete", "acme", wave=2, params=lambda s, r: {
        "type": "project", "owner": s["project_id"], "avatar": _result(r, "jira-avatar", "avatar_id")}),
    Sample("marketplace-asset-delete", "marketplace", wave=2, params=lambda s, r: {
        "asset": _result(r, "marketplace-image", "asset_name")}),
    Sample("awork-image-delete", "awork", wave=2, params=lambda s, r: {
        "entity": "users", "id": s["awork"]["users"]}),
]


def landed(record: JobRecord) -> str:
    if record.error:
        code = f" HTTP {record.error.status}" if record.error.status else ""
        return f"[red]{record.error.step}{code}: {record.error.message}[/red]"
    shown = {k: v for k, v in (record.result or {}).items() if isinstance(v, str | int | bool) and v not in ("", None)}
    return ", ".join(f"{k}={v}" for k, v in shown.items())


def write_config(path: Path, url: str, files: Path, archive: str | None = None) -> None:
    """Connections to the sandbox; job files only from the demo's folder, and URLs allowed to
    be what the sandbox is (plain http on this machine), which production configs refuse.
    ``archive``: the archive's URL (the home's SQLite file with the embedded Redis)."""
    body = ferry_connections(url, token_env="FERRY_DEMO_ATLASSIAN_TOKEN", bearer_env="FERRY_DEMO_AWORK_TOKEN")
    archived = f"[archive]\nurl = {json.dumps(archive)}\n" if archive else ""
    path.write_text("# written by `ferry demo`: every connection points at the local sandbox\n"
                    f"[files]\nroots = [{json.dumps(str(files))}]\n"
                    "allow_http_uris = true\nallow_private_uris = true\n" + archived + body)


def run_demo(keep: bool = False, sandbox_url: str | None = None) -> int:
    """``sandbox_url``: use that running sandbox (e.g. the compose file's) instead of starting one."""
    home = ferry_home() / "demo"
    (home / "files").mkdir(parents=True, exist_ok=True)
    embedded = EmbeddedRedis(ferry_home() / "redis")
    redis_was_running = "REDIS_URL" in os.environ or embedded.is_running()
    location = resolve_redis()
    console.print(f"Redis: {location.url}")
    sandbox = None if sandbox_url else SandboxProcess(data_dir=home / "sandbox")
    url = sandbox.url if sandbox else str(sandbox_url).rstrip("/")
    config_path = home / "ferry.toml"
    # The worker is handed the Redis as a URL, so it would take it for an external one: the
    # archive the embedded Redis implies (a SQLite file in the home) is written out for it.
    write_config(config_path, url, home / "files",
                 archive_url(FerryConfig(), embedded="REDIS_URL" not in os.environ))
    env = {**os.environ, **TOKENS, "FERRY_CONFIG": str(config_path), "REDIS_URL": location.url}
    worker: WorkerProcess | None = None
    try:
        seed = (sandbox.start().control() if sandbox else SandboxControl(url)).seed()
        console.print(f"Sandbox: {url}  (inspect: {url}/_sandbox/uploads)")
        worker = WorkerProcess(env, home / "worker.log", stdout_path=home / "worker.out").wait_ready()
        console.print(f"Worker: ready (log: {worker.log_path})")
        console.print(f"Config: {config_path}  (connections acme, marketplace, awork → the sandbox)")
        ferry = Ferry(location.url, config=load_config(config_path))
        results = submit_all(ferry, seed, home / "files")
    finally:
        if not keep:
            if worker is not None:
                worker.stop()
            if sandbox is not None:
                sandbox.stop()
            if not redis_was_running:
                embedded.stop()
    code = report(results)
    console.print(kept(config_path, worker, sandbox) if keep else
                  "Everything it started is stopped again. `ferry demo --keep` leaves Redis, the sandbox "
                  "and the worker running to look around; README \"Your first job by hand\" goes on from here.")
    return code


def kept(config_path: Path, worker: WorkerProcess | None, sandbox: SandboxProcess | None) -> str:
    """What --keep left running, and how to use and stop it."""
    pids = " ".join(str(p.proc.pid) for p in (worker, sandbox) if p is not None and p.proc is not None)
    return (f"Still running (--keep): worker and sandbox (pids {pids}) and Redis. Look around with "
            f"`FERRY_CONFIG={config_path} ferry jobs`; stop with `kill {pids}; ferry redis stop`.")


def submit_all(ferry: Ferry, seed: Seed, folder: Path) -> Results:
    results: Results = {}
    for wave in sorted({s.wave for s in SAMPLES}):
        submitted = {}
        for sample in (s for s in SAMPLES if s.wave == wave):
            job = ferry.submit(
                sample.kind, connection=sample.connection, params=sample.params(seed, results),
                file=str(sample.file(folder)) if sample.file else None,
                uri=sample.uri(seed, results) if sample.uri else None)
            console.print(f"submitted {sample.kind:28} {job.id}")
            submitted[sample.kind] = job.id
        for kind, job_id in submitted.items():
            results[kind] = ferry.wait(job_id, timeout=180)
    return results


def report(results: Results) -> int:
    table = Table("kind", "status", "steps (attempts)", "where it landed")
    for kind, record in results.items():
        colour = "green" if record.status == JobStatus.SUCCEEDED else "red"
        steps = " → ".join(f"{s.name}({s.attempts})" for s in record.steps)
        table.add_row(kind, f"[{colour}]{record.status}[/{colour}]", steps, landed(record))
    console.print(table)
    missing = set(KINDS) - set(results)
    ok = all(r.status == JobStatus.SUCCEEDED for r in results.values()) and not missing
    if missing:
        console.print(f"[red]no sample for: {', '.join(sorted(missing))}[/red]")
    console.print("[green]every sample job succeeded[/green]" if ok else "[red]some sample jobs failed[/red]")
    return 0 if ok else 1
