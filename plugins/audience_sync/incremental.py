"""What to send this run: the mapped contacts diffed against a snapshot of what the last good run sent.

The snapshot holds, per email, a hash of the mapped property values and the audience status columns as
HubSpot holds them. Statuses are compared column by column rather than hashed, because a status that
disappears must become ``exited`` and stay so: an "effective" status is the export's status, or
``exited`` when the export has none but the snapshot has one (realized, existing or exited). A contact
absent from the export altogether is treated the same way (AEP dropped it from every audience).

Categories (each contact in exactly one):
- new: not in the snapshot;
- changed: a property value changed, or a status changed other than by leaving an audience;
- exited: the only change is leaving one or more audiences (including contacts absent from the export);
- unchanged: nothing to send;
- held: absent from the export because this run rejected it (``hold_emails``): its snapshot row is kept
  as it was and nothing is sent, so a rejected record is never mistaken for one that left.
Rows to send carry every mapped column with the effective statuses; an absent contact is sent with its
email and ``exited`` statuses only.

Pure logic: reads and writes local Parquet, no Airflow; memory grows with the small per-contact columns
(email, hash, statuses), never with whole rows, which stream chunk by chunk.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from audience_sync.mapping import AtomicParquetWriter, ChunkWriter, atomic_write_table

HASH = "_hash"
ACTIVE = ("realized", "existing")
EXITED = "exited"
_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd constant: multiplying by it is a bijection on uint64


@dataclass
class Plan:
    send_paths: list[str]
    next_snapshot_path: str
    previous_snapshot_path: str | None
    full_refresh: bool
    counts: dict = field(default_factory=dict)
    sent_by_audience: dict[str, dict[str, int]] = field(default_factory=dict)


def snapshot_schema(audience_properties: list[str]) -> pa.Schema:
    return pa.schema([("email", pa.string()), (HASH, pa.uint64()), *[(p, pa.string()) for p in audience_properties]])


def property_columns(schema: pa.Schema, audience_properties: list[str]) -> list[str]:
    """Mapped columns whose values the hash covers: all but email, statuses and ``_`` metadata."""
    return [n for n in schema.names if n != "email" and n not in audience_properties and not n.startswith("_")]


def row_hashes(table: pa.Table, columns: list[str]) -> np.ndarray:
    """Stable 64-bit hash per row over non-null ``column=value`` pairs, independent of column order, so
    adding a mapping row only changes the hash of contacts that have a value for it. Siphash with
    pandas' fixed key: stable across processes and machines."""
    combined = np.zeros(table.num_rows, dtype=np.uint64)
    for name in columns:
        column = table.column(name)
        values = column.to_numpy(zero_copy_only=False).astype(object)
        valid = column.is_valid().to_numpy(zero_copy_only=False)
        name_hash = pd.util.hash_array(np.array([name], dtype=object))[0]
        hashed = (pd.util.hash_array(np.where(valid, values, ""), categorize=False) ^ name_hash) * _MIX
        combined ^= np.where(valid, hashed, np.uint64(0))
    return combined


def _read_previous(path: str | None, audience_properties: list[str]) -> pa.Table:
    """The snapshot aligned to this run's audience columns (a newly synced audience reads as null)."""
    schema = snapshot_schema(audience_properties)
    if path is None:
        return schema.empty_table()
    table = pq.read_table(path)
    columns = [
        table.column(n).cast(schema.field(n).type)
        if n in table.column_names
        else pa.nulls(table.num_rows, schema.field(n).type)
        for n in schema.names
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _current(mapped_paths: list[str], audience_properties: list[str]) -> tuple[pa.Table, pa.Schema | None]:
    """Email, hash, statuses and position of every mapped contact; the mapped schema."""
    pieces, schema = [], None
    for number, path in enumerate(mapped_paths):
        table = pq.read_table(path)
        missing = [p for p in ["email", *audience_properties] if p not in table.column_names]
        if missing:
            raise ValueError(f"mapped chunk {path} lacks column(s) {missing}")
        schema = schema or table.schema
        hashes = row_hashes(table, property_columns(table.schema, audience_properties))
        pieces.append(
            pa.table(
                {
                    "email": table.column("email"),
                    "cur_hash": pa.array(hashes, pa.uint64()),
                    **{f"cur:{p}": table.column(p) for p in audience_properties},
                    "chunk": pa.array(np.full(table.num_rows, number, dtype=np.int64)),
                    "row": pa.array(np.arange(table.num_rows, dtype=np.int64)),
                }
            )
        )
    empty = pa.schema(
        [
            ("email", pa.string()),
            ("cur_hash", pa.uint64()),
            *[(f"cur:{p}", pa.string()) for p in audience_properties],
            ("chunk", pa.int64()),
            ("row", pa.int64()),
        ]
    )
    return (pa.concat_tables(pieces).cast(empty) if pieces else empty.empty_table()), schema


def _strings(column) -> np.ndarray:
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=object)


