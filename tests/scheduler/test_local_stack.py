"""`make airflow`'s script as the README runs it, on a shell where the virtualenv is not activated.

`airflow standalone` starts its parts as `airflow ...` from PATH; without the venv's bin on PATH each
part died and nothing answered (issue 12 §0). The script runs with its own process group, on free
ports, until the api-server's health endpoint answers; then the whole group is stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from sandbox_process import free_port

from benchmarks.scheduler import parallelism

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 150


def path_without_venv() -> str:
    """PATH as on a fresh shell: no directory holding this interpreter's (the venv's) ``airflow``."""
    venv_bins = {str(Path(sys.prefix) / "bin"), str(ROOT / ".venv" / "bin")}
    venv_bins |= {os.path.realpath(b) for b in venv_bins}
    kept = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and os.path.realpath(d) not in venv_bins]
    return os.pathsep.join(kept or ["/usr/bin", "/bin"])


def stop_group(process: subprocess.Popen, grace_s: float = 15) -> None:
    """SIGTERM to the script's process group (standalone, its parts, the sandboxes), then SIGKILL to what is left."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # parts that outlive the script
    except ProcessLookupError:
        pass
    process.wait()


def check_connections_in_the_ui(url: str, home: Path) -> None:
    """Admin → Connections lists both connections with their own types, and their Test button passes."""
    password = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
    token = requests.post(f"{url}/auth/token", json={"username": "admin", "password": password}, timeout=30).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    listed = requests.get(f"{url}/api/v2/connections", headers=headers, timeout=30).json()["connections"]
    types = {c["connection_id"]: c["conn_type"] for c in listed}
    assert types == {"aep_default": "aep", "hubspot_default": "hubspot"}
    for conn in listed:  # as the form's Test button sends it: the stored secrets are merged in by the server
        body = {k: conn[k] for k in ("connection_id", "conn_type", "host", "login", "extra")}
        answer = requests.post(f"{url}/api/v2/connections/test", json=body, headers=headers, timeout=60).json()
        assert answer["status"] is True, answer


@pytest.mark.timeout(START_TIMEOUT_S + 30)
def test_make_airflow_script_serves_health_without_an_activated_venv(tmp_path):
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW", "VIRTUAL_ENV", "PYTHONPATH", "AUDIENCE_SYNC"))
    }
    port = free_port()
    env.update(
        PATH=path_without_venv(),
        AIRFLOW_HOME=str(tmp_path / "airflow_home"),
        SANDBOX_DIR=str(tmp_path / "sandbox"),
        AIRFLOW_PORT=str(port),
        HUBSPOT_PORT=str(free_port()),
        AEP_PORT=str(free_port()),
        # Other stacks may run on this machine: their default log-server ports must not clash.
        AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
        AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()),
        AUDIENCE_SYNC_BASE_PATH=str(tmp_path / "data"),
    )
    assert shutil.which("airflow", path=env["PATH"]) is None, "an airflow command is on PATH: not a fresh shell"
    log_path = tmp_path / "airflow_local.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            ["bash", str(ROOT / "scripts" / "airflow_local.sh")],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    health_url = f"http://127.0.0.1:{port}/api/v2/monitor/health"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        health = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                response = requests.get(health_url, timeout=2)
                if response.ok:
                    health = response.json()
                    break
            except requests.RequestException:
                pass
            if b"FileNotFoundError" in log_path.read_bytes():  # a part could not start: fail now, not at the timeout
                break
            time.sleep(1)
        output = log_path.read_text(errors="replace")
        assert process.poll() is None, f"airflow_local.sh exited {process.returncode}:\n{output[-3000:]}"
        assert health is not None, f"no answer on {health_url} within {START_TIMEOUT_S} s:\n{output[-3000:]}"
        assert health["metadatabase"]["status"] == "healthy"
        assert "FileNotFoundError" not in output
        assert "sandboxes up" in output
        # the script's sizing, as the scheduler benchmark mirrors it: twice the CPUs, at least the 4 slots + 2
        assert f"LocalExecutor parallelism: {parallelism(4)}" in output
        check_connections_in_the_ui(f"http://127.0.0.1:{port}", tmp_path / "airflow_home")
    finally:
        stop_group(process)
    with pytest.raises(requests.ConnectionError):
        requests.get(health_url, timeout=2)
