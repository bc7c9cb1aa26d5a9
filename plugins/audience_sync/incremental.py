"""What to send this run: the mapped contacts diffed against a snapshot of what the last good run sent.

The snapshot holds, per email, a hash of the mapped property values, which mapped properties held a
value (bit words ``_set0``, ``_set1``, ... over the property names kept in the file's metadata), and
the audience status columns as HubSpot holds them. Statuses are compared column by column rather than
hashed, because a status that disappears must become ``exited`` and stay so: an "effective" status is
the export's status, or ``exited`` when the export has none but the snapshot has one (realized, existing
or exited). A contact absent from the export altogether is treated the same way (AEP dropped it from
every audience). Status columns of audiences this run does not sync are carried over untouched.

Categories (each contact in exactly one):
- new: not in the snapshot;
- changed: a property value changed, or a status changed other than by leaving an audience;
- exited: the only change is leaving one or more audiences (including contacts absent from the export);
- unchanged: nothing to send;
- held: absent from the export because this run rejected it (``hold_emails``): its snapshot row is kept
  as it was and nothing is sent, so a rejected record is never mistaken for one that left.
Rows to send carry every mapped column with the effective statuses, and ``_write``: ``upsert`` for a
contact in the export, ``update`` (never creates) for an absent one, which is sent its email and
statuses only; absent rows come last, sorted by email, so chunks are reproducible. A value that had
been sent and is now missing is sent as ``""`` (HubSpot clears the property) unless its mapping row
says ``on_missing: keep``; ``full_refresh`` resends every contact, clears included.

Pure logic: reads and writes local Parquet (atomically, through ``storage.atomic_path``), no Airflow call; memory grows with the small per-contact columns
(email, hash, bit words, statuses), never with whole rows, which stream chunk by chunk.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from audience_sync import storage
from audience_sync.constants import ACTIVE_AUDIENCE_STATUSES, AUDIENCE_STATUSES, EXITED
from audience_sync.errors import InputError, PermanentError
from audience_sync.mapping import AtomicParquetWriter, ChunkWriter, atomic_write_table

HASH = "_hash"
WRITE = "_write"
UPSERT, UPDATE = "upsert", "update"
SET_PREFIX = "_set"
SET_METADATA = b"audience_sync.set_properties"
VERSION_SUFFIX = ".version.json"
_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd constant: multiplying by it is a bijection on uint64


class MassChangeBlocked(PermanentError):
    """The plan would change far more than a normal run does: probably broken input, not real change."""


class SnapshotMoved(PermanentError):
    """The snapshot changed since this run planned: its plan is stale."""


@dataclass
class Plan:
    send_paths: list[str]
    next_snapshot_path: str
    previous_snapshot_path: str | None
    full_refresh: bool
    counts: dict = field(default_factory=dict)
    sent_by_audience: dict[str, dict[str, int]] = field(default_factory=dict)
    snapshot_version: str = ""  # content hash of the snapshot planned on ("" = none): commit_snapshot checks it


def _set_columns(count: int) -> list[str]:
    return [f"{SET_PREFIX}{i}" for i in range((count + 63) // 64)]


def snapshot_schema(audience_properties: list[str], set_properties: Iterable[str] = ()) -> pa.Schema:
    set_properties = list(set_properties)
    return pa.schema(
        [
            ("email", pa.string()),
            (HASH, pa.uint64()),
            *[(c, pa.uint64()) for c in _set_columns(len(set_properties))],
            *[(p, pa.string()) for p in audience_properties],
        ],
        metadata={SET_METADATA: json.dumps(set_properties).encode()},
    )


def set_properties_of(schema: pa.Schema) -> list[str]:
    """The mapped properties a snapshot's bit words describe, in bit order."""
    raw = (schema.metadata or {}).get(SET_METADATA)
    return json.loads(raw) if raw else []


def audience_columns_of(schema: pa.Schema) -> list[str]:
    return [n for n in schema.names if n != "email" and not n.startswith("_")]


