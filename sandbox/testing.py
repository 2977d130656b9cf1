"""Helpers for tests: run the sandbox as a real subprocess and drive its control API.

with SandboxProcess() as proc:
    sb = proc.control()
    sb.add_fault(path="/media/file", status=429, times=2)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

from sandbox import DEFAULT_BEARER, DEFAULT_EMAIL, DEFAULT_TOKEN

REPO_ROOT = Path(__file__).resolve().parent.parent


def ferry_connections(url: str, email: str = DEFAULT_EMAIL, *, token_env: str, bearer_env: str) -> str:
    """ferry.toml connections ``acme`` (atlassian), ``marketplace`` and ``awork`` pointing at a
    sandbox at ``url``; the tokens come from the two environment variables named here."""
    return f"""
[connections.acme]
service = "atlassian"
site_url = "{url}"
api_url = "{url}"
email = "{email}"
token_env = "{token_env}"

[connections.marketplace]
service = "marketplace"
base_url = "{url}"
email = "{email}"
token_env = "{token_env}"

[connections.awork]
service = "awork"
base_url = "{url}"
token_env = "{bearer_env}"
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SandboxControl:
    """A small requests-based client for /_sandbox/ plus the credentials the sandbox accepts."""

    def __init__(
        self,
        url: str,
        email: str = DEFAULT_EMAIL,
        token: str = DEFAULT_TOKEN,
        bearer: str = DEFAULT_BEARER,
    ) -> None:
        self.url = url.rstrip("/")
        self.email = email
        self.token = token
        self.bearer = bearer
        self.session = requests.Session()

    @property
    def basic(self) -> tuple[str, str]:
        """(email, token) for requests' `auth=`."""
        return (self.email, self.token)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.session.request(method, f"{self.url}/_sandbox/{path}", timeout=30, **kwargs)
        response.raise_for_status()
        return response.json()

    def seed(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "seed")
        return result

    def add_fault(self, **rule: Any) -> str:
        return str(self._call("POST", "faults", json=rule)["id"])

    def faults(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "faults")
        return result

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def set_rate_limit(self, per_second: float) -> None:
        self._call("POST", "rate-limit", json={"per_second": per_second})

    def clear_rate_limit(self) -> None:
        self._call("DELETE", "rate-limit")

    def configure(self, **cfg: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "config", json=cfg)
        return result

    def reset(self) -> None:
        self._call("POST", "reset")

    def requests(self, path_contains: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if path_contains:
            params["path_contains"] = path_contains
        result: list[dict[str, Any]] = self._call("GET", "requests", params=params)
        return result

    def uploads(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "uploads")
        return result

    def file_bytes(self, sha256: str) -> bytes:
        response = self.session.get(f"{self.url}/_sandbox/files/{sha256}", timeout=60)
        response.raise_for_status()
        return response.content

    def objects(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "objects")
        return result

    def object(self, object_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"objects/{object_id}")
        return result

    def attachments(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "attachments")["attachments"]
        return result

    def media(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "attachments")["media"]
        return result

    def avatars(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "avatars")
        return result

    def assets(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "assets")
        return result

    def mark_asset_used(self, name: str, used: bool = True) -> None:
        self._call("POST", "assets/use", json={"name": name, "used": used})

    def images(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "images")
        return result


class SandboxProcess:
    """Runs `python -m sandbox --seed` on a free port with a temp data dir, as a real process."""

    def __init__(
        self,
        port: int | None = None,
        data_dir: Path | None = None,
        extra_args: list[str] | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        self.port = port or free_port()
        self._own_dir = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="ferry-sandbox-"))
        self.extra_args = extra_args or []
        self.startup_timeout = startup_timeout
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> SandboxProcess:
        args = [sys.executable, "-m", "sandbox", "--port", str(self.port), "--seed"]
        args += ["--data", str(self.data_dir), *self.extra_args]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        }
        log = open(self.data_dir / "sandbox.log", "wb")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"sandbox exited early:\n{self.log()}")
            try:
                if requests.get(f"{self.url}/_sandbox/seed", timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sandbox did not start within {self.startup_timeout}s:\n{self.log()}")

    def log(self) -> str:
        path = self.data_dir / "sandbox.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def control(self) -> SandboxControl:
        return SandboxControl(self.url)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
