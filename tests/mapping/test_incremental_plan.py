"""Incremental planning against the previous run's snapshot, and the snapshot commit helpers."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from audience_sync.incremental import (
    HASH,
    balanced_chunk_rows,
    expected_counts,
    next_snapshot_without,
    plan,
    rejected_emails,
    row_hashes,
)
from audience_sync.mapping import REJECT_SCHEMA

AUDIENCES = ["aep_gold", "aep_churn"]
COLUMNS = ["email", "firstname", "city", *AUDIENCES, "_profile_id"]


def mapped(tmp_path, name: str, rows: list[dict], chunk: int = 2) -> list[str]:
    """Mapped chunk files as map_export writes them (all string columns)."""
    schema = pa.schema([(c, pa.string()) for c in COLUMNS])
    folder = tmp_path / name
    folder.mkdir()
    paths = []
    for start in range(0, len(rows), chunk):
        path = folder / f"part-{start // chunk:05d}.parquet"
        pq.write_table(pa.Table.from_pylist(rows[start : start + chunk], schema=schema), path)
        paths.append(str(path))
    return paths


def contact(email, first=None, city=None, gold=None, churn=None, pid=None):
    return {"email": email, "firstname": first, "city": city, "aep_gold": gold, "aep_churn": churn, "_profile_id": pid}


def sent(result) -> pd.DataFrame:
    frames = [pq.read_table(p).to_pandas() for p in result.send_paths]
    return pd.concat(frames).set_index("email") if frames else pd.DataFrame(columns=COLUMNS).set_index("email")


def snapshot(path) -> pd.DataFrame:
    return pq.read_table(path).to_pandas().set_index("email")


FIRST_RUN = [
    contact("a@x.com", "Ann", "Paris", gold="realized", pid="1"),
    contact("b@x.com", "Ben", "Lyon", gold="realized", churn="existing", pid="2"),
    contact("c@x.com", "Cid", None, churn="realized", pid="3"),
    contact("d@x.com", "Dan", "Nice", gold="existing", pid="4"),
    contact("e@x.com", "Eve", None, gold="realized", pid="5"),
]


@pytest.fixture
def first_run(tmp_path):
    return plan(mapped(tmp_path, "run1", FIRST_RUN), None, AUDIENCES, False, str(tmp_path / "plan1"), chunk_rows=2)


def test_first_run_sends_everything_as_new(first_run):
    assert first_run.counts["new"] == 5 and first_run.counts["to_send"] == 5
    assert first_run.previous_snapshot_path is None
    frame = sent(first_run)
    assert sorted(frame.index) == ["a@x.com", "b@x.com", "c@x.com", "d@x.com", "e@x.com"]
    assert list(frame.columns) == [*COLUMNS[1:], "_write"]
    assert set(frame["_write"]) == {"upsert"}
    assert first_run.sent_by_audience == {
        "aep_gold": {"existing": 1, "realized": 3},
        "aep_churn": {"existing": 1, "realized": 1},
    }
    assert [pq.read_metadata(p).num_rows for p in first_run.send_paths] == [2, 2, 1]


@pytest.mark.parametrize(
    ("rows", "chunk_rows", "slots", "expected"),
    [
        (104_562, 10_000, 4, 8_714),  # 11 chunks would end with 3 of 4 slots busy: 12 equal ones instead
        (20_001, 10_000, 4, 5_001),  # 3 chunks → 4
        (40_000, 10_000, 4, 10_000),  # already full waves
        (9_000, 10_000, 4, 10_000),  # one chunk runs alone on the whole budget: not split
        (0, 10_000, 4, 10_000),
        (25_000, 10_000, 1, 8_334),  # one slot: only evened out
    ],
)
def test_send_chunks_come_in_full_waves_of_equal_size(rows, chunk_rows, slots, expected):
    size = balanced_chunk_rows(rows, chunk_rows, slots)
    assert size == expected and size <= chunk_rows
    chunks = -(-rows // size)
    assert rows <= chunk_rows or chunks % slots == 0


def test_balanced_chunks_refuse_nonsense_sizes():
    with pytest.raises(ValueError, match="must be positive"):
        balanced_chunk_rows(10, 0, 4)
    with pytest.raises(ValueError, match="must be positive"):
        balanced_chunk_rows(10, 10, 0)


def test_the_plan_writes_one_full_wave_of_chunks_per_pool_slot(tmp_path):
    rows = [contact(f"{n:02d}@x.com", f"N{n}", gold="realized", pid=str(n)) for n in range(12)]
    result = plan(
        mapped(tmp_path, "run", rows, chunk=12), None, AUDIENCES, False, str(tmp_path / "p"),
        chunk_rows=5, parallel_tasks=4,
    )
    sizes = [pq.read_metadata(p).num_rows for p in result.send_paths]
    assert sizes == [3, 3, 3, 3]  # chunks of 5 would be 5 + 5 + 2: three tasks in four slots
    assert sorted(sent(result).index) == sorted(r["email"] for r in rows)


def test_second_run_sends_only_new_changed_and_exited(tmp_path, first_run):
    second = [
        contact("a@x.com", "Ann", "Paris", gold="realized", pid="1"),  # unchanged
        contact("b@x.com", "Benjamin", "Lyon", gold="realized", churn="existing", pid="2"),  # value changed
        contact("c@x.com", "Cid", None, churn="existing", pid="3"),  # status changed realized → existing
        contact("d@x.com", "Dan", "Nice", pid="4"),  # left aep_gold: null now
        contact("f@x.com", "Fay", None, gold="realized", pid="6"),  # new
        # e@x.com is absent from the export altogether: it left every audience
    ]
    result = plan(
        mapped(tmp_path, "run2", second), first_run.next_snapshot_path, AUDIENCES, False, str(tmp_path / "plan2")
    )
    assert {k: result.counts[k] for k in ("new", "changed", "exited", "unchanged", "to_send")} == {
        "new": 1,
        "changed": 2,
        "exited": 2,
        "unchanged": 1,
        "to_send": 5,
    }
    frame = sent(result)
    assert sorted(frame.index) == ["b@x.com", "c@x.com", "d@x.com", "e@x.com", "f@x.com"]
    assert frame.loc["b@x.com", "firstname"] == "Benjamin"
    assert frame.loc["c@x.com", "aep_churn"] == "existing"
    assert frame.loc["d@x.com", "aep_gold"] == "exited" and frame.loc["d@x.com", "firstname"] == "Dan"
    assert frame.loc["e@x.com", "aep_gold"] == "exited" and pd.isna(frame.loc["e@x.com", "firstname"])
    # absent from the export: an update that can never create the contact; the others are upserts
    assert frame.loc["e@x.com", "_write"] == "update"
    assert set(frame.drop(index="e@x.com")["_write"]) == {"upsert"}
    assert pd.isna(frame.loc["e@x.com", "aep_churn"])  # never a member: nothing to exit
    assert result.sent_by_audience["aep_gold"] == {"exited": 2, "realized": 2}

    nxt = snapshot(result.next_snapshot_path)
    assert sorted(nxt.index) == ["a@x.com", "b@x.com", "c@x.com", "d@x.com", "e@x.com", "f@x.com"]
    assert nxt.loc["d@x.com", "aep_gold"] == "exited" and nxt.loc["e@x.com", "aep_gold"] == "exited"

    # the third run with the same export has nothing to send: exits are remembered, not re-sent
    third = plan(mapped(tmp_path, "run3", second), result.next_snapshot_path, AUDIENCES, False, str(tmp_path / "plan3"))
    assert third.counts["to_send"] == 0 and third.send_paths == []
    assert third.counts["unchanged"] == 5 and third.counts["absent"] == 1


def test_full_refresh_sends_everything_and_still_snapshots(tmp_path, first_run):
    result = plan(
        mapped(tmp_path, "run2", FIRST_RUN[:4]), first_run.next_snapshot_path, AUDIENCES, True, str(tmp_path / "plan2")
    )
    assert result.counts["unchanged"] == 4 and result.counts["exited"] == 1
    assert result.counts["to_send"] == 5  # four unchanged ones plus e@x.com's exit
    assert sent(result).loc["e@x.com", "_write"] == "update"
    assert sorted(sent(result).index) == ["a@x.com", "b@x.com", "c@x.com", "d@x.com", "e@x.com"]
    assert len(snapshot(result.next_snapshot_path)) == 5


def test_held_emails_keep_their_snapshot_row_and_are_not_exited(tmp_path, first_run):
    result = plan(
        mapped(tmp_path, "run2", FIRST_RUN[:4]),
        first_run.next_snapshot_path,
        AUDIENCES,
        False,
        str(tmp_path / "plan2"),
        hold_emails=["e@x.com"],
    )
    assert result.counts["held"] == 1 and result.counts["to_send"] == 0
    assert snapshot(result.next_snapshot_path).loc["e@x.com", "aep_gold"] == "realized"


def test_a_new_audience_column_sends_its_members_only(tmp_path, first_run):
    rows = [dict(r, aep_new=("realized" if r["email"] == "a@x.com" else None)) for r in FIRST_RUN]
    schema = pa.schema([(c, pa.string()) for c in [*COLUMNS, "aep_new"]])
    path = tmp_path / "m.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    result = plan([str(path)], first_run.next_snapshot_path, [*AUDIENCES, "aep_new"], False, str(tmp_path / "p"))
    assert result.counts["changed"] == 1 and sorted(sent(result).index) == ["a@x.com"]


def test_snapshot_without_rejects_restores_the_previous_row(tmp_path, first_run):
    second = [contact("a@x.com", "Ann", "Rome", gold="realized", pid="1"), contact("z@x.com", "Zed", pid="9")]
    result = plan(
        mapped(tmp_path, "run2", second + FIRST_RUN[1:]),
        first_run.next_snapshot_path,
        AUDIENCES,
        False,
        str(tmp_path / "plan2"),
    )
    rejects = tmp_path / "rejects.parquet"
    pq.write_table(
        pa.Table.from_pylist(
            [
                {
                    "stage": "upsert",
                    "record_id": "1",
                    "email": "a@x.com",
                    "field": "city",
                    "category": "VALIDATION_ERROR",
                    "reason": "r",
                },
                {
                    "stage": "upsert",
                    "record_id": "9",
                    "email": "z@x.com",
                    "field": None,
                    "category": "INVALID_EMAIL",
                    "reason": "r",
                },
                {
                    "stage": "map",
                    "record_id": "7",
                    "email": "b@x.com",
                    "field": "email",
                    "category": "DUPLICATE_EMAIL",
                    "reason": "r",
                },
            ],
            schema=REJECT_SCHEMA,
        ),
        rejects,
    )
    emails = rejected_emails(str(rejects))
    assert sorted(emails) == ["a@x.com", "z@x.com"]  # a duplicate's email still went out via its winner
    committed = next_snapshot_without(result.next_snapshot_path, emails, first_run.next_snapshot_path)
    before, after = snapshot(first_run.next_snapshot_path), snapshot(committed)
    assert "z@x.com" not in after.index  # new and rejected: sent again as new next run
    assert after.loc["a@x.com", HASH] == before.loc["a@x.com", HASH]  # back to what HubSpot holds
    assert len(after) == 5
    retry = plan(mapped(tmp_path, "run3", second + FIRST_RUN[1:]), committed, AUDIENCES, False, str(tmp_path / "plan3"))
    assert sorted(sent(retry).index) == ["a@x.com", "z@x.com"]


def test_expected_counts(tmp_path, first_run):
    assert expected_counts(first_run.next_snapshot_path, [*AUDIENCES, "aep_unknown"]) == {
        "aep_gold": {"existing": 1, "realized": 3},
        "aep_churn": {"existing": 1, "realized": 1},
        "aep_unknown": {},
    }


def test_row_hash_is_stable_order_independent_and_null_aware():
    table = pa.table({"a": ["x", None, "x"], "b": ["y", "y", None]})
    swapped = pa.table({"b": ["y", "y", None], "a": ["x", None, "x"]})
    hashes = row_hashes(table, ["a", "b"])
    assert list(hashes) == list(row_hashes(swapped, ["b", "a"]))
    assert len(set(hashes.tolist())) == 3
    # a column that is null everywhere changes nothing: adding a mapping row resends only rows with a value
    widened = table.append_column("c", pa.nulls(3, pa.string()))
    assert list(row_hashes(widened, ["a", "b", "c"])) == list(hashes)
    # the same value under another property is another row
    assert row_hashes(pa.table({"a": ["v"]}), ["a"])[0] != row_hashes(pa.table({"b": ["v"]}), ["b"])[0]
    assert row_hashes(pa.table({"a": ["x"], "b": ["y"]}), ["a", "b"])[0] == hashes[0]  # same across calls


def test_one_million_contacts_plan_in_bounded_time(tmp_path, capsys):
    n, chunks = 1_000_000, 4
    statuses = np.array(["realized", "existing", "exited", None], dtype=object)
    paths = []
    folder = tmp_path / "big"
    folder.mkdir()
    for c in range(chunks):
        idx = np.arange(c * n // chunks, (c + 1) * n // chunks)
        table = pa.table(
            {
                "email": pa.array(np.char.add(idx.astype(str), "@x.com")),
                "firstname": pa.array(np.char.add("F", idx.astype(str))),
                "city": pa.nulls(len(idx), pa.string()),
                "aep_gold": pa.array(statuses[idx % 4], pa.string()),
                "aep_churn": pa.array(statuses[(idx // 3) % 4], pa.string()),
                "_profile_id": pa.array(idx.astype(str)),
            }
        )
        paths.append(str(folder / f"part-{c:05d}.parquet"))
        pq.write_table(table, paths[-1])
    started = time.perf_counter()
    first = plan(paths, None, AUDIENCES, False, str(tmp_path / "p1"), chunk_rows=100_000)
    middle = time.perf_counter()
    second = plan(paths, first.next_snapshot_path, AUDIENCES, False, str(tmp_path / "p2"), chunk_rows=100_000)
    done = time.perf_counter()
    with capsys.disabled():
        print(f"\nplan: 1,000,000 contacts, first run {middle - started:.1f} s, unchanged rerun {done - middle:.1f} s")
    assert first.counts["new"] == n and second.counts["unchanged"] == n and second.send_paths == []


def test_nothing_mapped_and_no_audiences(tmp_path):
    result = plan([], None, [], False, str(tmp_path / "p"))
    assert result.send_paths == [] and result.counts["to_send"] == 0
    assert pq.read_metadata(result.next_snapshot_path).num_rows == 0
    only_emails = plan(mapped(tmp_path, "run", FIRST_RUN), None, [], False, str(tmp_path / "q"))
    assert only_emails.counts["new"] == 5 and only_emails.sent_by_audience == {}
