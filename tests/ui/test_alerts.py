"""Failure alerts: the settings, the one-paragraph message, and a real failed ``dag.test()`` run
whose callback mails it through the SMTP provider to a local SMTP server (aiosmtpd) the test starts."""

from __future__ import annotations

import email
import json
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from audience_sync import alerts
from audience_sync.errors import ConfigurationError
from audience_sync.incremental import MassChangeBlocked
from sandbox_process import free_port

REPORT = {
    "profiles": {"exported": 10000, "valid": 7506, "rejected": 120},
    "contacts": {"created": 7000, "updated": 386},
}


def test_message_is_one_paragraph_with_counts_and_no_email():
    error = MassChangeBlocked(
        "mass-change guard: nothing was written: 900 of 1,000 contacts would exit (ann@example.com)"
    )
    text = alerts.alert_message("sync", "manual__1", "plan_sync", 1, error, REPORT, "/data/runs/sync/manual__1")
    assert "\n" not in text and "@" not in text
    assert "run manual__1 was stopped by the mass-change guard at task plan_sync (try 1): MassChangeBlocked" in text
    assert "Counts: profiles exported 10,000, valid 7,506, rejected 120, created 7,000, updated 386." in text
    assert "Report: /data/runs/sync/manual__1/report.md" in text
    text = alerts.alert_message("sync", "r", None, None, RuntimeError("x" * 2000), None, "/f")
    assert "failed: RuntimeError" in text and "No report was written" in text and "the run folder /f" in text
    assert len(text) < 1200


@pytest.mark.parametrize(
    "raw, message",
    [
        ([], "must be a mapping"),
        ({"email": {}}, "must be a mapping with the keys smtp and/or slack"),
        ({"smtp": {"to": []}}, "alerts.smtp.to must list at least one address"),
        ({"smtp": {"to": ["a@b.c"], "cc": "x"}}, "unknown alerts setting(s) cc"),
        ({"slack": {"channel": "#x"}}, "alerts.slack.conn_id is required"),
    ],
)
def test_bad_alert_settings_name_the_key(raw, message):
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        alerts.parse_alerts(raw, Path("sync_config.yaml"))


def test_settings_from_the_sync_config(tmp_path):
    path = tmp_path / "sync.yaml"
    path.write_text("schedule: null\nalerts:\n  smtp:\n    to: team@example.com\n  slack:\n    conn_id: slack\n")
    settings = alerts.load_alert_settings(path)
    assert settings.smtp_to == ("team@example.com",) and settings.smtp_conn_id == "smtp_default"
    assert settings.slack_conn_id == "slack" and settings.enabled
    path.write_text("schedule: null\n")
    assert not alerts.load_alert_settings(path).enabled


class Inbox:
    def __init__(self):
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp_server(monkeypatch):
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMTP_ALERTS",
        json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": port,
                "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "airflow@example.com"},
            }
        ),
    )
    yield inbox
    controller.stop()


DAG_FILE = """
from datetime import datetime, timezone

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG
from audience_sync import alerts
from audience_sync.incremental import MassChangeBlocked


def guard():
    raise MassChangeBlocked("mass-change guard: nothing was written: 812 of 900 contacts would exit")


with DAG("alerting_sync", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:
    PythonOperator(task_id="plan_sync", python_callable=guard, on_failure_callback=alerts.notify_failure)
"""


def test_failed_run_mails_the_alert(airflow_db, smtp_server, tmp_path, monkeypatch):
    """A real run of a one-task DAG (in its own DAGs folder) whose guard trips, wired as the sync will be."""
    from airflow import settings
    from airflow.dag_processing.dagbag import DagBag

    config = tmp_path / "sync.yaml"
    config.write_text("alerts:\n  smtp:\n    conn_id: smtp_alerts\n    to: [data-team@example.com]\n")
    monkeypatch.setenv("AUDIENCE_SYNC_CONFIG", str(config))
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "alerting_sync.py").write_text(DAG_FILE)
    monkeypatch.setattr(settings, "DAGS_FOLDER", str(dags))
    dag = DagBag(dag_folder=str(dags)).dags["alerting_sync"]
    run = dag.test()
    assert str(run.state) == "failed"
    assert smtp_server.messages, "no alert reached the SMTP server"
    message = smtp_server.messages[0]
    assert message["To"] == "data-team@example.com"
    assert message["Subject"] == f"[Airflow] audience sync alerting_sync run {run.run_id} failed"
    body = (
        next(part for part in message.walk() if part.get_content_type() == "text/html")
        .get_payload(decode=True)
        .decode()
    )
    assert "stopped by the mass-change guard at task plan_sync" in body
    assert "812 of 900 contacts would exit" in body and "No report was written" in body


def test_slack_without_its_provider_says_which_package_is_missing():
    try:
        import airflow.providers.slack  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("the Slack provider is installed here")
    settings = alerts.parse_alerts({"slack": {"conn_id": "slack_api_default"}}, Path("sync.yaml"))
    with pytest.raises(ConfigurationError, match="apache-airflow-providers-slack"):
        alerts._send(settings, "subject", "message", {})