def plan(
    mapped_paths: list[str],
    previous_snapshot_path: str | None,
    audience_properties: list[str],
    full_refresh: bool,
    out_dir: str,
    chunk_rows: int = 10_000,
    hold_emails=(),
) -> Plan:
    """Write ``out_dir/send/part-*.parquet`` and ``out_dir/next-snapshot.parquet`` (not committed).

    ``hold_emails``: emails this run rejected before the diff (see :func:`rejected_emails`).
    """
    current, mapped_schema = _current(mapped_paths, audience_properties)
    previous = _read_previous(previous_snapshot_path, audience_properties)
    previous = previous.rename_columns(["email", "prev_hash", *[f"prev:{p}" for p in audience_properties]])
    joined = current.join(previous, keys="email", join_type="full outer", coalesce_keys=True)
    joined = joined.sort_by([("chunk", "ascending"), ("row", "ascending")])  # absent ones (null chunk) last

    in_cur = joined.column("chunk").is_valid().to_numpy(zero_copy_only=False)
    in_prev = joined.column("prev_hash").is_valid().to_numpy(zero_copy_only=False)
    held = (
        ~in_cur
        & in_prev
        & pc.is_in(joined.column("email"), pa.array(list(hold_emails), pa.string())).to_numpy(zero_copy_only=False)
    )
    hash_changed = (
        in_cur
        & in_prev
        & (
            pc.fill_null(pc.not_equal(joined.column("cur_hash"), joined.column("prev_hash")), True).to_numpy(
                zero_copy_only=False
            )
        )
    )
    effective, any_exit, other_status_change = {}, np.zeros(joined.num_rows, bool), np.zeros(joined.num_rows, bool)
    for prop in audience_properties:
        cur, prev = _strings(joined.column(f"cur:{prop}")), _strings(joined.column(f"prev:{prop}"))
        has_prev = pd.notna(prev) & np.isin(prev, [*ACTIVE, EXITED])
        exits = pd.isna(cur) & pd.notna(prev) & np.isin(prev, ACTIVE)
        effective[prop] = np.where(pd.notna(cur), cur, np.where(has_prev & ~held, EXITED, None))
        effective[prop] = np.where(held, prev, effective[prop])
        changed = (pd.isna(effective[prop]) != pd.isna(prev)) | (
            pd.notna(effective[prop]) & pd.notna(prev) & (effective[prop] != prev)
        )
        any_exit |= exits & ~held
        other_status_change |= changed & ~exits & ~held
    new = in_cur & ~in_prev
    changed = in_cur & in_prev & (hash_changed | other_status_change)
    exited = in_prev & ~changed & ~held & any_exit
    unchanged = in_cur & in_prev & ~changed & ~exited
    absent = ~in_cur & in_prev & ~held & ~exited
    send = new | changed | exited | (in_cur & full_refresh)

    os.makedirs(out_dir, exist_ok=True)
    send_schema = mapped_schema or pa.schema([("email", pa.string()), *[(p, pa.string()) for p in audience_properties]])
    writer = ChunkWriter(os.path.join(out_dir, "send"), send_schema, chunk_rows)
    sent_by_audience = _write_send(joined, send, effective, mapped_paths, writer)
    send_paths = writer.close()

    next_path = os.path.join(out_dir, "next-snapshot.parquet")
    keep = in_cur | held | exited | (absent & _any_status(effective, audience_properties, joined.num_rows))
    snapshot = pa.table(
        {
            "email": joined.column("email"),
            HASH: pc.coalesce(joined.column("cur_hash"), joined.column("prev_hash")),
            **{p: pa.array(effective[p], pa.string()) for p in audience_properties},
        },
        schema=snapshot_schema(audience_properties),
    ).filter(pa.array(keep))
    atomic_write_table(snapshot, next_path)
    counts = {
        "new": int(new.sum()),
        "changed": int(changed.sum()),
        "exited": int(exited.sum()),
        "unchanged": int(unchanged.sum()),
        "held": int(held.sum()),
        "absent": int(absent.sum()),
        "to_send": int(send.sum()),
    }
    return Plan(
        send_paths=send_paths,
        next_snapshot_path=next_path,
        previous_snapshot_path=previous_snapshot_path,
        full_refresh=full_refresh,
        counts=counts,
        sent_by_audience=sent_by_audience,
    )


