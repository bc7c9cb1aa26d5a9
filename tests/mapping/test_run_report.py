"""The run report: built from stage results, rendered for the log and as Markdown."""

from __future__ import annotations

from audience_sync.report import build_report, render_markdown, render_table

STAGES = {
    "export": {"duration_s": 12.5, "counts": {"exported_profiles": 1000}},
    "map": {
        "duration_s": 1.25,
        "counts": {
            "exported": 1000,
            "valid": 940,
            "deduplicated": 20,
            "rejected": 60,
            "rejected_by_category": {"DUPLICATE_EMAIL": 20, "MISSING_EMAIL": 30, "INVALID_EMAIL": 10},
        },
    },
    "plan": {
        "duration_s": 0.5,
        "counts": {"new": 100, "changed": 40, "exited": 10, "unchanged": 788, "held": 2, "to_send": 150},
        "sent_by_audience": {"aep_gold": {"realized": 90, "exited": 10}, "aep_churn": {"existing": 50}},
    },
    "upsert": {
        "duration_s": 2.0,
        "counts": {"created": 100, "updated": 46, "gone": 1, "rejected_by_category": {"INVALID_OPTION": 4}},
    },
    "verify": {
        "duration_s": 0.75,
        "expected": {"aep_gold": {"realized": 500, "exited": 10}, "aep_churn": {"existing": 50}},
        "found": {"aep_gold": {"realized": 500, "exited": 9}, "aep_churn": {"existing": 50}},
    },
}


def test_build_report_summarises_every_stage():
    report = build_report(STAGES)
    assert report["profiles"] == {"exported": 1000, "valid": 940, "deduplicated": 20, "rejected": 64}
    assert {"stage": "upsert", "category": "INVALID_OPTION", "count": 4} in report["rejected_by_reason"]
    assert {"stage": "map", "category": "MISSING_EMAIL", "count": 30} in report["rejected_by_reason"]
    assert report["contacts"] == {"to_send": 150, "created": 100, "updated": 46, "unchanged": 788, "skipped": 2, "gone": 1}
    assert report["steps"][0] == {"step": "export", "duration_s": 12.5}
    assert report["total_duration_s"] == 17.0
    assert report["upsert_rate_per_s"] == 75.0  # (100 + 46 + 4) records in 2 s
    gold = [row for row in report["audiences"] if row["property"] == "aep_gold"]
    assert [(r["status"], r["sent"], r["expected"], r["found"], r["match"]) for r in gold] == [
        ("realized", 90, 500, 500, "yes"),
        ("exited", 10, 10, 9, "NO"),
    ]


def test_report_of_a_partial_run_has_no_gaps_filled_in():
    report = build_report({"map": {"duration_s": 1, "counts": {"exported": 3, "valid": 3}}})
    assert report["contacts"]["created"] is None and report["upsert_rate_per_s"] is None
    assert report["audiences"] == [] and report["rejected_by_reason"] == []
    assert "_none_" in render_markdown(report)


def test_render_markdown_and_table():
    report = build_report(STAGES, title="Nightly sync")
    markdown = render_markdown(report)
    assert markdown.startswith("# Nightly sync\n")
    assert "| profiles exported | 1000 |" in markdown
    assert "| map | MISSING_EMAIL | 30 |" in markdown
    assert "| aep_gold | exited | 10 | 10 | 9 | NO |" in markdown
    assert "| upsert rate (records/s) | 75.0 |" in markdown
    text = render_table(report["steps"])
    lines = text.splitlines()
    assert lines[0].split() == ["step", "duration_s"] and lines[2].split() == ["export", "12.5"]
    assert lines[0].index("duration_s") == lines[2].index("12.5")  # aligned columns
    assert lines[3].startswith("map ") and lines[3].split()[1] == "1.25"
    assert render_table([]) == "(none)"
    assert render_table([{"a": None, "b": 1}]).splitlines()[2].split() == ["-", "1"]


def test_hubspot_rejects_of_a_real_upsert_reach_the_report(hubspot_conn, tmp_path):
    """The upsert's real summary, through the typed contract, shows HubSpot's rejects by reason."""
    import pandas as pd
    from audience_sync.clients.hubspot import HubSpotClient
    from audience_sync.contracts import UpsertSummary
    from audience_sync.hooks.hubspot import HubSpotHook
    from audience_sync.operators.sync import upsert_totals
    from audience_sync.upsert import upsert_file

    client = HubSpotClient(HubSpotHook())
    client.create_group("test_audiences", "Test audiences")
    client.create_property(
        {"name": "aep_gold", "label": "Gold", "type": "enumeration", "fieldType": "select",
         "groupName": "test_audiences", "options": [{"label": s, "value": s} for s in ("realized", "exited")]}
    )
    emails = [f"person{i}@example.com" for i in range(10)] + ["not-an-email"]
    statuses = ["realized"] * 8 + ["platinum", "gold-ish", "realized"]
    path = tmp_path / "chunk.parquet"
    pd.DataFrame({"email": emails, "aep_gold": statuses}).astype("string").to_parquet(path, index=False)
    summary = upsert_file(client, str(path), tmp_path / "out", batch_size=100)

    totals = upsert_totals([UpsertSummary.from_xcom(summary)])
    assert totals["created"] == 8 and totals["rejected"] == 3
    document = build_report({"upsert": {"counts": totals, "duration_s": 1.0}})
    rejected = {(r["stage"], r["category"]): r["count"] for r in document["rejected_by_reason"]}
    assert sum(rejected.values()) == 3 and all(stage == "upsert" for stage, _ in rejected)
    assert document["profiles"]["rejected"] == 3
    assert "| upsert | VALIDATION_ERROR | 3 |" in render_markdown(document)


def test_the_report_says_why_the_flow_service_connection_was_skipped():
    from audience_sync.report import connection_summary

    skipped = {"connection_id": None, "etag": None, "created": False, "dry_run": False, "skipped": "no OAuth app"}
    document = build_report({}) | {"flow_service_connection": connection_summary(skipped)}
    assert "Flow Service connection: skipped (no OAuth app)" in render_markdown(document)
    made = connection_summary({"connection_id": "c-1", "etag": "e", "created": True, "dry_run": False})
    assert made == "created (c-1)"
