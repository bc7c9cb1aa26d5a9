"""Per-row reference implementation of audience_sync.mapping.map_export.

Plain Python over ``to_pylist()`` rows with dict lookups: the yardstick for the vectorised mapping's
speed, and an independent oracle in the tests (same mapped rows, same reject records and categories;
reason sentences are its own). It shares only the file format pieces (mapping loader, writers, schema)
and the email pattern, which is a specification rather than logic.

    python benchmarks/mapping_baseline.py --mapping include/mappings/default.yaml --out /tmp/bench \\
        --audience seg1=aep_gold part-0.parquet part-1.parquet
prints the counts and timings of both implementations and their speed ratio.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

from audience_sync.mapping import (  # noqa: E402
    AUDIENCE_NAMESPACE,
    AUDIENCE_STATUSES,
    EMAIL_PATTERN,
    IDENTITY_ROOT,
    MAX_EMAIL_LENGTH,
    MAX_LOCAL_PART_LENGTH,
    MAX_VALUE_LENGTH,
    PROFILE_ID,
    REJECT_SCHEMA,
    AtomicParquetWriter,
    ChunkWriter,
    FieldMapping,
    Mapping,
    MapResult,
    _check_schema,
    load_mapping,
    map_counts,
    map_export,
)

EMAIL = re.compile(EMAIL_PATTERN)


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        text = str(int(moment.timestamp() * 1000))
    elif isinstance(value, date):
        text = str(int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp() * 1000))
    else:
        text = str(value)
    text = text.strip()
    return text or None


def _lookup(row: dict, path: str):
    value = row
    for name in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(name)
    return value


def _candidates(row: dict, mapping_field: FieldMapping) -> list[str]:
    """Non-blank values in preference order: per source, identity ids primary first, then the rest."""
    found = []
    for source in mapping_field.sources:
        head, *rest = source.split(".")
        if head == IDENTITY_ROOT:
            ids = [i for key, items in (row.get(head) or []) if key.lower() == rest[0].lower() for i in items or []]
            ordered = [i for i in ids if i and i.get("primary")] + [i for i in ids if i and not i.get("primary")]
            found += [t for t in (_text((i or {}).get("id")) for i in ordered) if t is not None]
        else:
            text = _text(_lookup(row, source))
            if text is not None:
                found.append(text)
    return found


def _is_email(text: str) -> bool:
    at = text.find("@")
    return bool(EMAIL.match(text)) and len(text) <= MAX_EMAIL_LENGTH and 0 < at <= MAX_LOCAL_PART_LENGTH


def _email(row: dict, mapping: Mapping) -> tuple[str | None, str | None]:
    """(valid email, raw best candidate when none is valid)."""
    candidates = [c.lower() for c in _candidates(row, mapping.email)]
    valid = [c for c in candidates if _is_email(c)]
    if valid:
        return valid[0], None
    return None, (candidates[0] if candidates else None)


def _memberships(row: dict) -> tuple[int | None, dict[str, str | None]]:
    rank, statuses = None, {}
    for namespace, audiences in row.get("segmentMembership") or []:
        for audience_id, membership in audiences or []:
            membership = membership or {}
            moment = membership.get("lastQualificationTime")
            if moment is not None:
                millis = int(moment.timestamp() * 1000)
                rank = millis if rank is None else max(rank, millis)
            if namespace == AUDIENCE_NAMESPACE:
                status = _text(membership.get("status"))
                statuses[audience_id] = status.lower() if status else None
    return rank, statuses


def _rows(part_paths: list[str], mapping: Mapping, read_batch_rows: int):
    for part in part_paths:
        reader = pq.ParquetFile(part)
        columns = _check_schema(reader.schema_arrow, mapping, part)
        for batch in reader.iter_batches(batch_size=read_batch_rows, columns=columns):
            yield from batch.to_pylist()


def map_export_baseline(
    part_paths: list[str],
    mapping: Mapping,
    audience_properties: dict[str, str],
    out_dir: str,
    chunk_rows: int = 10_000,
    read_batch_rows: int = 100_000,
) -> MapResult:
    keyed: dict[str, list[tuple]] = {}
    for seq, row in enumerate(_rows(part_paths, mapping, read_batch_rows)):
        email, _raw = _email(row, mapping)
        if email is None:
            continue
        rank, statuses = _memberships(row)
        key = (-(rank if rank is not None else -(2**63)), row.get("_id") is None, row.get("_id") or "", seq)
        keyed.setdefault(email, []).append((key, row.get("_id"), statuses))
    winners, winner_ids, merged, merged_statuses = {}, {}, set(), {}
    for email, rows in keyed.items():
        rows.sort(key=lambda item: item[0])
        (key, winner_id, _), *others = rows
        winners[key[3]] = email
        winner_ids[email] = winner_id
        # the winner's own profile in other rows (one file per audience): merged, statuses in key order
        same = [statuses for other_key, other_id, statuses in others if winner_id is not None and other_id == winner_id]
        merged |= {other_key[3] for other_key, other_id, _ in others if winner_id is not None and other_id == winner_id}
        merged_statuses[key[3]] = same

    names = ["email", *[f.target for f in mapping.attributes], *audience_properties.values(), PROFILE_ID]
    chunks = ChunkWriter(os.path.join(out_dir, "mapped"), pa.schema([(n, pa.string()) for n in names]), chunk_rows)
    rejects_path = os.path.join(out_dir, "rejects", "map.parquet")
    categories: Counter[str] = Counter()
    total = valid = 0
    mapped_rows: list[dict] = []
    rejected_rows: list[dict] = []
    with AtomicParquetWriter(rejects_path, REJECT_SCHEMA) as rejects:
        for seq, row in enumerate(_rows(part_paths, mapping, read_batch_rows)):
            total += 1
            if seq in merged:
                continue
            email, raw = _email(row, mapping)
            out = {"email": email}
            problem = None
            if email is None and raw is None:
                problem = (" or ".join(mapping.email.sources), "MISSING_EMAIL", "no email")
            elif email is None:
                problem = ("email", "INVALID_EMAIL", "invalid email")
            elif seq not in winners:
                problem = ("email", "DUPLICATE_EMAIL", f"duplicate of {winner_ids[email]}")
            for mapping_field in mapping.attributes:
                found = _candidates(row, mapping_field)
                out[mapping_field.target] = found[0] if found else None
                if problem is None and found and len(found[0]) > MAX_VALUE_LENGTH:
                    problem = (mapping_field.target, "VALUE_TOO_LONG", f"{len(found[0])} characters")
            _, statuses = _memberships(row)
            for audience_id, prop in audience_properties.items():
                found_statuses = [statuses, *merged_statuses.get(seq, [])]
                out[prop] = next((s[audience_id] for s in found_statuses if s.get(audience_id) is not None), None)
                if problem is None and out[prop] is not None and out[prop] not in AUDIENCE_STATUSES:
                    problem = (prop, "INVALID_STATUS", f"status {out[prop]}")
            out[PROFILE_ID] = row.get("_id")
            if problem is None:
                valid += 1
                mapped_rows.append(out)
            else:
                field_name, category, reason = problem
                categories[category] += 1
                record = {
                    "stage": "map",
                    "record_id": row.get("_id"),
                    "email": email or raw,
                    "field": field_name,
                    "category": category,
                    "reason": reason,
                }
                rejected_rows.append(record)
            if len(mapped_rows) >= chunk_rows:
                chunks.add(pa.Table.from_pylist(mapped_rows, schema=chunks.schema))
                mapped_rows = []
        chunks.add(pa.Table.from_pylist(mapped_rows, schema=chunks.schema))
        rejects.write(pa.Table.from_pylist(rejected_rows, schema=REJECT_SCHEMA))
    return MapResult(
        mapped_paths=chunks.close(), rejects_path=rejects_path, counts=map_counts(total, valid, categories, len(merged))
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mapping", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--audience", action="append", default=[], help="audience_id=property (repeatable)")
    parser.add_argument("parts", nargs="+")
    args = parser.parse_args(argv)
    mapping = load_mapping(args.mapping)
    audiences = dict(item.split("=", 1) for item in args.audience)
    timings = {}
    for name, function in (("vectorised", map_export), ("per-row", map_export_baseline)):
        started = time.perf_counter()
        result = function(args.parts, mapping, audiences, os.path.join(args.out, name))
        timings[name] = time.perf_counter() - started
        print(f"{name}: {timings[name]:.2f} s {result.counts}")
    print(f"speed ratio (per-row / vectorised): {timings['per-row'] / timings['vectorised']:.1f}x")


if __name__ == "__main__":
    main()
