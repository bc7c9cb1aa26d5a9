"""The run report: built from stage results, rendered for the log and as Markdown."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
from audience_sync import incremental
from audience_sync.report import DRY_RUN_NOTICE, build_report, render_markdown

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
        "counts": {
            "new": 100, "changed": 40, "exited": 10, "unchanged": 788, "held": 2, "to_send": 150, "losing_values": 3,
        },
        "sent_by_audience": {"aep_gold": {"realized": 90, "exited": 10}, "aep_churn": {"existing": 50}},
    },
    "upsert": {
        "duration_s": 2.0,
        "counts": {
            "created": 100, "updated": 46, "gone": 1, "rejected": 4, "rejected_by_category": {"INVALID_OPTION": 4},
        },
        "chunks": [  # two upsert tasks, the second started first
            {"started_at": 10.5, "finished_at": 12.0, "sent": 70},
            {"started_at": 10.0, "finished_at": 11.5, "sent": 80},
        ],
    },
    "verify": {
        "duration_s": 0.75,
        "expected": {"aep_gold": {"realized": 500, "exited": 10}, "aep_churn": {"existing": 50}},
        "found": {"aep_gold": {"realized": 500, "exited": 9}, "aep_churn": {"existing": 50}},
    },
}


def test_build_report_summarises_every_stage():
    report = build_report(STAGES)
    # exported = deduplicated + rejected + valid: a deduplicated profile is not counted again as rejected
    assert report["profiles"] == {"exported": 1000, "merged": 0, "deduplicated": 20, "rejected": 40, "valid": 940}
    assert report["rejected_by_reason"] == [
        {"stage": "map", "category": "INVALID_EMAIL", "count": 10},
        {"stage": "map", "category": "MISSING_EMAIL", "count": 30},
        {"stage": "upsert", "category": "INVALID_OPTION", "count": 4},
    ]
    assert report["contacts"] == {
        "to_send": 150, "new": 100, "changed": 40, "exited": 10, "resent": 0, "unchanged": 788, "cleared": 3,
        "skipped": 2, "created": 100, "updated": 46, "rejected": 4, "gone": 1,
    }
    assert report["upsert_chunks"] == [
        {"started_at": 10.0, "finished_at": 11.5, "sent": 80},
        {"started_at": 10.5, "finished_at": 12.0, "sent": 70},
    ]
    assert (report["dry_run"], report["full_refresh"]) == (False, False)
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
    assert set(report["contacts"].values()) == {None} and report["upsert_rate_per_s"] is None
    assert report["audiences"] == [] and report["rejected_by_reason"] == [] and report["upsert_chunks"] == []
    assert "_none_" in render_markdown(report)


def test_render_markdown_and_table():
    report = build_report(STAGES, title="Nightly sync")
    markdown = render_markdown(report)
    assert markdown.startswith("# Nightly sync\n\nMode: incremental\n") and "DRY RUN" not in markdown
    assert "1000 profiles exported: the members" in markdown and "20 were deduplicated" in markdown
    assert "| exported (members of the selected audiences) | 1000 |" in markdown and "| rejected (by reason below) | 40 |" in markdown
    assert "| map | MISSING_EMAIL | 30 |" in markdown and "DUPLICATE_EMAIL" not in markdown
    assert "| to send | 150 |" in markdown and "| unchanged (not sent) | 788 |" in markdown
    assert "| gone in HubSpot (deleted or merged away) | 1 |" in markdown
    assert "## Audiences (sent this run, expected in HubSpot, found in HubSpot)" in markdown
    assert "| aep_gold | exited | 10 | 10 | 9 | NO |" in markdown
    assert "| upsert rate (records/s) | 75.0 |" in markdown
    assert "| export | 12.5 |" in markdown


def test_hubspot_rejects_of_a_real_upsert_reach_the_report(hubspot_conn, tmp_path):
    """The upsert's real summary, through the typed contract, shows HubSpot's rejects by reason."""
    import pandas as pd
    from audience_sync.clients.hubspot import HubSpotClient
    from audience_sync.contracts import UpsertSummary
    from audience_sync.hooks.hubspot import HubSpotHook
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

    chunk = UpsertSummary.from_xcom(summary)
    totals = UpsertSummary.total([chunk])
    assert totals["created"] == 8 and totals["rejected"] == 3
    timing = {"started_at": chunk.started_at, "finished_at": chunk.finished_at, "sent": chunk.sent}
    document = build_report({"upsert": {"counts": totals, "duration_s": 1.0, "chunks": [timing]}})
    rejected = {(r["stage"], r["category"]): r["count"] for r in document["rejected_by_reason"]}
    assert sum(rejected.values()) == 3 and all(stage == "upsert" for stage, _ in rejected)
    assert document["contacts"]["rejected"] == 3 and document["profiles"]["rejected"] is None
    assert "| upsert | VALIDATION_ERROR | 3 |" in render_markdown(document)
    [shown] = document["upsert_chunks"]
    assert shown["sent"] == 11 and 0 <= shown["finished_at"] - shown["started_at"] < 60


def test_the_report_says_why_the_flow_service_connection_was_skipped():
    from audience_sync.report import connection_summary

    skipped = {"connection_id": None, "etag": None, "created": False, "dry_run": False, "skipped": "no OAuth app"}
    document = build_report({}) | {"flow_service_connection": connection_summary(skipped)}
    assert "Flow Service connection: skipped (no OAuth app)" in render_markdown(document)
    made = connection_summary({"connection_id": "c-1", "etag": "e", "created": True, "dry_run": False})
    assert made == "created (c-1)"


AUDIENCES = ["aep_gold"]


def mapped_file(folder, rows: list[tuple[str, str | None, str | None]]) -> list[str]:
    """A mapped chunk as map_export writes it: email, one value, one audience status (strings)."""
    folder.mkdir()
    schema = pa.schema([(c, pa.string()) for c in ("email", "firstname", "aep_gold", "_profile_id")])
    table = pa.Table.from_pylist(
        [{"email": e, "firstname": f, "aep_gold": g, "_profile_id": str(i)} for i, (e, f, g) in enumerate(rows)], schema
    )
    pq.write_table(table, folder / "part-00000.parquet")
    return [str(folder / "part-00000.parquet")]


def plan_stage(tmp_path, full_refresh: bool) -> dict:
    """A real plan: 4 contacts sent once, then one changed, one left the audience, two unchanged."""
    first = [("a@x.com", "Ann", "realized"), ("b@x.com", "Ben", "realized"), ("c@x.com", "Cy", "existing"),
             ("d@x.com", "Di", "realized")]
    before = incremental.plan(mapped_file(tmp_path / "m1", first), None, AUDIENCES, False, str(tmp_path / "p1"))
    now = [("a@x.com", "Anna", "realized"), ("b@x.com", "Ben", None), ("c@x.com", "Cy", "existing"),
           ("d@x.com", "Di", "realized")]
    planned = incremental.plan(
        mapped_file(tmp_path / "m2", now), before.next_snapshot_path, AUDIENCES, full_refresh, str(tmp_path / "p2")
    )
    return {"counts": planned.counts, "sent_by_audience": planned.sent_by_audience, "duration_s": 0.1}


def test_a_full_refresh_dry_run_counts_each_contact_in_one_category(tmp_path):
    """Issue 16 §7: a full refresh must not show every contact as both "to send" and "unchanged"."""
    report = build_report({"plan": plan_stage(tmp_path, full_refresh=True)}, dry_run=True, full_refresh=True)
    contacts = report["contacts"]
    assert (contacts["changed"], contacts["exited"], contacts["resent"], contacts["unchanged"]) == (1, 1, 2, 0)
    assert contacts["to_send"] == contacts["new"] + contacts["changed"] + contacts["exited"] + contacts["resent"] == 4
    assert contacts["created"] is None and report["upsert_chunks"] == []
    assert [row["would_send"] for row in report["audiences"]] == [2, 1, 1]  # realized, existing, exited
    markdown = render_markdown(report)
    assert markdown.startswith(f"# AEP → HubSpot audience sync\n\n{DRY_RUN_NOTICE}\n\nMode: full refresh")
    assert "## Contacts (the plan: nothing was sent)" in markdown and "| would send | 4 |" in markdown
    assert "| resent unchanged (full refresh) | 2 |" in markdown and "| unchanged (not sent) | 0 |" in markdown
    assert "## Audiences (would send, expected in HubSpot, found in HubSpot)" in markdown
    assert "| property | status | would_send |" in markdown


def test_an_incremental_plan_leaves_unchanged_contacts_out_of_to_send(tmp_path):
    contacts = build_report({"plan": plan_stage(tmp_path, full_refresh=False)})["contacts"]
    assert (contacts["to_send"], contacts["changed"], contacts["exited"], contacts["resent"]) == (2, 1, 1, 0)
    assert contacts["unchanged"] == 2
