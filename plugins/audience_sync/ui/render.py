"""Report dicts (plugins/audience_sync/report.py's JSON) → self-contained HTML pages.

Pure functions: no Airflow, no I/O. Every value is escaped; the pages load nothing from outside
(no CDN: the chart is inline SVG), so they work on an air-gapped Airflow. Cells carry
``data-key="<section>.<name>"`` so tests (and people) can find a number without parsing layout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from html import escape
from typing import Any

from audience_sync.report import profiles_explained

CONTACT_ORDER = (
    "to_send", "new", "changed", "exited", "resent", "unchanged", "cleared", "skipped",
    "created", "updated", "rejected", "gone",
)
PROFILE_ORDER = ("exported", "merged", "deduplicated", "rejected", "valid")  # exported = merged + deduplicated + rejected + valid
REJECT_COLUMNS = ("stage", "record_id", "field", "category", "reason")

STYLE = """
body{font-family:system-ui,sans-serif;margin:16px;color:#1a202c;background:#fff}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:20px 0 6px}
.meta{color:#4a5568;font-size:13px}
.badge{background:#fefcbf;border:1px solid #d69e2e;padding:1px 6px;border-radius:4px}
table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #e2e8f0;padding:3px 8px;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums} th{background:#f7fafc}
.grid{display:flex;flex-wrap:wrap;gap:24px} .bad{color:#c53030;font-weight:600} svg text{font-size:11px}
"""


def _value(value: Any) -> str:
    return "-" if value is None else escape(str(value))


def _num_cell(key: str, value: Any) -> str:
    return f'<td class="num" data-key="{escape(key)}">{_value(value)}</td>'


def _ordered(values: dict[str, Any], order: Iterable[str]) -> list[str]:
    """The known keys in their order (present or not), then any others the report carries."""
    order = list(order)
    return order + [k for k in values if k not in order]


def metric_table(section: str, values: dict[str, Any], order: Iterable[str]) -> str:
    rows = "".join(
        f"<tr><th>{escape(name.replace('_', ' '))}</th>{_num_cell(f'{section}.{name}', values.get(name))}</tr>"
        for name in _ordered(values, order)
    )
    return f'<table data-section="{escape(section)}">{rows}</table>'


def rows_table(section: str, rows: list[dict[str, Any]], columns: Iterable[str], numeric: Iterable[str] = ()) -> str:
    """A table of dict rows; ``numeric`` columns are right-aligned and keyed ``section.<row>.<column>``."""
    columns, numeric = list(columns), set(numeric)
    if not rows:
        return f'<p data-section="{escape(section)}"><em>none</em></p>'
    head = "".join(f"<th>{escape(c.replace('_', ' '))}</th>" for c in columns)
    body = []
    for index, row in enumerate(rows):
        cells = []
        for column in columns:
            value = row.get(column)
            if column in numeric:
                cells.append(_num_cell(f"{section}.{index}.{column}", value))
            else:
                css = ' class="bad"' if value == "NO" else ""
                cells.append(f"<td{css}>{_value(value)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table data-section="{escape(section)}"><tr>{head}</tr>{"".join(body)}</table>'


def line_chart(
    points: list[tuple[str, float | None]], title: str, unit: str, width: int = 560, height: int = 180
) -> str:
    """An inline SVG line chart of ``(label, value)`` points (None values are gaps, not zeros)."""
    known = [(i, v) for i, (_, v) in enumerate(points) if v is not None]
    if not known:
        return f'<p data-chart="{escape(title)}"><em>{escape(title)}: no data yet</em></p>'
    left, right, top, bottom = 56, 12, 20, 36
    top_value = max(v for _, v in known) or 1.0
    step = (width - left - right) / max(1, len(points) - 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return left + i * step, top + (height - top - bottom) * (1 - v / top_value)

    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(i, v) for i, v in known))
    dots = "".join(
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#2b6cb0">'
        f"<title>{escape(points[i][0])}: {v:g} {escape(unit)}</title></circle>"
        for i, v in known
        for x, y in [xy(i, v)]
    )
    first, last = escape(points[0][0]), escape(points[-1][0])
    last_label = (
        f'<text x="{width - right}" y="{height - 8}" text-anchor="end">{last}</text>' if len(points) > 1 else ""
    )
    return (
        f'<svg role="img" aria-label="{escape(title)}" data-chart="{escape(title)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
        f'<text x="{left}" y="12">{escape(title)} ({escape(unit)})</text>'
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#a0aec0"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#a0aec0"/>'
        f'<text x="4" y="{top + 4}">{top_value:g}</text><text x="4" y="{height - bottom}">0</text>'
        f'<text x="{left}" y="{height - 8}">{first}</text>{last_label}'
        f'<polyline fill="none" stroke="#2b6cb0" stroke-width="2" points="{path}"/>{dots}</svg>'
    )


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )


def trend_row(report: dict[str, Any]) -> dict[str, Any]:
    """The numbers of one run that the DAG page lists and charts."""
    profiles, contacts = report.get("profiles") or {}, report.get("contacts") or {}
    mismatched = sum(1 for row in report.get("audiences") or [] if row.get("match") == "NO")
    return {
        "run_id": report.get("run_id"),
        "mode": "dry run"
        if report.get("dry_run")
        else ("full refresh" if report.get("full_refresh") else "incremental"),
        "exported": profiles.get("exported"),
        "valid": profiles.get("valid"),
        "rejected": profiles.get("rejected"),
        "created": contacts.get("created"),
        "updated": contacts.get("updated"),
        "audience_mismatches": mismatched,
        "upsert_rate_per_s": report.get("upsert_rate_per_s"),
        "total_duration_s": report.get("total_duration_s"),
    }


TREND_NUMBERS = (
    "exported",
    "valid",
    "rejected",
    "created",
    "updated",
    "audience_mismatches",
    "upsert_rate_per_s",
    "total_duration_s",
)


def run_label(run_id: Any) -> str:
    """A short chart label: ``manual__2026-12-01T21:23:27.8+00:00`` → ``2026-12-01T21:23``."""
    text = str(run_id)
    return text.split("__", 1)[-1][:16]


def rate_over_time(chunks: list[dict[str, Any]], bins: int = 20) -> list[tuple[str, float]]:
    """Records per second during the run's upsert (report.json ``upsert_chunks``), in ``bins`` equal slices
    of its wall time, labelled by their middle (seconds from the first start). Each upsert task's records
    are spread evenly over its own start → finish; tasks running at once add up."""
    if not chunks:
        return []
    start = min(c["started_at"] for c in chunks)
    width = (max(c["finished_at"] for c in chunks) - start) / bins
    if width <= 0:
        return []
    sent = [0.0] * bins
    for chunk in chunks:
        began, ended = chunk["started_at"], chunk["finished_at"]
        for i in range(bins):
            low, high = start + i * width, start + (i + 1) * width
            if ended > began:
                sent[i] += chunk["sent"] * max(0.0, min(ended, high) - max(began, low)) / (ended - began)
            elif low <= began < high or (i == bins - 1 and began >= high):  # a chunk with no duration
                sent[i] += chunk["sent"]
    return [(f"+{(i + 0.5) * width:.1f} s", round(value / width, 1)) for i, value in enumerate(sent)]


def _rate_chart(trend: list[dict[str, Any]]) -> str:
    """Oldest run first; dry runs send nothing, so they are gaps in the rate, not zeros."""
    points = [
        (run_label(row["run_id"]), None if row["mode"] == "dry run" else row["upsert_rate_per_s"]) for row in trend
    ]
    return line_chart(points[::-1], "upsert rate per run", "records/s")


def run_page(
    report: dict[str, Any],
    *,
    rejects_sample: list[dict[str, Any]],
    rejects_total: int,
    download_href: str | None,
    trend: list[dict[str, Any]],
    dag_href: str,
) -> str:
    """One run: profiles, rejects (sample without emails), contacts, audiences, upsert rate, steps.

    ``trend``: ``trend_row`` of the DAG's recent runs, newest first (this run among them).
    """
    dry_run = bool(report.get("dry_run"))
    title = report.get("title") or "Audience sync"
    mode = (
        '<span class="badge" data-key="run.dry_run">DRY RUN: nothing was sent to HubSpot; below is its plan</span>'
        if dry_run
        else ""
    )
    head = (
        f"<h1>{escape(title)}</h1>"
        f'<p class="meta">DAG <b>{_value(report.get("dag_id"))}</b>'
        f' · run <b data-key="run.run_id">{_value(report.get("run_id"))}</b>'
        f" · {'full refresh' if report.get('full_refresh') else 'incremental'}"
        f" · total {_value(report.get('total_duration_s'))} s"
        f' · <a href="{escape(dag_href)}">all runs</a></p>{mode}'
    )
    audiences = report.get("audience_ids") or {}
    audience_list = ", ".join(f"{escape(str(name))} ({escape(str(aid))})" for aid, name in audiences.items())
    contacts_title = "Plan (what a real run would send)" if dry_run else "Contacts"
    sent_label = "would_send" if dry_run else "sent"  # a dry run sent nothing: its column is the plan
    # reports written before the column was named for the mode call it "sent"
    audience_rows = [{**row, sent_label: row.get(sent_label, row.get("sent"))} for row in report.get("audiences") or []]
    explained = profiles_explained(report.get("profiles") or {})
    download = (
        f'<p><a data-key="rejects.download" href="{escape(download_href)}">'
        f"Download the {rejects_total} rejects (CSV, email addresses removed)</a></p>"
        if download_href
        else ""
    )
    sections = [
        head,
        f'<p class="meta">Audiences: {audience_list or "-"}</p>' if audiences else "",
        f'<p class="meta" data-key="profiles.explained">{escape(explained)}</p>' if explained else "",
        '<div class="grid"><div><h2>Profiles</h2>',
        metric_table("profiles", report.get("profiles") or {}, PROFILE_ORDER),
        f"</div><div><h2>{contacts_title}</h2>",
        metric_table("contacts", report.get("contacts") or {}, CONTACT_ORDER),
        "</div><div><h2>Upsert rate</h2>",
        metric_table("run", {"upsert_rate_per_s": report.get("upsert_rate_per_s")}, ()),
        "</div></div>",
        "<h2>Rejected by stage and reason</h2>",
        rows_table(
            "rejected_by_reason", report.get("rejected_by_reason") or [], ("stage", "category", "count"), ("count",)
        ),
        "<h2>Audiences: expected in HubSpot against found</h2>",
        rows_table(
            "audiences",
            audience_rows,
            ("property", "status", sent_label, "expected", "found", "match"),
            (sent_label, "expected", "found"),
        ),
        "<h2>Upsert rate during this run</h2>",
        line_chart(rate_over_time(report.get("upsert_chunks") or []), "upsert rate during this run", "records/s"),
        "<h2>Upsert rate over the last runs</h2>",
        _rate_chart(trend),
        f"<h2>Sample of rejects ({len(rejects_sample)} of {rejects_total})</h2>",
        rows_table("rejects_sample", rejects_sample, REJECT_COLUMNS),
        download,
        "<h2>Steps</h2>",
        rows_table("steps", report.get("steps") or [], ("step", "duration_s"), ("duration_s",)),
    ]
    return _page(f"{title}: {report.get('run_id')}", "".join(sections))


def dag_page(dag_id: str, trend: list[dict[str, Any]], run_href: Callable[[str], str]) -> str:
    """The trend of the last runs (newest first), each linking to its run page."""
    rows = trend
    head = "".join(f"<th>{escape(c.replace('_', ' '))}</th>" for c in ("run_id", "mode", *TREND_NUMBERS))
    body = "".join(
        f'<tr><td><a href="{escape(run_href(str(row["run_id"])))}">{_value(row["run_id"])}</a></td>'
        f"<td>{_value(row['mode'])}</td>"
        + "".join(_num_cell(f"trend.{index}.{name}", row[name]) for name in TREND_NUMBERS)
        + "</tr>"
        for index, row in enumerate(rows)
    )
    table = (
        f'<table data-section="trend"><tr>{head}</tr>{body}</table>'
        if rows
        else "<p><em>No run has written a report yet.</em></p>"
    )
    charts = "".join(
        line_chart([(run_label(r["run_id"]), r[name]) for r in rows[::-1]], title, unit)
        for name, title, unit in (
            ("valid", "valid profiles per run", "profiles"),
            ("rejected", "rejected profiles per run", "profiles"),
        )
    )
    body_html = (
        f"<h1>Audience sync: last {len(rows)} runs of {escape(dag_id)}</h1>{table}"
        f"<h2>Upsert rate</h2>{_rate_chart(rows)}<h2>Profiles</h2>{charts}"
    )
    return _page(f"{dag_id}: sync trend", body_html)
