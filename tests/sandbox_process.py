"""Start a sandbox server as its own process on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class SandboxProcess:
    name: str
    url: str
    db: Path
    process: subprocess.Popen

    def admin(self, method: str, path: str, json: dict | None = None) -> dict:
        response = requests.request(method, f"{self.url}/_sandbox/{path}", json=json, timeout=30)
        response.raise_for_status()
        return response.json()

    def set_faults(self, **faults) -> dict:
        return self.admin("POST", "faults", faults)

    def reset(self) -> None:
        self.admin("POST", "reset")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_sandbox(module: str, workdir: Path, *args: str, port: int | None = None) -> SandboxProcess:
    """Run ``python -m sandbox.<module> --port P --db <workdir>/<module>.sqlite3 *args`` and wait for health."""
    port = port or free_port()
    db = workdir / f"{module}.sqlite3"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(ROOT / "plugins")])}
    log_file = open(workdir / f"{module}.log", "ab")
    process = subprocess.Popen(
        [sys.executable, "-m", f"sandbox.{module}", "--host", "127.0.0.1", "--port", str(port), "--db", str(db), *args],
        cwd=ROOT,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sandbox {module} exited with {process.returncode}; see {workdir / (module + '.log')}")
        try:
            if requests.get(f"{url}/_sandbox/health", timeout=1).ok:
                return SandboxProcess(module, url, db, process)
        except requests.ConnectionError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"sandbox {module} did not answer on {url} within 30 s")
