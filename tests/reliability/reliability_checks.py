"""What every reliability test asserts after a run: HubSpot equals the oracle, every reject has a
reason, and no secret appears anywhere a run leaves text behind."""

from __future__ import annotations

import json
import os
import re
import sqlite3
from datetime import timedelta
from pathlib import Path

import e2e_support
import pyarrow.parquet as pq
from sandbox import connections, credentials

# Every fixed credential, plus the patterns of the access tokens the sandboxes issue at run time.
FIXED_SECRETS = [
    credentials.HUBSPOT_PRIVATE_APP_TOKEN,
    credentials.HUBSPOT_CLIENT_SECRET,
    credentials.HUBSPOT_REFRESH_TOKEN,
    credentials.AEP_CLIENT_SECRET,
    "sandbox-initial-access-token",
]
HUBSPOT_ISSUED_TOKEN = re.compile(r"sandbox-at-[0-9a-f]{32}")


def oauth_connection(url: str, **changes) -> str:
    """The HubSpot OAuth app without a private-app token (the hook refreshes access tokens itself),
    with ``changes`` to the connection's fields (e.g. a wrong ``password``)."""
    conn = json.loads(connections.hubspot_oauth_only_connection(url))
    conn.update(changes)
    return json.dumps(conn)


def fast_retries(monkeypatch, seconds: float = 1.0) -> None:
    """Task retries after ``seconds`` instead of the DAG's 30 s (``dag.test()`` waits the real delay)."""
    load = e2e_support.load_dag

    def load_fast():
        dag = load()
        for task in dag.tasks:
            task.retry_delay = timedelta(seconds=seconds)
            task.retry_exponential_backoff = False
        return dag

    monkeypatch.setattr(e2e_support, "load_dag", load_fast)


def rejects_files(folder: Path) -> list[Path]:
    """Every rejects file under ``folder`` (map: ``map/rejects/*.parquet``, upsert: ``*.rejects.parquet``),
    known by its columns rather than its name."""
    return sorted(p for p in folder.rglob("*.parquet") if {"category", "reason"} <= set(pq.read_schema(p).names))


def assert_rejects_explained(folder: Path) -> int:
    """Every rejects file of the run: each row has a category and a reason. Returns the row count."""
    rows = 0
    for path in rejects_files(folder):
        for row in pq.read_table(path).to_pylist():
            assert row.get("category"), f"{path.name}: a reject without a category: {row.get('record_id')}"
            assert row.get("reason"), f"{path.name}: a reject without a reason: {row.get('record_id')}"
            rows += 1
    return rows


def assert_world_matches(world: e2e_support.SyncWorld, run: dict) -> dict:
    """HubSpot holds the oracle's contacts record for record, none twice; every reject is explained."""
    assert run["state"] == "success", run
    expected = e2e_support.expected_contacts(run["folder"] / "export", world.audiences)
    assert expected
    e2e_support.assert_hubspot_matches(world.contacts(), expected)  # contacts() also refuses duplicates
    # The seeded population is 2% dirty: the map step always rejects some profiles.
    assert assert_rejects_explained(run["folder"]) > 0
    return expected


def aep_issued_tokens(aep_db: Path) -> list[str]:
    with sqlite3.connect(aep_db) as db:
        return [row[0] for row in db.execute("SELECT token FROM tokens")]


def find_secrets(text: str, secrets: list[str]) -> list[str]:
    """The secrets (by a short, harmless prefix) that occur in ``text``."""
    found = [s[:12] + "…" for s in secrets if s and s in text]
    found += [m[:14] + "…" for m in HUBSPOT_ISSUED_TOKEN.findall(text)]
    return found


def xcom_texts() -> list[str]:
    """Every XCom value in the session's Airflow metadata DB, as text."""
    db_path = Path(os.environ["AIRFLOW_HOME"]) / "airflow.db"
    with sqlite3.connect(db_path) as db:
        return [str(value) for (value,) in db.execute("SELECT value FROM xcom")]


def run_artifacts(*folders: Path) -> dict[str, str]:
    """Text of every file a run left: reports, JSON, rejects and results Parquet (as rows), logs."""
    texts: dict[str, str] = {}
    for folder in folders:
        for path in folder.rglob("*"):
            if not path.is_file():
                continue
            if path.suffix == ".parquet":
                texts[str(path)] = str(pq.read_table(path).to_pylist())
            else:
                texts[str(path)] = path.read_bytes().decode("utf-8", "replace")
    return texts
