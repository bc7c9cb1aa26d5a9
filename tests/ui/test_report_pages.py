"""The sync report pages: the pure renderers, the rejects reader (no emails out), and the plugin's
routes inside Airflow's real api-server app with its real auth (refused without a login)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from audience_sync import storage
from audience_sync.ui import render, reports

DAG = "hubspot_audience_sync"
RUN = "manual__2026-12-01T10:00:00+00:00"
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")


def sample_report(run_id: str = RUN, dry_run: bool = False, rate: float | None = 812.5) -> dict:
    sent = "would_send" if dry_run else "sent"  # as report.build_report names the column
    return {
        "title": "AEP → HubSpot audience sync",
        "dag_id": DAG,
        "run_id": run_id,
        "dry_run": dry_run,
        "full_refresh": False,
        "audience_ids": {"aud-1": "VIP <b>buyers</b>"},
        "profiles": {"exported": 1000, "deduplicated": 20, "rejected": 30, "valid": 950},
        "rejected_by_reason": [
            {"stage": "map", "category": "INVALID_EMAIL", "count": 30},
            {"stage": "upsert", "category": "INVALID_PROPERTY_VALUE", "count": 20},
        ],
        "contacts": {
            "to_send": 940, "new": 900, "changed": 35, "exited": 5, "resent": 0, "unchanged": 10, "skipped": 0,
            "created": 900, "updated": 20, "rejected": 20, "gone": 0,
        },
        "audiences": [
            {"property": "aud_vip", "status": "realized", sent: 940, "expected": 940, "found": 940, "match": "yes"},
            {"property": "aud_vip", "status": "exited", sent: 5, "expected": 5, "found": 4, "match": "NO"},
        ],
        "upsert_chunks": [] if dry_run else [
            {"started_at": 100.0, "finished_at": 101.0, "sent": 500},
            {"started_at": 100.2, "finished_at": 101.2, "sent": 460},
        ],
        "steps": [{"step": "map", "duration_s": 1.5}, {"step": "upsert", "duration_s": 1.2}],
        "total_duration_s": 2.7,
        "upsert_rate_per_s": rate,
    }


class Cells(HTMLParser):
    """``data-key`` → text of the element, as a reader of the page sees it."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.cells: dict[str, str] = {}
        self._open: list[str | None] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        if tag not in ("br", "circle", "line", "polyline", "meta"):
            self._open.append(dict(attrs).get("data-key"))

    def handle_endtag(self, tag):
        if tag not in ("br", "circle", "line", "polyline", "meta") and self._open:
            self._open.pop()

    def handle_data(self, data):
        for key in self._open:
            if key:
                self.cells[key] = self.cells.get(key, "") + data


def test_run_page_shows_every_number_of_the_report():
    report = sample_report()
    trend = [render.trend_row(report), render.trend_row(sample_report("scheduled__1", rate=400.0))]
    html = render.run_page(report, rejects_sample=[], rejects_total=0, download_href=None, trend=trend, dag_href="/d")
    cells = Cells(html).cells
    for section in ("profiles", "contacts"):
        for name, value in report[section].items():
            assert cells[f"{section}.{name}"] == str(value), (section, name)
    assert cells["contacts.cleared"] == "-"  # a count the report lacks is shown as unknown, not 0
    assert cells["run.upsert_rate_per_s"] == "812.5"
    assert [cells[f"rejected_by_reason.{i}.count"] for i in range(2)] == ["30", "20"]
    assert cells["audiences.1.expected"] == "5" and cells["audiences.1.found"] == "4"
    assert '<td class="bad">NO</td>' in html
    assert "VIP &lt;b&gt;buyers&lt;/b&gt;" in html  # escaped, never markup
    assert 'data-chart="upsert rate per run"' in html and "<polyline" in html
    during = re.search(r'<svg[^>]*data-chart="upsert rate during this run".*?</svg>', html).group(0)
    assert during.count("<circle") == 20
    assert cells["profiles.explained"].startswith("1000 profiles exported")
    assert "20 were deduplicated" in cells["profiles.explained"] and "30 rejected" in cells["profiles.explained"]
    assert "DRY RUN" not in html and "rejects.download" not in cells
    assert "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing loaded from outside


def test_dry_run_page_says_so_and_shows_the_plan():
    html = render.run_page(
        sample_report(dry_run=True, rate=None),
        rejects_sample=[],
        rejects_total=0,
        download_href=None,
        trend=[],
        dag_href="/d",
    )
    cells = Cells(html).cells
    assert "DRY RUN" in cells["run.dry_run"]
    assert "Plan (what a real run would send)" in html and "<th>would send</th>" in html
    assert cells["audiences.0.would_send"] == "940"
    assert "upsert rate per run: no data yet" in html and "upsert rate during this run: no data yet" in html
    older = sample_report(dry_run=True) | {"audiences": sample_report()["audiences"]}  # column still named "sent"
    html = render.run_page(older, rejects_sample=[], rejects_total=0, download_href=None, trend=[], dag_href="/d")
    assert Cells(html).cells["audiences.0.would_send"] == "940"


def test_upsert_rate_during_a_run_adds_up_the_tasks_running_at_once():
    chunks = [
        {"started_at": 1000.0, "finished_at": 1010.0, "sent": 100},  # 10/s over the whole upsert
        {"started_at": 1005.0, "finished_at": 1010.0, "sent": 100},  # 20/s in its second half
    ]
    assert render.rate_over_time(chunks, bins=2) == [("+2.5 s", 10.0), ("+7.5 s", 30.0)]
    points = render.rate_over_time(chunks)
    assert len(points) == 20 and sum(rate for _, rate in points) * 0.5 == 200  # every record counted once
    instant = [{"started_at": 5.0, "finished_at": 5.0, "sent": 7}, {"started_at": 4.0, "finished_at": 6.0, "sent": 2}]
    assert render.rate_over_time(instant, bins=2) == [("+0.5 s", 1.0), ("+1.5 s", 8.0)]
    assert render.rate_over_time([]) == []