def _words(masks: list[np.ndarray], rows: int) -> list[np.ndarray]:
    """Per-row booleans (one array per property) packed into uint64 words, bit i%64 of word i//64."""
    words = [np.zeros(rows, dtype=np.uint64) for _ in _set_columns(len(masks))]
    for i, mask in enumerate(masks):
        words[i // 64] |= mask.astype(np.uint64) << np.uint64(i % 64)
    return words


def _bits(words: list[np.ndarray], count: int) -> list[np.ndarray]:
    return [((words[i // 64] >> np.uint64(i % 64)) & np.uint64(1)).astype(bool) for i in range(count)]


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


def read_snapshot(path: str) -> pa.Table:
    """The snapshot file as it is; an unreadable one is an InputError saying what to do."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as error:
        raise InputError(
            f"snapshot {path} is not a readable Parquet file ({type(error).__name__}: {error}); restore the "
            "previous copy, or move it away and run with full_refresh to rebuild it"
        ) from None
    if "email" not in table.column_names or HASH not in table.column_names:
        raise InputError(f"snapshot {path} lacks the email and {HASH} columns; it is not a sync snapshot")
    return table


def _align(table: pa.Table, audience_properties: list[str], set_properties: list[str]) -> pa.Table:
    """``table`` (a snapshot) in ``snapshot_schema(audience_properties, set_properties)``: absent status
    columns read as null, the bit words re-packed by property name (unknown properties: not set)."""
    schema = snapshot_schema(audience_properties, set_properties)
    rows = table.num_rows
    old_names = set_properties_of(table.schema)
    old_words = [table.column(c).to_numpy() for c in _set_columns(len(old_names)) if c in table.column_names]
    old_bits = dict(zip(old_names, _bits(old_words, len(old_names)), strict=False)) if old_words else {}
    words = _words([old_bits.get(n, np.zeros(rows, dtype=bool)) for n in set_properties], rows)
    columns = [table.column("email").cast(pa.string()), table.column(HASH).cast(pa.uint64())]
    columns += [pa.array(w, pa.uint64()) for w in words]
    columns += [
        table.column(p).cast(pa.string()) if p in table.column_names else pa.nulls(rows, pa.string())
        for p in audience_properties
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _current(
    mapped_paths: list[str], audience_properties: list[str]
) -> tuple[pa.Table, pa.Schema | None, list[str]]:
    """Email, hash, set-bit words, statuses and position of every mapped contact; the mapped schema;
    the mapped property names the bit words describe."""
    pieces, schema, props = [], None, []
    for number, path in enumerate(mapped_paths):
        table = pq.read_table(path)
        missing = [p for p in ["email", *audience_properties] if p not in table.column_names]
        if missing:
            raise InputError(f"mapped chunk {path} lacks column(s) {missing}")
        schema = schema or table.schema
        props = property_columns(schema, audience_properties)
        hashes = row_hashes(table, property_columns(table.schema, audience_properties))
        masks = [
            table.column(p).is_valid().to_numpy(zero_copy_only=False)
            if p in table.column_names
            else np.zeros(table.num_rows, bool)
            for p in props
        ]
        words = _words(masks, table.num_rows)
        pieces.append(
            pa.table(
                {
                    "email": table.column("email"),
                    "cur_hash": pa.array(hashes, pa.uint64()),
                    **{f"cur:{c}": pa.array(w, pa.uint64()) for c, w in zip(_set_columns(len(props)), words)},
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
            *[(f"cur:{c}", pa.uint64()) for c in _set_columns(len(props))],
            *[(f"cur:{p}", pa.string()) for p in audience_properties],
            ("chunk", pa.int64()),
            ("row", pa.int64()),
        ]
    )
    return (pa.concat_tables(pieces).cast(empty) if pieces else empty.empty_table()), schema, props


def _strings(column) -> np.ndarray:
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=object)


def _column_words(joined: pa.Table, prefix: str, count: int) -> list[np.ndarray]:
    return [pc.fill_null(joined.column(f"{prefix}{c}"), 0).to_numpy() for c in _set_columns(count)]


def plan(
    mapped_paths: list[str],
    previous_snapshot_path: str | None,
    audience_properties: list[str],
    full_refresh: bool,
    out_dir: str,
    chunk_rows: int = 10_000,
    hold_emails=(),
    keep_on_missing: Iterable[str] = (),
    parallel_tasks: int = 1,
) -> Plan:
    """Write ``out_dir/send/part-*.parquet`` and ``out_dir/next-snapshot.parquet`` (not committed).

    ``chunk_rows``: the most rows per send chunk; ``parallel_tasks``: how many upsert tasks run at once
    (the pool's slots), which evens the chunks out (see :func:`balanced_chunk_rows`).

    ``hold_emails``: emails this run rejected before the diff (see :func:`rejected_emails`).
    ``keep_on_missing``: mapped properties whose mapping row says ``on_missing: keep`` (never cleared).
    """
    current, mapped_schema, set_props = _current(mapped_paths, audience_properties)
    if previous_snapshot_path is None:
        previous_raw, version = snapshot_schema([]).empty_table(), ""
    else:
        previous_raw, version = read_snapshot(previous_snapshot_path), snapshot_version(previous_snapshot_path)
    others = [p for p in audience_columns_of(previous_raw.schema) if p not in audience_properties]
    previous = _align(previous_raw, [*audience_properties, *others], set_props)
    del previous_raw
    previous = previous.rename_columns(
        ["email", "prev_hash", *[f"prev:{c}" for c in _set_columns(len(set_props))]]
        + [f"prev:{p}" for p in [*audience_properties, *others]]
    )
    joined = current.join(previous, keys="email", join_type="full outer", coalesce_keys=True)
    # present ones in export order; absent ones (null chunk) last, sorted by email: reproducible chunks
    joined = joined.sort_by([("chunk", "ascending"), ("row", "ascending"), ("email", "ascending")])

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
        has_prev = pd.notna(prev) & np.isin(prev, AUDIENCE_STATUSES)
        exits = pd.isna(cur) & pd.notna(prev) & np.isin(prev, ACTIVE_AUDIENCE_STATUSES)
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
    run_status = _any_status(effective, audience_properties, joined.num_rows)
    # full_refresh also resends absent contacts' statuses (as updates): contacts HubSpot lost come back
    # as "gone" and leave the snapshot, so validation converges
    send = new | changed | exited | (full_refresh & (in_cur | (absent & run_status)))

    cur_bits = _bits(_column_words(joined, "cur:", len(set_props)), len(set_props))
    prev_bits = _bits(_column_words(joined, "prev:", len(set_props)), len(set_props))
    keep_props = set(keep_on_missing)
    clears, next_bits, losing = {}, [], np.zeros(joined.num_rows, bool)
    for name, cur_bit, prev_bit in zip(set_props, cur_bits, prev_bits, strict=True):
        keep = name in keep_props
        lost = in_cur & prev_bit & ~cur_bit & (not keep)  # had a value we sent, has none now
        losing |= lost
        clears[name] = send & in_cur & ~cur_bit & (True if full_refresh else prev_bit) & (not keep)
        next_bits.append(np.where(in_cur, cur_bit | (prev_bit & keep), prev_bit))

    os.makedirs(out_dir, exist_ok=True)
    send_schema = mapped_schema or pa.schema([("email", pa.string()), *[(p, pa.string()) for p in audience_properties]])
    writer = ChunkWriter(
        os.path.join(out_dir, "send"),
        send_schema.append(pa.field(WRITE, pa.string())),
        balanced_chunk_rows(int(send.sum()), chunk_rows, parallel_tasks),
    )
    sent_by_audience = _write_send(joined, send, effective, clears, mapped_paths, writer)
    send_paths = writer.close()

    next_path = os.path.join(out_dir, "next-snapshot.parquet")
    keep_row = in_cur | held | exited | (absent & _any_status(
        {**effective, **{p: _strings(joined.column(f"prev:{p}")) for p in others}}, [*audience_properties, *others],
        joined.num_rows,
    ))
    snapshot = pa.Table.from_arrays(
        [
            joined.column("email"),
            pc.coalesce(joined.column("cur_hash"), joined.column("prev_hash")),
            *[pa.array(w, pa.uint64()) for w in _words(next_bits, joined.num_rows)],
            *[pa.array(effective[p], pa.string()) for p in audience_properties],
            *[joined.column(f"prev:{p}") for p in others],
        ],
        schema=snapshot_schema([*audience_properties, *others], set_props),
    ).filter(pa.array(keep_row))
    atomic_write_table(snapshot, next_path)
    counts = {
        "new": int(new.sum()),
        "changed": int(changed.sum()),
        "exited": int(exited.sum()),
        "unchanged": int(unchanged.sum()),
        "held": int(held.sum()),
        "absent": int(absent.sum()),
        "to_send": int(send.sum()),
        "to_update": int((send & ~in_cur).sum()),
        "cleared_values": int(sum(int(c.sum()) for c in clears.values())),
        "exiting": int(any_exit.sum()),
        "losing_values": int(losing.sum()),
        "exported_contacts": int(in_cur.sum()),
        "previous": int(in_prev.sum()),
    }
    return Plan(
        send_paths=send_paths,
        next_snapshot_path=next_path,
        previous_snapshot_path=previous_snapshot_path,
        full_refresh=full_refresh,
        counts=counts,
        sent_by_audience=sent_by_audience,
        snapshot_version=version,
    )


def balanced_chunk_rows(rows: int, chunk_rows: int, parallel_tasks: int) -> int:
    """Rows per send chunk: at most ``chunk_rows``, and, when the rows make more than one chunk, a number of
    equal chunks that is a multiple of ``parallel_tasks``.

    Upsert tasks share HubSpot's rate budget, a task taking 1/``parallel_tasks`` of it while others run. So
    every wave of tasks should be full and its tasks should end together: 11 chunks in 4 slots would end
    with 3 tasks using 3/4 of the budget, 2 chunks with 2 tasks using half of it. One chunk runs alone and
    takes the whole budget, so a small run is not split up.
    """
    if chunk_rows < 1 or parallel_tasks < 1:
        raise ValueError(f"chunk_rows and parallel_tasks must be positive, got {chunk_rows} and {parallel_tasks}")
    chunks = math.ceil(rows / chunk_rows)
    if chunks <= 1:
        return chunk_rows
    chunks = math.ceil(chunks / parallel_tasks) * parallel_tasks
    return math.ceil(rows / chunks)


def _any_status(effective: Mapping[str, np.ndarray], audience_properties: list[str], rows: int) -> np.ndarray:
    any_status = np.zeros(rows, dtype=bool)
    for prop in audience_properties:
        any_status |= pd.notna(effective[prop])
    return any_status


def _write_send(
    joined: pa.Table,
    send: np.ndarray,
    effective: dict[str, np.ndarray],
    clears: dict[str, np.ndarray],
    mapped_paths: list[str],
    writer: ChunkWriter,
) -> dict[str, dict[str, int]]:
    """Stream the rows to send, chunk by chunk, with their effective statuses, clears as ``""`` and
    ``_write``; count statuses sent."""
    chunk = pc.fill_null(joined.column("chunk"), len(mapped_paths)).to_numpy()
    row = pc.fill_null(joined.column("row"), 0).to_numpy()
    sent: dict[str, Counter] = {p: Counter() for p in effective}
    for number in range(len(mapped_paths) + 1):
        lo, hi = np.searchsorted(chunk, number, "left"), np.searchsorted(chunk, number, "right")
        positions = lo + np.flatnonzero(send[lo:hi])
        if not len(positions):
            continue
        present = number < len(mapped_paths)
        if present:
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
            elif name == WRITE:
                columns[name] = pa.array([UPSERT if present else UPDATE] * len(positions), pa.string())
            elif name in body.column_names:
                column = body.column(name)
                if name in clears:
                    column = pc.if_else(pa.array(clears[name][positions]), pa.scalar("", pa.string()), column)
                columns[name] = column
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
    with AtomicParquetWriter(out_path, schema) as writer:
        for batch in reader.iter_batches():
            table = pa.Table.from_batches([batch])
            writer.write(table.filter(pc.invert(pc.is_in(table.column("email"), rejected_set))))
        if previous_snapshot_path:
            previous = read_snapshot(previous_snapshot_path)
            previous = previous.filter(pc.is_in(previous.column("email"), rejected_set))
            writer.write(_align(previous, audience_columns_of(schema), set_properties_of(schema)))
    return out_path


def apply_gone(snapshot_path: str, gone_emails: Iterable[str], out_path: str | None = None) -> tuple[str, int]:
    """Drop contacts HubSpot no longer has (deleted or merged away: the upsert's gone files) from the
    snapshot candidate, so they are never re-created by an exit and never counted as expected.
    Returns the new path and how many were dropped ("gone in HubSpot")."""
    out_path = out_path or snapshot_path.removesuffix(".parquet") + "-present.parquet"
    gone = pa.array(sorted(set(gone_emails)), pa.string())
    reader = pq.ParquetFile(snapshot_path)
    dropped = 0
    with AtomicParquetWriter(out_path, reader.schema_arrow) as writer:
        for batch in reader.iter_batches():
            table = pa.Table.from_batches([batch])
            hit = pc.is_in(table.column("email"), gone)
            dropped += pc.sum(hit).as_py() or 0
            writer.write(table.filter(pc.invert(hit)))
    return out_path, dropped


def build_candidate(
    next_snapshot_path: str,
    rejected: Iterable[str],
    gone: Iterable[str],
    previous_snapshot_path: str | None,
    full_refresh: bool,
    out_path: str,
) -> tuple[str, dict[str, int]]:
    """The snapshot candidate after the upsert: upsert-rejected contacts get their previous row back
    (so they are retried), gone ones leave. A ``full_refresh`` reconciles instead: rejected contacts
    are dropped rather than restored, so the snapshot holds only what HubSpot confirmed this run (or
    what the run did not touch), and a drifted snapshot cannot fail every later validation."""
    rejected = list(dict.fromkeys(rejected))
    restored = next_snapshot_without(
        next_snapshot_path,
        rejected,
        previous_snapshot_path=None if full_refresh else previous_snapshot_path,
        out_path=out_path.removesuffix(".parquet") + "-unfiltered.parquet",
    )
    path, dropped = apply_gone(restored, gone, out_path)
    os.remove(restored)
    return path, {"upsert_rejected": len(rejected), "gone_in_hubspot": dropped}


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


# --------------------------------------------------------------------------------- mass-change guard


def check_mass_change(
    plan_counts: Mapping[str, int],
    map_counts: Mapping,
    max_exit_fraction: float,
    max_reject_fraction: float,
    allow: bool = False,
) -> dict:
    """Stop a run whose plan looks like broken input rather than real change, before any write.

    Blocked when the export is empty while the snapshot is not, when more than ``max_exit_fraction``
    of the snapshot's contacts would exit, or lose a value they had (a field missing from the export
    would clear it everywhere), or when more than ``max_reject_fraction`` of the exported profiles were
    rejected (duplicates excluded: their winner is sent). Returns the numbers (a dry run passes
    ``allow=True`` and shows them); raises :class:`MassChangeBlocked` unless ``allow`` (the run param
    ``allow_mass_change``).
    """
    previous = int(plan_counts.get("previous", 0))
    exiting = int(plan_counts.get("exiting", 0))
    losing = int(plan_counts.get("losing_values", 0))
    exported = int(map_counts.get("exported", 0))
    duplicates = int(map_counts.get("rejected_by_category", {}).get("DUPLICATE_EMAIL", 0))
    rejected = int(map_counts.get("rejected", 0)) - duplicates
    numbers = {
        "snapshot_contacts": previous,
        "exiting": exiting,
        "exit_fraction": round(exiting / previous, 4) if previous else 0.0,
        "losing_values": losing,
        "max_exit_fraction": max_exit_fraction,
        "exported": exported,
        "rejected": rejected,
        "reject_fraction": round(rejected / exported, 4) if exported else 0.0,
        "max_reject_fraction": max_reject_fraction,
    }
    reasons = []
    if exported == 0 and previous > 0:
        reasons.append(f"the export is empty while the snapshot holds {previous:,} contacts")
    if previous and exiting / previous > max_exit_fraction:
        reasons.append(
            f"{exiting:,} of the snapshot's {previous:,} contacts would exit ({exiting / previous:.1%}, "
            f"limit max_exit_fraction {max_exit_fraction:.0%})"
        )
    if previous and losing / previous > max_exit_fraction:
        reasons.append(
            f"{losing:,} of the snapshot's {previous:,} contacts would have a value cleared ({losing / previous:.1%}, "
            f"limit max_exit_fraction {max_exit_fraction:.0%}); is a mapped field missing from the export?"
        )
    if exported and rejected / exported > max_reject_fraction:
        reasons.append(
            f"{rejected:,} of {exported:,} exported profiles were rejected ({rejected / exported:.1%}, "
            f"limit max_reject_fraction {max_reject_fraction:.0%}); see the map rejects file"
        )
    numbers["blocked_because"] = reasons
    numbers["allowed"] = bool(reasons) and allow
    if reasons and not allow:
        raise MassChangeBlocked(
            "mass-change guard: nothing was written: "
            + "; ".join(reasons)
            + ". Check the export (audiences, merge policy, identity namespace, source files) and the map "
            "rejects. If this change is intended, trigger one run with the param allow_mass_change=true."
        )
    return numbers


# ---------------------------------------------------------------------------- snapshot versioning


def write_file_atomically(path: str, data: bytes | None = None, copy_from: str | None = None) -> str:
    """``data``, or a copy of the file ``copy_from``, at the local ``path`` through ``storage.atomic_path``:
    readers see the old file or the new, never half."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with storage.atomic_path(Path(path)) as tmp:
        if copy_from is not None:
            shutil.copyfile(copy_from, tmp)
        else:
            tmp.write_bytes(data)
    return path


def snapshot_version(snapshot_path: str | None) -> str:
    """The snapshot's version: the SHA-256 of its bytes, "" when there is none yet."""
    if snapshot_path is None or not os.path.exists(snapshot_path):
        return ""
    digest = hashlib.sha256()
    with open(snapshot_path, "rb") as handle:
        for block in iter(lambda: handle.read(8 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_version_record(snapshot_path: str) -> dict:
    """The sidecar ``<snapshot>.version.json``: sha256, generation, run_id, committed_at."""
    try:
        with open(snapshot_path + VERSION_SUFFIX, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return {"sha256": "", "generation": 0, "run_id": None, "committed_at": None}
    except (OSError, ValueError) as error:
        raise InputError(f"snapshot version file {snapshot_path}{VERSION_SUFFIX} is unreadable ({error})") from None


def _describe(version: str, record: dict) -> str:
    if not version:
        return "no snapshot"
    if record.get("sha256") == version:
        generation, run_id, at = record.get("generation"), record.get("run_id"), record.get("committed_at")
        return f"generation {generation} written by run {run_id} at {at}"
    return f"version {version[:12]}"


def _later(first: str | None, second: str | None) -> bool:
    """Whether the ISO timestamp ``first`` is after ``second`` (either unknown: no)."""
    if not first or not second:
        return False
    return datetime.fromisoformat(first) > datetime.fromisoformat(second)


def pin_plan_base(
    pin_path: str, version: str, snapshot_path: str, run_id: str | None = None, run_after: str | None = None
) -> str:
    """Refuse, before anything is written, to apply this run's export to a snapshot a newer run committed.

    Two records say so: the snapshot's version sidecar (which run committed it, and that run's
    ``run_after``), and the pin this function keeps in the run folder (the version the run first planned
    on). Refused: the snapshot was committed by another run scheduled after this one (``run_after``), or
    this run first planned on another version that it did not commit itself. Allowed: a retried plan on
    the same version, and a rerun of a run after its own commit (it plans on what it committed, so it
    sends nothing twice). Returns the version now pinned."""
    record = read_version_record(snapshot_path)
    by_this_run = bool(run_id) and record.get("sha256") == version and record.get("run_id") == run_id
    by_newer_run = (
        record.get("sha256") == version and not by_this_run and _later(record.get("run_after"), run_after)
    )
    pinned = None
    if os.path.exists(pin_path):
        with open(pin_path, encoding="utf-8") as handle:
            pinned = json.load(handle)["snapshot_version"]
    if by_newer_run or (pinned is not None and pinned != version and not by_this_run):
        first = f"first planned on {_describe(pinned, {})}" if pinned is not None else f"was scheduled for {run_after}"
        raise SnapshotMoved(
            f"this run {first}; the snapshot is now at {_describe(version, record)}. This run's export is older "
            "than the snapshot and would undo newer changes: nothing was planned or written. Trigger a new run "
            "instead of clearing this one."
        )
    if pinned != version:
        write_file_atomically(pin_path, json.dumps({"snapshot_version": version, "run_id": run_id}).encode())
    return version


def commit_snapshot(
    candidate_path: str, snapshot_path: str, expected_version: str, run_id: str, run_after: str | None = None
) -> dict:
    """Copy the candidate over the snapshot atomically, only if the snapshot is still the one this run
    planned on (``Plan.snapshot_version``), and bump the version sidecar, which records the committing
    run and its ``run_after`` (:func:`pin_plan_base` refuses older runs on it). A retried commit of the
    same run that already succeeded is a no-op. Returns the new version record."""
    current = snapshot_version(snapshot_path)
    record = read_version_record(snapshot_path)
    if current != expected_version:
        if current == snapshot_version(candidate_path) and record.get("run_id") == run_id:
            return record  # this run's own commit, retried
        raise SnapshotMoved(
            f"the snapshot {snapshot_path} changed since this run planned (planned on "
            f"{_describe(expected_version, {})}, now {_describe(current, record)}). Committing would overwrite "
            "newer history with a stale plan: nothing was committed. Trigger a new run (it plans from the "
            "current snapshot) instead of clearing or retrying this one."
        )
    write_file_atomically(snapshot_path, copy_from=candidate_path)
    new = {
        "sha256": snapshot_version(snapshot_path),
        "generation": int(record.get("generation") or 0) + 1,
        "run_id": run_id,
        "run_after": run_after,
        "previous_sha256": expected_version,
        "committed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_file_atomically(snapshot_path + VERSION_SUFFIX, json.dumps(new, indent=2).encode())
    return new


# ------------------------------------------------------------------------- audience name registry


def read_registry(path: str) -> dict[str, str]:
    """The {audience id: property name} registry kept beside the snapshot; none yet: empty."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise InputError(
            f"audience property registry {path} is unreadable ({error}); restore it, or delete it to name the "
            "audience properties from the current audience names again"
        ) from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise InputError(f"audience property registry {path} must be a JSON object of audience id to property name")
    return data


def write_registry(path: str, registry: Mapping[str, str]) -> str:
    return write_file_atomically(path, json.dumps(dict(sorted(registry.items())), indent=2).encode())
