from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for folder in ("plugins", "include", "tests"):
    if str(ROOT / folder) not in sys.path:
        sys.path.insert(0, str(ROOT / folder))

import json

import pytest
from sandbox import credentials
from sandbox_process import start_sandbox


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


def hubspot_connection(url: str, **extra) -> str:
    """``AIRFLOW_CONN_HUBSPOT_DEFAULT`` for the sandbox: a private-app token unless OAuth extras are given."""
    conn = {"conn_type": "http", "host": url, "extra": {"api_version": "2026-03", **extra}}
    if "refresh_token" not in extra:
        conn["password"] = credentials.HUBSPOT_PRIVATE_APP_TOKEN
    return json.dumps(conn)


def aep_connection(url: str, **extra) -> str:
    return json.dumps(
        {
            "conn_type": "http",
            "host": url,
            "login": credentials.AEP_CLIENT_ID,
            "password": credentials.AEP_CLIENT_SECRET,
            "extra": {
                "org_id": credentials.AEP_ORG_ID,
                "sandbox_name": credentials.AEP_SANDBOX_NAME,
                "ims_url": url,
                "export_dataset_id": credentials.AEP_DATASET_ID,
                "merge_policy_id": credentials.AEP_MERGE_POLICY_ID,
                **extra,
            },
        }
    )


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