def test_dag_page_lists_runs_newest_first_with_links_and_charts():
    trend = [
        render.trend_row(sample_report("run_b", rate=500.0)),
        render.trend_row(sample_report("run_a", dry_run=True)),
    ]
    html = render.dag_page(DAG, trend, lambda run_id: f"/x/{run_id}")
    cells = Cells(html).cells
    assert cells["trend.0.upsert_rate_per_s"] == "500.0" and cells["trend.1.audience_mismatches"] == "1"
    assert '<a href="/x/run_b">run_b</a>' in html and "dry run" in html
    assert html.count("<svg") == 3
    assert render.run_label("scheduled__2026-12-01T02:00:00+00:00") == "2026-12-01T02:00"
    assert "No run has written a report yet" in render.dag_page(DAG, [], str)


def test_line_chart_draws_gaps_not_zeros():
    svg = render.line_chart([("a", 10.0), ("b", None), ("c", 20.0)], "rate", "records/s", width=212, height=100)
    assert svg.count("<circle") == 2
    points = re.search(r'points="([^"]+)"', svg).group(1).split()
    assert points == ["56.0,42.0", "200.0,20.0"]  # plot from y=20 (top, 20/s) to y=64 (0): 10/s half-way


def write_rejects(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = ("stage", "record_id", "email", "field", "category", "reason")
    pq.write_table(pa.table({c: pa.array([r.get(c) for r in rows], pa.string()) for c in columns}), path)


@pytest.fixture
def run_dir():
    folder = storage.run_folder(DAG, RUN)
    storage.write_json(sample_report(), folder / "report.json")
    local = Path(storage.local_or_none(folder))
    write_rejects(
        local / "map" / "rejects" / "map.parquet",
        [
            {
                "stage": "map",
                "record_id": "p-1",
                "email": "ann@example.com",
                "field": "email",
                "category": "INVALID_EMAIL",
                "reason": "not an email: 'ann@example'",
            },
            {
                "stage": "map",
                "record_id": "bob@example.org",
                "email": "bob@example.org",
                "field": "email",
                "category": "DUPLICATE_EMAIL",
                "reason": "duplicate of bob@example.org",
            },
        ],
    )
    write_rejects(
        local / "upsert" / "chunk-00000.rejects.parquet",
        [
            {
                "stage": "upsert",
                "record_id": "p-3",
                "email": "cy@example.net",
                "field": "firstname",
                "category": "INVALID_PROPERTY_VALUE",
                "reason": "too long",
            }
        ],
    )
    return folder


def test_rejects_are_read_without_any_email(run_dir):
    files = reports.reject_files(DAG, RUN)
    assert [f.name for f in files] == ["map.parquet", "chunk-00000.rejects.parquet"]
    sample, total = reports.rejects_sample(files, limit=2)
    assert total == 3 and len(sample) == 2
    assert sample[1]["record_id"] == reports.MASK and sample[1]["reason"] == f"duplicate of {reports.MASK}"
    assert sample[0]["reason"] == f"not an email: '{reports.MASK}'"
    assert all("email" not in row for row in sample)
    text = reports.rejects_csv(files)
    assert text.splitlines()[0] == "stage,record_id,field,category,reason" and len(text.splitlines()) == 4
    assert not EMAIL.search(text) and "@" not in text
    assert reports.recent_reports(DAG)[0]["run_id"] == RUN
    assert reports.load_report(DAG, "no-such-run") is None
    assert reports.reject_files(DAG, "no:such+run") == []
    assert not storage.run_path(DAG, "no:such+run").exists()  # reading never creates a run folder
    assert reports.download_name(DAG, RUN) == "manual__2026-12-01T10_00_00_00_00-rejects.csv"


@pytest.fixture
def api_client(airflow_db):
    """Airflow's api-server app (plugins mounted, simple auth manager) in process."""
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    client = TestClient(create_app("core"))
    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="viewer", role="viewer"))
    return client, {"Authorization": f"Bearer {token}"}


def test_plugin_routes_need_a_user_allowed_to_read_the_dag(run_dir, api_client):
    client, auth = api_client
    page = f"/audience-sync/dags/{DAG}/runs/{quote(RUN, safe='')}"
    for path in (page, page + "/rejects.csv", f"/audience-sync/dags/{DAG}"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers={"Authorization": "Bearer forged"}).status_code == 403, path
    response = client.get(page, headers=auth)
    assert response.status_code == 200
    assert Cells(response.text).cells["profiles.exported"] == "1000"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert f'href="{page}/rejects.csv"' in response.text
    assert "@" not in response.text
    download = client.get(page + "/rejects.csv", headers=auth)
    assert download.status_code == 200 and "attachment" in download.headers["content-disposition"]
    assert "@" not in download.text and len(download.text.splitlines()) == 4
    trend = client.get(f"/audience-sync/dags/{DAG}", headers=auth)
    assert f'href="{page}"' in trend.text
    assert client.get(f"/audience-sync/dags/{DAG}/runs/other", headers=auth).status_code == 404


def test_plugin_links_its_views_on_the_run_and_dag_pages(api_client):
    client, auth = api_client
    plugins = client.get("/api/v2/plugins", headers=auth).json()["plugins"]
    views = {v["destination"]: v for p in plugins if p["name"] == "audience_sync_ui" for v in p["external_views"]}
    assert views["dag_run"]["href"] == "/audience-sync/dags/{DAG_ID}/runs/{RUN_ID}"
    assert views["dag"]["href"] == "/audience-sync/dags/{DAG_ID}"
