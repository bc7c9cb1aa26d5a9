"""Tell someone when a sync fails or the mass-change guard stops it, through Airflow's notifiers
(the SMTP provider's ``SmtpNotifier``; Slack's ``SlackNotifier`` when its provider is installed).

Settings: the ``alerts:`` key of the sync config (include/sync_config.yaml)::

    alerts:
      smtp:                          # optional: an e-mail per failed run
        conn_id: smtp_default        # an Airflow SMTP connection (host, port, login/password, extras)
        to: [data-team@example.com]  # the team's address(es)
        from_email: airflow@example.com   # optional when the connection's extra has from_email
      slack:                         # optional: needs apache-airflow-providers-slack
        conn_id: slack_api_default   # an Airflow Slack API connection
        channel: "#data-alerts"

The message is one paragraph: what failed, the run's counts, and where the report and files are.
No secret (the project's exceptions carry none) and no email address (masked) is in it.
Wire it as the DAG's ``on_failure_callback=alerts.notify_failure`` (one message per run); the failed task's
error comes from the run folder's ``failure.json`` (``operators.sync.log_failure_summary`` writes it).
"""

from __future__ import annotations

import html
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audience_sync import config, storage
from audience_sync.errors import ConfigurationError
from audience_sync.storage import run_path
from audience_sync.ui.reports import load_report, mask_emails

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 600
FAILURE_RECORD = "failure.json"  # in the run folder: the run's first failed task (log_failure_summary writes it)


@dataclass(frozen=True)
class AlertSettings:
    smtp_conn_id: str | None = None
    smtp_to: tuple[str, ...] = ()
    smtp_from: str | None = None
    slack_conn_id: str | None = None
    slack_channel: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.smtp_to or self.slack_conn_id)


def _section(raw: dict, name: str, path: Path) -> dict:
    value = raw.get(name) or {}
    if not isinstance(value, dict):
        raise ConfigurationError(f"{path}: alerts.{name} must be a mapping")
    return value


def parse_alerts(raw: Any, path: Path) -> AlertSettings:
    """``alerts`` (the YAML value, or None) → settings; a wrong shape raises naming the key."""
    if raw is None:
        return AlertSettings()
    if not isinstance(raw, dict) or set(raw) - {"smtp", "slack"}:
        raise ConfigurationError(f"{path}: alerts must be a mapping with the keys smtp and/or slack")
    smtp, slack = _section(raw, "smtp", path), _section(raw, "slack", path)
    unknown = (set(smtp) - {"conn_id", "to", "from_email"}) | (set(slack) - {"conn_id", "channel"})
    if unknown:
        raise ConfigurationError(f"{path}: unknown alerts setting(s) {', '.join(sorted(unknown))}")
    to = smtp.get("to") or []
    to = [to] if isinstance(to, str) else to
    if smtp and not (isinstance(to, list) and to and all(isinstance(t, str) and "@" in t for t in to)):
        raise ConfigurationError(f"{path}: alerts.smtp.to must list at least one address")
    if slack and not slack.get("conn_id"):
        raise ConfigurationError(f"{path}: alerts.slack.conn_id is required")
    return AlertSettings(
        smtp_conn_id=smtp.get("conn_id") or ("smtp_default" if smtp else None),
        smtp_to=tuple(to),
        smtp_from=smtp.get("from_email"),
        slack_conn_id=slack.get("conn_id"),
        slack_channel=slack.get("channel"),
    )


def load_alert_settings(path: str | os.PathLike | None = None) -> AlertSettings:
    """The ``alerts:`` key of the sync config (read as raw YAML: config.SyncConfig has no field for it yet)."""
    path = Path(path or os.environ.get("AUDIENCE_SYNC_CONFIG") or config.DEFAULT_CONFIG)
    raw = config.read_yaml_file(path, "sync configuration") or {}
    return parse_alerts(raw.get("alerts") if isinstance(raw, dict) else None, path)


