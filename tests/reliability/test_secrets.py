"""No token, client secret or refresh token leaves a run: not in the log output, the task log files,
the XComs in the metadata DB, the run's files (reports, rejects, results) or exception text.

The secrets: every credential in ``sandbox.credentials``, the access tokens both sandboxes issued
during the run (AEP's from its SQLite state, HubSpot's by their pattern) and a wrong private-app
token that HubSpot refuses with 401.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from audience_sync.hooks.base import ApiError
from audience_sync.operators.hubspot import EnsureAudiencePropertiesOperator
from e2e_support import run_sync
from reliability_checks import (
    FIXED_SECRETS,
    aep_issued_tokens,
    assert_world_matches,
    find_secrets,
    oauth_connection,
    run_artifacts,
    xcom_texts,
)

WRONG_TOKEN = "pat-na1-sandbox-9999-revoked-private-app-token"


@pytest.fixture
def world(make_world):
    return make_world(profiles=200, hubspot_args=("--index-delay", "0.2"))


def test_no_secret_in_logs_xcoms_files_or_errors(world, monkeypatch, capfd, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("AIRFLOW_CONN_HUBSPOT_DEFAULT", oauth_connection(world.hubspot.url))
    world.hubspot.set_faults(token_ttl_seconds=3)  # several HubSpot tokens, each renewed before expiry
    good = run_sync(world)
    assert_world_matches(world, good)
    assert sum(1 for r in world.hubspot_requests() if r["path"].startswith("/oauth/")) >= 1

    # A failing run: HubSpot refuses the (revoked) private-app token with 401.
    monkeypatch.setenv("AIRFLOW_CONN_HUBSPOT_DEFAULT", oauth_connection(world.hubspot.url, password=WRONG_TOKEN))
    failed = run_sync(world)
    assert failed["state"] == "failed"
    assert world.hubspot.admin("GET", "stats")["stats"].get("status_401", 0) > 0

    # The same failure caught directly, for its exception text.
    with pytest.raises(ApiError) as refused:
        EnsureAudiencePropertiesOperator(
            task_id="ensure", audiences=world.audiences, target_properties=["email"]
        ).execute({})
    assert refused.value.status == 401

    secrets = FIXED_SECRETS + [WRONG_TOKEN] + aep_issued_tokens(world.aep.db)
    assert len(secrets) > len(FIXED_SECRETS) + 1  # AEP issued at least one token
    captured = capfd.readouterr()
    places = {
        "stdout": captured.out,
        "stderr": captured.err,
        "log records": "\n".join(r.getMessage() for r in caplog.records),
        "exception": f"{refused.value!r} {refused.value}",
        **{f"xcom {i}": text for i, text in enumerate(xcom_texts())},
        **run_artifacts(good["folder"], failed["folder"]),
    }
    logs = Path(os.environ["AIRFLOW_HOME"]) / "logs"
    if logs.exists():
        places.update({str(p): p.read_text("utf-8", "replace") for p in logs.rglob("*") if p.is_file()})
    assert any(name.endswith("report.json") for name in places)
    assert any(name.startswith("xcom") for name in places)
    assert "HubSpot" in places["stdout"] + places["stderr"] + places["log records"]  # the logs were captured
    leaks = {name: found for name, text in places.items() if (found := find_secrets(text, secrets))}
    assert not leaks, leaks
