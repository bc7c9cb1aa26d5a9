"""The run report: what one sync run read, rejected, sent and found, and how long each step took.

Counts only, never emails or secrets, so the report can go to logs, XComs and a Markdown file.
"""

from __future__ import annotations

from typing import Any

from audience_sync.constants import AUDIENCE_STATUSES

_STATUS_ORDER = {status: n for n, status in enumerate(AUDIENCE_STATUSES)}


def build_report(stages: dict[str, dict[str, Any]], title: str = "AEP → HubSpot audience sync") -> dict[str, Any]:
    """Summarise the stage results of a run. Every key is optional; stages run in the dict's order.

    ``stages`` schema::

        {
          "<any step>": {"duration_s": float, ...},          # listed under steps
          "map":    {"counts": {"exported", "valid", "deduplicated",
                                "rejected_by_category": {CATEGORY: n}}, "duration_s"},
          "plan":   {"counts": {"new", "changed", "exited", "unchanged", "held", "to_send"},
                     "sent_by_audience": {property: {status: n}}, "duration_s"},
          "upsert": {"counts": {"created", "updated", "gone", "sent",
                                "rejected_by_category": {CATEGORY: n}}, "duration_s"},  # UpsertSummary.total
          "verify": {"expected": {property: {status: n}}, "found": {property: {status: n}}, "duration_s"},
        }

    Any stage may carry ``counts.rejected_by_category``; rejects are listed per stage and category.
    ``skipped`` = contacts held back by the plan (rejected earlier in the run); ``gone`` = contacts an exit
    targeted that HubSpot no longer has (deleted or merged), never re-created.
    The upsert rate is records sent per second of the upsert step (``sent``, else created + updated +
    rejected).
    """
    counts = {name: stage.get("counts") or {} for name, stage in stages.items()}
    mapped, planned, upserted = counts.get("map", {}), counts.get("plan", {}), counts.get("upsert", {})
    rejected = [
        {"stage": name, "category": category, "count": n}
        for name, stage_counts in counts.items()
        for category, n in sorted((stage_counts.get("rejected_by_category") or {}).items())
    ]
    upsert_rejected = sum((upserted.get("rejected_by_category") or {}).values())
    sent = upserted.get("sent", upserted.get("created", 0) + upserted.get("updated", 0) + upsert_rejected)
    upsert_seconds = (stages.get("upsert") or {}).get("duration_s")
    steps = [
        {"step": name, "duration_s": round(float(stage["duration_s"]), 3)}
        for name, stage in stages.items()
        if stage.get("duration_s") is not None
    ]
    return {
        "title": title,
        "profiles": {
            "exported": mapped.get("exported"),
            "valid": mapped.get("valid"),
            "deduplicated": mapped.get("deduplicated"),
            "rejected": sum(r["count"] for r in rejected),
        },
        "rejected_by_reason": rejected,
        "contacts": {
            "to_send": planned.get("to_send"),
            "created": upserted.get("created"),
            "updated": upserted.get("updated"),
            "unchanged": planned.get("unchanged"),
            "skipped": planned.get("held"),
            "gone": upserted.get("gone"),
        },
        "audiences": _audience_rows(stages),
        "steps": steps,
        "total_duration_s": round(sum(s["duration_s"] for s in steps), 3),
        "upsert_rate_per_s": round(sent / upsert_seconds, 1) if upsert_seconds else None,
    }


def _audience_rows(stages: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per audience property and status: sent this run, expected in HubSpot, found there."""
    sources = {
        "sent": (stages.get("plan") or {}).get("sent_by_audience") or {},
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


def render_table(rows: list[dict[str, Any]]) -> str:
    """A plain aligned text table for task logs (columns: the union of the rows' keys, in order)."""
    if not rows:
        return "(none)"
    columns = list(dict.fromkeys(key for row in rows for key in row))
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) for line in cells]
    return "\n".join(line.rstrip() for line in lines)


def _markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "_none_"
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def summary_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The headline numbers as metric/value rows (profiles, contacts, timing)."""
    rows = [{"metric": f"profiles {k}", "value": v} for k, v in report["profiles"].items()]
    rows += [{"metric": f"contacts {k}", "value": v} for k, v in report["contacts"].items()]
    rows.append({"metric": "total duration (s)", "value": report["total_duration_s"]})
    rows.append({"metric": "upsert rate (records/s)", "value": report["upsert_rate_per_s"]})
    return rows


def render_markdown(report: dict[str, Any]) -> str:
    sections = [
        f"# {report['title']}",
        *([f"Flow Service connection: {report['flow_service_connection']}"] if report.get("flow_service_connection") else []),
        "## Summary",
        _markdown_table(summary_rows(report)),
        "## Rejected by reason",
        _markdown_table(report["rejected_by_reason"]),
        "## Audiences (sent this run, expected in HubSpot, found in HubSpot)",
        _markdown_table(report["audiences"]),
        "## Steps",
        _markdown_table(report["steps"]),
    ]
    return "\n\n".join(sections) + "\n"
