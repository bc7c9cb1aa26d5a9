"""Run folders read for the report pages: ``report.json`` and the rejects Parquet files.

Nothing read here reaches a page with an email address in it: the rejects' ``email`` column is
never read, and any email-shaped text left in the other columns (a record id that is an email, a
reason quoting a value) is masked.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import pyarrow.parquet as pq

from audience_sync import storage
from audience_sync.ui.render import REJECT_COLUMNS

EMAIL_LIKE = re.compile(r"[^\s@'\"<>(),;:]+@[^\s@'\"<>(),;:]+")
MASK = "[email hidden]"


def mask_emails(value: Any) -> Any:
    return EMAIL_LIKE.sub(MASK, value) if isinstance(value, str) else value


def download_name(dag_id: str, run_id: str) -> str:
    return f"{storage.run_path(dag_id, run_id).name}-rejects.csv"


def load_report(dag_id: str, run_id: str) -> dict[str, Any] | None:
    path = storage.run_path(dag_id, run_id) / "report.json"
    return storage.read_json(path) if path.exists() else None


def recent_reports(dag_id: str, limit: int = 30) -> list[dict[str, Any]]:
    """The reports of the DAG's last ``limit`` runs that wrote one, newest first (by file time)."""
    folder = storage.runs_path(dag_id)
    if not folder.exists():
        return []
    found = [run / "report.json" for run in folder.iterdir() if (run / "report.json").exists()]
    found.sort(key=lambda path: path.stat().st_mtime, reverse=True)
    return [storage.read_json(path) for path in found[:limit]]


def reject_files(dag_id: str, run_id: str) -> list[storage.ObjectStoragePath]:
    """Every rejects Parquet file of the run: ``rejects/*.parquet`` (mapping) and ``*.rejects.parquet`` (upsert)."""
    folder = storage.run_path(dag_id, run_id)
    if not folder.exists():
        return []
    return sorted(
        (p for p in folder.rglob("*.parquet") if p.name.endswith(".rejects.parquet") or p.parent.name == "rejects"),
        key=str,
    )


def _rows(paths: list[storage.ObjectStoragePath]):
    """Reject rows without the email column, email-shaped text masked, file by file."""
    for path in paths:
        schema = pq.read_schema(storage.local_or_none(path) or io.BytesIO(path.read_bytes()))
        columns = [c for c in REJECT_COLUMNS if c in schema.names]
        for batch in storage.iter_parquet_batches(path, columns=columns):
            for row in batch.to_pylist():
                yield {column: mask_emails(row.get(column)) for column in REJECT_COLUMNS}


def rejects_sample(paths: list[storage.ObjectStoragePath], limit: int = 10) -> tuple[list[dict[str, Any]], int]:
    """The first ``limit`` rejects and the total count (from the Parquet footers)."""
    total = sum(pq.read_metadata(storage.local_or_none(p) or io.BytesIO(p.read_bytes())).num_rows for p in paths)
    sample = []
    for row in _rows(paths):
        if len(sample) == limit:
            break
        sample.append(row)
    return sample, total


def rejects_csv(paths: list[storage.ObjectStoragePath]) -> str:
    """All rejects as CSV (stage, record_id, field, category, reason): no email column, emails masked."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=REJECT_COLUMNS)
    writer.writeheader()
    writer.writerows(_rows(paths))
    return out.getvalue()
