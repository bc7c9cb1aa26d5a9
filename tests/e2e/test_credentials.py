"""The whole sync DAG (``dag.test()``) against both sandboxes with ``hubspot_default`` in each documented
form: (a) a private-app token or service key alone, (b) an OAuth app, (c) an OAuth app with a stale
access token. Each run must succeed and leave HubSpot as the independent oracle says; ``connect`` makes
the Flow Service connection with a freshly refreshed token in (b) and (c), and skips it, saying why, in (a).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3

import pytest
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
from e2e_support import DAG_ID, assert_hubspot_matches, expected_contacts, run_sync, start_world
from sandbox import credentials
from sandbox.connections import STALE_ACCESS_TOKEN, hubspot_connection_form

SECRETS = (
    credentials.HUBSPOT_PRIVATE_APP_TOKEN,
    credentials.HUBSPOT_CLIENT_SECRET,
    credentials.HUBSPOT_REFRESH_TOKEN,
    STALE_ACCESS_TOKEN,
    "sandbox-at-",  # every access token the HubSpot sandbox issues
)


@pytest.fixture
def world(tmp_path, monkeypatch, airflow_db):
    world = start_world(tmp_path, monkeypatch, profiles=300)
    yield world
    world.stop()


def sync_with(world, monkeypatch, capfd, form: str) -> tuple[dict, dict, str]:
    """One run with ``hubspot_default`` in ``form``: the run, the connect task's result, the run's output.
    HubSpot must then hold exactly what the oracle computes from the export."""
    monkeypatch.setenv("AIRFLOW_CONN_HUBSPOT_DEFAULT", hubspot_connection_form(world.hubspot.url, form))
    run = run_sync(world)
    output = capfd.readouterr().out
    assert run["state"] == "success", output[-3000:]
    with create_session() as session:
        row = session.scalars(
            XComModel.get_many(run_id=run["run_id"], key="return_value", dag_ids=DAG_ID, task_ids="connect")
        ).one()
        connect = XComModel.deserialize_value(row)
    assert_hubspot_matches(world.contacts(), expected_contacts(run["folder"] / "export", world.audiences))
    assert not [s for s in SECRETS if s in output + json.dumps(connect)]
    return run, connect, output


def flow_connection_posts(world) -> list[dict]:
    logged = world.aep.admin("GET", "requests")["requests"]
    return [r for r in logged if r["method"] == "POST" and r["path"].endswith("/flowservice/connections")]


def token_refreshes(world) -> list[dict]:
    return [r for r in world.hubspot_requests() if r["method"] == "POST" and r["path"].startswith("/oauth/")]


def stored_access_token(world) -> str:
    with sqlite3.connect(world.aep.db) as db:
        return json.loads(db.execute("SELECT body FROM connections").fetchone()[0])["auth"]["params"]["accessToken"]


def assert_connection_made_with_a_fresh_token(world, connect: dict, output: str) -> None:
    assert connect["created"] is True and connect["connection_id"] and connect["skipped"] is None
    assert f"Created AEP HubSpot connection {connect['connection_id']}" in output
    assert len(flow_connection_posts(world)) == 1
    stale = "sha256:" + hashlib.sha256(STALE_ACCESS_TOKEN.encode()).hexdigest()
    assert stored_access_token(world) != stale
    assert world.hubspot.admin("GET", "stats")["stats"].get("status_401", 0) == 0  # the stale token was never sent


def test_a_private_app_token_alone_syncs_and_skips_the_flow_service_connection(world, monkeypatch, capfd):
    run, connect, output = sync_with(world, monkeypatch, capfd, "token")
    assert connect["connection_id"] is None and connect["created"] is False
    assert "holds no HubSpot OAuth app" in connect["skipped"]
    assert "AEP Flow Service HubSpot connection skipped: Airflow connection 'hubspot_default'" in output
    assert flow_connection_posts(world) == [] and token_refreshes(world) == []
    assert run["report"]["contacts"]["created"] > 100


def test_an_oauth_app_syncs_and_makes_the_connection_with_a_refreshed_token(world, monkeypatch, capfd):
    run, connect, output = sync_with(world, monkeypatch, capfd, "oauth")
    assert_connection_made_with_a_fresh_token(world, connect, output)
    assert len(token_refreshes(world)) >= 2  # connect's own, and the API calls' (one hook per task)
    assert run["report"]["contacts"]["created"] > 100


def test_an_oauth_app_with_a_stale_access_token_syncs_and_refreshes_it(world, monkeypatch, capfd):
    run, connect, output = sync_with(world, monkeypatch, capfd, "oauth-stale")
    assert_connection_made_with_a_fresh_token(world, connect, output)
    assert len(token_refreshes(world)) >= 2
    assert run["report"]["contacts"]["created"] > 100
