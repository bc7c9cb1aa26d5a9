"""The run report: what one sync run read, rejected, sent and found, and how long each step took.

Counts only, never emails or secrets, so the report can go to logs, XComs and a Markdown file.
"""

from __future__ import annotations

from typing import Any

from audience_sync.constants import AUDIENCE_STATUSES

_STATUS_ORDER = {status: n for n, status in enumerate(AUDIENCE_STATUSES)}
DEDUPLICATED = "DUPLICATE_EMAIL"  # the map's reject category of a profile that lost to another with its email


def build_report(
    stages: dict[str, dict[str, Any]],
    title: str = "AEP → HubSpot audience sync",
    dry_run: bool = False,
    full_refresh: bool = False,
) -> dict[str, Any]:
    """Summarise the stage results of a run. Every key is optional; stages run in the dict's order.

    ``stages`` schema::

        {
          "<any step>": {"duration_s": float, ...},          # listed under steps
          "map":    {"counts": {"exported", "valid", "deduplicated",
                                "rejected_by_category": {CATEGORY: n}}, "duration_s"},
          "plan":   {"counts": incremental.plan's counts (new, changed, exited, unchanged, held, to_send,
                               losing_values, ...),
                     "sent_by_audience": {property: {status: n}}, "duration_s"},
          "upsert": {"counts": UpsertSummary.total, "duration_s",
                     "chunks": [{"started_at", "finished_at", "sent"}, ...]},   # one per upsert task
          "verify": {"expected": {property: {status: n}}, "found": {property: {status: n}}, "duration_s"},
        }

    Profiles add up: exported = valid + merged + deduplicated + rejected, a deduplicated profile (DUPLICATE_EMAIL of
    the map) counted once, as deduplicated, never also as rejected. Contacts add up too: to_send = new +
    changed + exited + resent (unchanged contacts a full refresh sends again), and unchanged counts only the
    contacts left alone, so a full refresh never shows everything as both sent and unchanged. ``cleared``:
    contacts losing a value (sent as empty); ``skipped``: contacts held back by the plan (rejected earlier in
    the run); ``gone``: contacts an exit targeted that HubSpot no longer has (deleted or merged away), never
    re-created. The upsert rate is records sent per second of the upsert step (``sent``, else created +
    updated + rejected); ``upsert_chunks`` keeps each upsert task's times so the rate can be charted over the
    run. A dry run sent nothing: its audience column is ``would_send``, otherwise ``sent``.
    """
    counts = {name: stage.get("counts") or {} for name, stage in stages.items()}
    mapped, planned, upserted = counts.get("map", {}), counts.get("plan", {}), counts.get("upsert", {})
    rejected = [
        {"stage": name, "category": category, "count": n}
        for name, stage_counts in counts.items()
        for category, n in sorted((stage_counts.get("rejected_by_category") or {}).items())
        if (name, category) != ("map", DEDUPLICATED)
    ]
    upsert_rejected = sum((upserted.get("rejected_by_category") or {}).values())
    sent = upserted.get("sent", upserted.get("created", 0) + upserted.get("updated", 0) + upsert_rejected)
    upsert_stage = stages.get("upsert") or {}
    upsert_seconds = upsert_stage.get("duration_s")
    steps = [
        {"step": name, "duration_s": round(float(stage["duration_s"]), 3)}
        for name, stage in stages.items()
        if stage.get("duration_s") is not None
    ]
    return {
        "title": title,
        "dry_run": dry_run,
        "full_refresh": full_refresh,
        "profiles": _profiles(mapped),
        "rejected_by_reason": rejected,
        "contacts": _contacts(planned, upserted, full_refresh),
        "audiences": _audience_rows(stages, "would_send" if dry_run else "sent"),
        "steps": steps,
        "total_duration_s": round(sum(s["duration_s"] for s in steps), 3),
        "upsert_rate_per_s": round(sent / upsert_seconds, 1) if upsert_seconds else None,
        "upsert_chunks": sorted(
            (
                {"started_at": round(c["started_at"], 3), "finished_at": round(c["finished_at"], 3), "sent": c["sent"]}
                for c in upsert_stage.get("chunks") or []
            ),
            key=lambda c: (c["started_at"], c["finished_at"]),
        ),
    }


def _profiles(mapped: dict[str, Any]) -> dict[str, Any]:
    """exported = valid + merged + deduplicated + rejected (rejected without the deduplicated ones; merged:
    rows of one profile exported more than once, e.g. once per audience file, folded into one contact)."""
    if not mapped:
        return dict.fromkeys(("exported", "merged", "deduplicated", "rejected", "valid"))
    by_category = mapped.get("rejected_by_category") or {}
    deduplicated = by_category.get(DEDUPLICATED, 0)
    return {
        "exported": mapped.get("exported"),
        "merged": mapped.get("merged", 0),
        "deduplicated": deduplicated,
        "rejected": sum(by_category.values()) - deduplicated,
        "valid": mapped.get("valid"),
    }