def _any_status(effective: dict[str, np.ndarray], audience_properties: list[str], rows: int) -> np.ndarray:
    any_status = np.zeros(rows, dtype=bool)
    for prop in audience_properties:
        any_status |= pd.notna(effective[prop])
    return any_status


def _write_send(
    joined: pa.Table, send: np.ndarray, effective: dict[str, np.ndarray], mapped_paths: list[str], writer: ChunkWriter
) -> dict[str, dict[str, int]]:
    """Stream the rows to send, chunk by chunk, with their effective statuses; count statuses sent."""
    chunk = pc.fill_null(joined.column("chunk"), len(mapped_paths)).to_numpy()
    row = pc.fill_null(joined.column("row"), 0).to_numpy()
    sent: dict[str, Counter] = {p: Counter() for p in effective}
    for number in range(len(mapped_paths) + 1):
        lo, hi = np.searchsorted(chunk, number, "left"), np.searchsorted(chunk, number, "right")
        positions = lo + np.flatnonzero(send[lo:hi])
        if not len(positions):
            continue
        if number < len(mapped_paths):
            body = pq.read_table(mapped_paths[number]).take(pa.array(row[positions]))
        else:  # contacts absent from the export: email and statuses only
            body = pa.table({"email": joined.column("email").take(pa.array(positions))})
        columns = {}
        for name in writer.schema.names:
            if name in effective:
                values = effective[name][positions]
                labels, counts = np.unique(values[pd.notna(values)].astype(str), return_counts=True)
                sent[name].update(dict(zip(labels.tolist(), counts.tolist(), strict=True)))
                columns[name] = pa.array(values, pa.string())
            elif name in body.column_names:
                columns[name] = body.column(name)
            else:
                columns[name] = pa.nulls(len(positions), pa.string())
        writer.add(pa.table(columns))
    return {p: dict(sorted(c.items())) for p, c in sent.items()}


def rejected_emails(rejects_path: str, exclude_categories=("DUPLICATE_EMAIL",)) -> list[str]:
    """Emails of a rejects file (any stage), minus categories whose email still goes out via another
    record (a duplicate's winner)."""
    table = pq.read_table(rejects_path, columns=["email", "category"])
    keep = pc.and_(
        pc.is_valid(table.column("email")),
        pc.invert(pc.is_in(table.column("category"), pa.array(list(exclude_categories), pa.string()))),
    )
    return pc.unique(table.column("email").filter(keep)).to_pylist()


def next_snapshot_without(
    snapshot_path: str, rejected: list[str], previous_snapshot_path: str | None = None, out_path: str | None = None
) -> str:
    """The snapshot to commit after the upsert: rejected emails get their previous row back (or none),
    so the next run diffs them against what HubSpot really holds and sends them again."""
    out_path = out_path or snapshot_path.removesuffix(".parquet") + "-committable.parquet"
    rejected_set = pa.array(list(rejected), pa.string())
    reader = pq.ParquetFile(snapshot_path)
    schema = reader.schema_arrow
    audience_properties = [n for n in schema.names if n not in ("email", HASH)]
    with AtomicParquetWriter(out_path, schema) as writer:
        for batch in reader.iter_batches():
            table = pa.Table.from_batches([batch])
            writer.write(table.filter(pc.invert(pc.is_in(table.column("email"), rejected_set))))
        if previous_snapshot_path:
            previous = _read_previous(previous_snapshot_path, audience_properties)
            writer.write(previous.filter(pc.is_in(previous.column("email"), rejected_set)))
    return out_path


def expected_counts(snapshot_path: str, audience_properties: list[str]) -> dict[str, dict[str, int]]:
    """Per audience property, how many contacts HubSpot should hold in each status after the run."""
    counts: dict[str, Counter] = {p: Counter() for p in audience_properties}
    reader = pq.ParquetFile(snapshot_path)
    present = [p for p in audience_properties if p in reader.schema_arrow.names]
    if present:
        for batch in reader.iter_batches(columns=present):
            for prop in present:
                for item in pc.value_counts(batch.column(prop).drop_null()).to_pylist():
                    counts[prop][item["values"]] += item["counts"]
    return {p: dict(sorted(c.items())) for p, c in counts.items()}
