"""The sync report in the Airflow UI: pages served by the api-server, linked from the DAG run page
("Sync report") and the DAG page ("Sync trend") as external views.

Auth is Airflow's own: every route depends on ``requires_access_dag`` (the check core API routes
use), so the pages open for any user allowed to read the DAG's runs, with the UI's session cookie
or a bearer token, and for nobody else. No secrets and no email addresses are on any page.
Top-level module on purpose: plugins/.airflowignore hides the audience_sync package from the loader.
"""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import requires_access_dag
from airflow.plugins_manager import AirflowPlugin
from audience_sync.ui import render, reports
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse

URL_PREFIX = "/audience-sync"
# Pages only: inline styles and SVG, nothing fetched from anywhere.
HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'", "Cache-Control": "no-store"}
can_read_runs = Depends(requires_access_dag("GET", DagAccessEntity.RUN))

app = FastAPI(title="Audience sync reports", docs_url=None, redoc_url=None, openapi_url=None)


def _dag_href(request: Request, dag_id: str) -> str:
    return f"{request.scope.get('root_path', '')}/dags/{quote(dag_id, safe='')}"


def _run_href(request: Request, dag_id: str, run_id: str) -> str:
    return f"{_dag_href(request, dag_id)}/runs/{quote(run_id, safe='')}"


@app.get("/dags/{dag_id}/runs/{run_id}", response_class=HTMLResponse, dependencies=[can_read_runs])
def run_report_page(dag_id: str, run_id: str, request: Request) -> HTMLResponse:
    report = reports.load_report(dag_id, run_id)
    if report is None:
        return HTMLResponse(
            f"<p>Run {escape(run_id)} of {escape(dag_id)} has no sync report (yet): "
            "the report is written by the run's last task.</p>",
            status_code=404,
            headers=HEADERS,
        )
    files = reports.reject_files(dag_id, run_id)
    sample, total = reports.rejects_sample(files)
    page = render.run_page(
        report,
        rejects_sample=sample,
        rejects_total=total,
        download_href=f"{_run_href(request, dag_id, run_id)}/rejects.csv" if total else None,
        trend=[render.trend_row(r) for r in reports.recent_reports(dag_id)],
        dag_href=_dag_href(request, dag_id),
    )
    return HTMLResponse(page, headers=HEADERS)


@app.get("/dags/{dag_id}/runs/{run_id}/rejects.csv", dependencies=[can_read_runs])
def rejects_download(dag_id: str, run_id: str) -> PlainTextResponse:
    """Every reject of the run, without the email column (masked where a value looks like one)."""
    return PlainTextResponse(
        reports.rejects_csv(reports.reject_files(dag_id, run_id)),
        media_type="text/csv",
        headers={**HEADERS, "Content-Disposition": f'attachment; filename="{reports.download_name(dag_id, run_id)}"'},
    )


@app.get("/dags/{dag_id}", response_class=HTMLResponse, dependencies=[can_read_runs])
def dag_trend_page(dag_id: str, request: Request) -> HTMLResponse:
    trend = [render.trend_row(r) for r in reports.recent_reports(dag_id)]
    page = render.dag_page(dag_id, trend, lambda run_id: _run_href(request, dag_id, run_id))
    return HTMLResponse(page, headers=HEADERS)


class AudienceSyncUiPlugin(AirflowPlugin):
    name = "audience_sync_ui"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "Audience sync reports"}]
    external_views = [
        {
            "name": "Sync report",
            "href": f"{URL_PREFIX}/dags/{{DAG_ID}}/runs/{{RUN_ID}}",
            "destination": "dag_run",
            "url_route": "sync_report",
        },
        {
            "name": "Sync trend",
            "href": f"{URL_PREFIX}/dags/{{DAG_ID}}",
            "destination": "dag",
            "url_route": "sync_trend",
        },
    ]
