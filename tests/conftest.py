from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Airflow reads its configuration when first imported: give the test session its own home,
# with the project's DAGs and plugins and no examples, before anything imports airflow.
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="airflow-home-tests-")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
for folder in ("plugins", "include", "tests", "."):
    if str(ROOT / folder) not in sys.path:
        sys.path.insert(0, str((ROOT / folder).resolve()))

import pytest
from sandbox.connections import aep_connection, hubspot_connection
from sandbox_process import start_sandbox

# Fixtures shared across the suites that mirror the package (hooks, clients, operators, upsert).
from aep_support import aep  # noqa: E402,F401
from hubspot_support import hs, window_peak  # noqa: E402,F401


@pytest.fixture
def hubspot_sandbox(tmp_path):
    server = start_sandbox("hubspot", tmp_path)
    yield server
    server.stop()


@pytest.fixture
def aep_sandbox(tmp_path):
    server = start_sandbox("aep", tmp_path)
    yield server
    server.stop()


@pytest.fixture
def hubspot_conn(monkeypatch, hubspot_sandbox):
    monkeypatch.setenv("AIRFLOW_CONN_HUBSPOT_DEFAULT", hubspot_connection(hubspot_sandbox.url))
    return hubspot_sandbox


@pytest.fixture
def aep_conn(monkeypatch, aep_sandbox):
    monkeypatch.setenv("AIRFLOW_CONN_AEP_DEFAULT", aep_connection(aep_sandbox.url))
    return aep_sandbox


@pytest.fixture(autouse=True)
def _isolated_base_path(monkeypatch, tmp_path):
    """Every test writes its run folders and state under its own temporary directory."""
    monkeypatch.setenv("AUDIENCE_SYNC_BASE_PATH", (tmp_path / "data").as_uri())
    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated metadata database (SQLite in the session's AIRFLOW_HOME) for dag.test() runs."""
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    return os.environ["AIRFLOW_HOME"]