def _counts(report: dict[str, Any] | None) -> str:
    if not report:
        return "No report was written: the run stopped before its report task, so no counts are final"
    profiles, contacts = report.get("profiles") or {}, report.get("contacts") or {}
    parts = [
        f"{name} {profiles[name]:,}" for name in ("exported", "valid", "rejected") if profiles.get(name) is not None
    ]
    parts += [f"{name} {contacts[name]:,}" for name in ("created", "updated") if contacts.get(name) is not None]
    return "Counts: profiles " + ", ".join(parts) if parts else "The report holds no counts"


def alert_message(
    dag_id: str,
    run_id: str,
    task_id: str | None,
    try_number: int | None,
    error: BaseException | str | None,
    report: dict[str, Any] | None,
    folder: str,
    error_type: str | None = None,
) -> str:
    """One paragraph for a person: what failed and why, the counts, where the report and files are.
    ``error_type``: the exception's class name when ``error`` is its text (a recorded failure)."""
    reason = mask_emails(str(error) if error is not None else "no error was recorded")
    if len(reason) > MAX_ERROR_CHARS:
        reason = reason[:MAX_ERROR_CHARS] + "…"
    kind = type(error).__name__ if isinstance(error, BaseException) else error_type or "failure"
    what = "was stopped by the mass-change guard" if kind == "MassChangeBlocked" else "failed"
    where = f" at task {task_id}" + (f" (try {try_number})" if try_number else "") if task_id else ""
    report_at = f"{folder}/report.md" if report else f"the run folder {folder}"
    return (
        f"Audience sync {dag_id} run {run_id} {what}{where}: {kind}: {reason}. {_counts(report)}. "
        f'Report: {report_at} (also on the run\'s "Sync report" tab in Airflow). '
        "HubSpot kept what earlier runs wrote; the snapshot was not advanced, "
        "so the next run resends what this one did not confirm."
    )


def _send(settings: AlertSettings, subject: str, message: str, context: dict) -> None:
    # No DAG for the notifiers' template environment: the text is final, and a DAG-level callback's
    # context may hold a serialized DAG, which has none.
    context = {**context, "dag": None}
    if settings.smtp_to:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        # notify() directly: the text is sent as it is, never rendered as a Jinja template.
        SmtpNotifier(
            to=list(settings.smtp_to),
            from_email=settings.smtp_from,
            subject=subject,
            html_content=f"<p>{html.escape(message)}</p>",
            smtp_conn_id=settings.smtp_conn_id,
        ).notify(context)
    if settings.slack_conn_id:
        try:
            from airflow.providers.slack.notifications.slack import SlackNotifier
        except ImportError:
            raise ConfigurationError("alerts.slack needs the apache-airflow-providers-slack package") from None
        SlackNotifier(slack_conn_id=settings.slack_conn_id, text=message, channel=settings.slack_channel).notify(
            context
        )


def notify_failure(context: dict) -> None:
    """``on_failure_callback``: send the alert paragraph to every configured notifier."""
    settings = load_alert_settings()
    if not settings.enabled:
        return
    dag_id, run_id = context["dag"].dag_id, context["run_id"]
    ti = context.get("ti") or context.get("task_instance")
    task_id, try_number, error, error_type = (
        getattr(ti, "task_id", None), getattr(ti, "try_number", None), context.get("exception"), None
    )
    recorded = run_path(dag_id, run_id) / FAILURE_RECORD  # a DAG-level callback: the run's first failure
    if error is None and recorded.exists():
        first = storage.read_json(recorded)
        task_id, try_number, error, error_type = (first[k] for k in ("task_id", "try_number", "error", "error_type"))
    folder = str(run_path(dag_id, run_id))
    message = alert_message(dag_id, run_id, task_id, try_number, error, load_report(dag_id, run_id), folder, error_type)
    _send(settings, f"[Airflow] audience sync {dag_id} run {run_id} failed", message, context)
    log.info(
        "failure alert sent to %d recipient(s)%s", len(settings.smtp_to), " and Slack" if settings.slack_conn_id else ""
    )