def _contacts(planned: dict[str, Any], upserted: dict[str, Any], full_refresh: bool) -> dict[str, Any]:
    """The plan's categories (each contact in one) and, after a write, what HubSpot did with them."""

    def plan(key: str) -> Any:
        return planned.get(key) if planned else None

    resent, unchanged = (None, None) if not planned else (0, planned.get("unchanged"))
    if planned and full_refresh:
        resent = planned.get("to_send", 0) - sum(planned.get(k, 0) for k in ("new", "changed", "exited"))
        unchanged = 0
    return {
        "to_send": plan("to_send"),
        "new": plan("new"),
        "changed": plan("changed"),
        "exited": plan("exited"),
        "resent": resent,
        "unchanged": unchanged,
        "cleared": plan("losing_values"),
        "skipped": plan("held"),
        **{name: upserted.get(name) for name in ("created", "updated", "rejected", "gone")},
    }


def _audience_rows(stages: dict[str, dict[str, Any]], sent_column: str) -> list[dict[str, Any]]:
    """One row per audience property and status: sent this run (or would be, in a dry run), expected in
    HubSpot, found there."""
    sources = {
        sent_column: (stages.get("plan") or {}).get("sent_by_audience") or {},
        "expected": (stages.get("verify") or {}).get("expected") or {},
        "found": (stages.get("verify") or {}).get("found") or {},
    }
    keys = {(prop, status) for table in sources.values() for prop, by in table.items() for status in by}
    rows = []
    for prop, status in sorted(keys, key=lambda k: (k[0], _STATUS_ORDER.get(k[1], 9), k[1])):
        row = {"property": prop, "status": status}
        row.update(
            {name: table.get(prop, {}).get(status, 0) if prop in table else None for name, table in sources.items()}
        )
        if row["expected"] is not None and row["found"] is not None:
            row["match"] = "yes" if row["expected"] == row["found"] else "NO"
        rows.append(row)
    return rows


def connection_summary(connect: dict[str, Any]) -> str:
    """One line on the Flow Service connection (a ``ConnectResult`` as a dict)."""
    if connect.get("skipped"):
        return f"skipped ({connect['skipped']})"
    if connect.get("dry_run") and not connect.get("connection_id"):
        return "validated (dry run: not created)"
    state = "created" if connect.get("created") else "exists"
    return f"{state} ({connect.get('connection_id')})"


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def _markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "_none_"
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


DRY_RUN_NOTICE = (
    "**DRY RUN: nothing was sent to HubSpot.** The contacts and audiences below are what a real run would send."
)

# How report.md names each number (report.json keeps the keys).
PROFILE_LABELS = {
    "exported": "exported (members of the selected audiences)",
    "merged": "merged (the same profile in several rows, one contact)",
    "deduplicated": "deduplicated (another profile with the same email won)",
    "rejected": "rejected (by reason below)",
    "valid": "valid contacts",
}
CONTACT_LABELS = {
    "to_send": "to send",
    "new": "new",
    "changed": "changed",
    "exited": "exited (only left audiences)",
    "resent": "resent unchanged (full refresh)",
    "unchanged": "unchanged (not sent)",
    "cleared": "cleared (lost a value)",
    "skipped": "skipped (rejected earlier in this run)",
    "created": "created in HubSpot",
    "updated": "updated in HubSpot",
    "rejected": "rejected by HubSpot",
    "gone": "gone in HubSpot (deleted or merged away)",
}


def _metric_rows(values: dict[str, Any], labels: dict[str, str]) -> list[dict[str, Any]]:
    return [{"metric": labels.get(key, key), "value": value} for key, value in values.items()]


def profiles_explained(profiles: dict[str, Any]) -> str:
    """Why the exported profiles became fewer valid contacts, in one sentence (empty before the map ran)."""
    if profiles.get("exported") is None:
        return ""
    return (
        f"{profiles['exported']} profiles exported: the members of the selected audiences (profiles in none of "
        f"them are not exported). {profiles['valid']} became valid contacts: {profiles.get('merged') or 0} rows were merged into "
        f"the same profile's contact, {profiles['deduplicated']} were deduplicated (another profile with the same email won) and {profiles['rejected']} rejected."
    )


def render_markdown(report: dict[str, Any]) -> str:
    """report.md: a dry run says so first; every number under a name that says what it counts."""
    dry_run = bool(report.get("dry_run"))
    explained = profiles_explained(report["profiles"])
    connection = report.get("flow_service_connection")
    contact_labels = {**CONTACT_LABELS, "to_send": "would send"} if dry_run else CONTACT_LABELS
    sent_column = "would send" if dry_run else "sent this run"
    mode = "full refresh (every contact is sent again)" if report.get("full_refresh") else "incremental"
    timing = [
        {"metric": "total duration (s)", "value": report["total_duration_s"]},
        {"metric": "upsert rate (records/s)", "value": report["upsert_rate_per_s"]},
    ]
    sections = [
        f"# {report['title']}",
        *([DRY_RUN_NOTICE] if dry_run else []),
        f"Mode: {mode}",
        *([f"Flow Service connection: {connection}"] if connection else []),
        "## Profiles",
        *([explained] if explained else []),
        _markdown_table(_metric_rows(report["profiles"], PROFILE_LABELS)),
        "## Contacts" + (" (the plan: nothing was sent)" if dry_run else ""),
        _markdown_table(_metric_rows(report["contacts"], contact_labels)),
        "## Rejected by reason",
        _markdown_table(report["rejected_by_reason"]),
        f"## Audiences ({sent_column}, expected in HubSpot, found in HubSpot)",
        _markdown_table(report["audiences"]),
        "## Steps",
        _markdown_table(report["steps"]),
        _markdown_table(timing),
    ]
    return "\n\n".join(sections) + "\n"

