"""The sync report in a real browser: Debian's chromium, headless, driven by Playwright.

A real sync (``dag.test()`` against both sandboxes) writes ``report.json``; Airflow's api-server
runs as its own process on the same metadata database with the simple auth manager and a
non-admin user; the browser logs in through Airflow's login page, opens the run's "Sync report"
tab and the page itself, and every number shown is checked against ``report.json``. The Test
button's endpoint is exercised over HTTP on the same server. Screenshot: docs/sync_report.png.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from e2e_support import DAG_ID, run_sync, start_world

from scripts.airflow_stack import AirflowStack, standalone_env
from scripts.local_connections import sandbox_connections

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = ROOT / "docs" / "sync_report.png"
USER, PASSWORD = "analyst", "analyst-password-for-the-test"  # role viewer: may read DAGs and runs
OPS, OPS_PASSWORD = "ops", "ops-password-for-the-test"  # role op: may edit and test connections


def browser_or_skip():
    """Chromium from scripts/install_browser.sh; CI must have it (a skip there would hide the test)."""
    if not os.access(CHROMIUM, os.X_OK):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: run scripts/install_browser.sh")
        pytest.skip(f"{CHROMIUM} is missing: run scripts/install_browser.sh")
    from playwright.sync_api import sync_playwright

    return sync_playwright


def api_server_env(home: Path) -> dict[str, str]:
    """The stack's settings, on the test session's metadata DB (where dag.test() recorded the run),
    with a real login (no all-admins), one viewer-role user and the Test button enabled."""
    env = standalone_env(home)
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({USER: PASSWORD, OPS: OPS_PASSWORD}))
    env.update(
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="False",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=f"{USER}:viewer,{OPS}:op",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(passwords),
        AIRFLOW__CORE__TEST_CONNECTION="Enabled",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{os.environ['AIRFLOW_HOME']}/airflow.db",
    )
    return env


def expected_cells(report: dict) -> dict[str, str]:
    """Every number of report.json that the page must show, by its data-key."""
    cells = {f"profiles.{k}": v for k, v in report["profiles"].items()}
    cells.update({f"contacts.{k}": v for k, v in report["contacts"].items()})
    cells["run.upsert_rate_per_s"] = report["upsert_rate_per_s"]
    for i, row in enumerate(report["rejected_by_reason"]):
        cells[f"rejected_by_reason.{i}.count"] = row["count"]
    for i, row in enumerate(report["audiences"]):
        cells.update({f"audiences.{i}.{k}": row[k] for k in ("sent", "expected", "found")})
    return {k: "-" if v is None else str(v) for k, v in cells.items()}


@pytest.mark.timeout(240)
def test_report_page_in_a_real_browser(airflow_db, tmp_path, monkeypatch):
    sync_playwright = browser_or_skip()
    world = start_world(tmp_path, monkeypatch, profiles=300)
    stack = None
    try:
        first = run_sync(world, audiences=[a["id"] for a in world.audiences[:2]], full_refresh=True)
        # then an incremental run that adds the third audience: the page shows it against the first
        outcome = run_sync(world, audiences=[a["id"] for a in world.audiences])
        assert first["state"] == outcome["state"] == "success" and outcome["report"], outcome
        report, run_id = outcome["report"], outcome["run_id"]
        rates = [r["report"]["upsert_rate_per_s"] for r in (first, outcome)]
        stack = AirflowStack(api_server_env(tmp_path / "airflow"), tmp_path / "stack", ("api-server",))
        stack.start()
        api = stack.api
        api.wait_healthy()
        base = api.url
        page_path = f"/audience-sync/dags/{DAG_ID}/runs/{quote(run_id, safe='')}"
        assert requests.get(base + page_path, timeout=30).status_code == 401  # no login, no page

        token = requests.post(f"{base}/auth/token", json={"username": OPS, "password": OPS_PASSWORD}, timeout=30)
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        for conn_id, fields in sandbox_connections(world.hubspot.url, world.aep.url).items():
            answer = requests.post(  # the connection form's Test button, over HTTP
                f"{base}/api/v2/connections/test",
                json={"connection_id": conn_id, **fields},
                headers=headers,
                timeout=60,
            )
            assert answer.status_code == 200 and answer.json()["status"] is True, answer.text

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1250})
                run_url = f"{base}/dags/{DAG_ID}/runs/{quote(run_id, safe='')}"
                page.goto(run_url)
                page.wait_for_url("**/auth/login**")  # Airflow's own login, no login of the plugin's
                page.locator("input[name=username]").fill(USER)
                page.locator("input[name=password]").fill(PASSWORD)
                page.get_by_role("button", name="Sign in").click()
                page.wait_for_url(run_url + "**")
                page.get_by_text("Sync report", exact=True).first.click()  # the tab on the DAG run page
                frame = page.frame_locator("iframe")
                frame.locator('[data-key="profiles.exported"]').wait_for(timeout=30_000)
                shown = {
                    key: frame.locator(f'[data-key="{key}"]').first.inner_text().strip()
                    for key in expected_cells(report)
                }
                assert shown == expected_cells(report)
                assert frame.locator('[data-key="run.run_id"]').inner_text() == run_id
                chart = frame.locator('svg[data-chart="upsert rate per run"] circle')
                assert chart.count() == sum(rate is not None for rate in rates) >= 1
                frame_text = frame.locator("body").inner_text()
                assert "@" not in frame_text  # no email address anywhere on the page
                SCREENSHOT.parent.mkdir(exist_ok=True)
                page.screenshot(path=str(SCREENSHOT))

                profiles = report["profiles"]  # the rejects files: map rejects, deduplicated profiles, HubSpot's
                rejects = profiles["rejected"] + profiles["deduplicated"] + (report["contacts"]["rejected"] or 0)
                with page.expect_download() as download:
                    frame.locator('[data-key="rejects.download"]').click()
                csv_text = Path(download.value.path()).read_text()
                assert len(csv_text.splitlines()) == 1 + rejects and "@" not in csv_text

                page.goto(f"{base}/dags/{DAG_ID}")
                page.get_by_text("Sync trend", exact=True).first.click()  # the tab on the DAG page
                trend = page.frame_locator("iframe")
                assert trend.locator('[data-key="trend.0.valid"]').inner_text(timeout=30_000) == str(
                    report["profiles"]["valid"]
                )
            finally:
                browser.close()
    finally:
        if stack:
            stack.stop()
        world.stop()
