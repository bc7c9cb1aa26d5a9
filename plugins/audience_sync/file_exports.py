"""Audience exports delivered as files (AEP file-based destinations: CSV or Parquet on cloud storage) →
the nested export schema that the API export produces, so that everything downstream reads one shape.

Flat files name XDM paths with dots (Experience League, "Activate audiences to batch profile export
destinations": selected fields are exported as columns named by their XDM path):
``_id`` (optional: nothing documents that exports carry it), ``personalEmail.address``,
``person.name.firstName``, ``workAddress.city``, ``identityMap.<namespace>`` (the identity value), and per
audience ``segmentMembership.<namespace>.<audienceId>.status`` / ``.lastQualificationTime`` (``ups`` for
Platform-built audiences, the audience's own namespace otherwise). Parquet files may also carry the nested
columns themselves.

Pure: no Airflow, no network; the caller opens the files.
"""

from __future__ import annotations

import codecs
import csv
import re
from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from audience_sync.errors import InputError

MEMBERSHIP_TYPE = pa.struct([("status", pa.string()), ("lastQualificationTime", pa.timestamp("ms", tz="UTC"))])
IDENTITY_TYPE = pa.struct([("id", pa.string()), ("authenticatedState", pa.string()), ("primary", pa.bool_())])
IDENTITY_MAP_TYPE = pa.map_(pa.string(), pa.list_(IDENTITY_TYPE))
SEGMENT_MEMBERSHIP_TYPE = pa.map_(pa.string(), pa.map_(pa.string(), MEMBERSHIP_TYPE))
NAME_TYPE = pa.struct([("firstName", pa.string()), ("lastName", pa.string())])
EXPORT_SCHEMA = pa.schema(
    [
        ("_id", pa.string()),
        ("identityMap", IDENTITY_MAP_TYPE),
        ("personalEmail", pa.struct([("address", pa.string())])),
        ("person", pa.struct([("name", NAME_TYPE)])),
        ("workAddress", pa.struct([("street1", pa.string()), ("city", pa.string()), ("country", pa.string())])),
        ("segmentMembership", SEGMENT_MEMBERSHIP_TYPE),
    ]
)
MEMBERSHIP_COLUMN = re.compile(
    r"^segmentMembership\.(?P<ns>[^.]+)\.(?P<audience>.+)\.(?P<field>status|lastQualificationTime)$"
)
IDENTITY_COLUMN = re.compile(r"^identityMap\.(?P<ns>[^.]+?)(?:\.(?P<field>id|authenticatedState|primary))?$")


class ExportFileError(InputError):
    """A file-based export cannot be read or converted; the message names the file and the place."""


# --- reading ----------------------------------------------------------------------------------------
def read_csv(handle: BinaryIO, source: str) -> pa.Table:
    """Every column as text (ids must not turn into numbers); invalid UTF-8 fails naming line and byte."""
    data = handle.read()
    _check_utf8(data, source)
    data = data.removeprefix(codecs.BOM_UTF8)
    names = next(csv.reader([data.split(b"\n", 1)[0].decode().rstrip("\r")]), [])
    try:
        return pacsv.read_csv(
            pa.py_buffer(data),
            convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string())),
        )
    except pa.ArrowInvalid as error:
        raise ExportFileError(f"{source}: not a readable CSV file: {error}") from None


def _check_utf8(data: bytes, source: str) -> None:
    try:
        codecs.decode(data, "utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise ExportFileError(
            f"{source}: invalid UTF-8 at byte {error.start} (line {line}, column {column}): {error.reason}"
        ) from None


def read_parquet(handle: BinaryIO, source: str) -> pa.Table:
    try:
        return pq.read_table(handle)
    except (pa.ArrowInvalid, OSError) as error:
        raise ExportFileError(f"{source}: not a readable Parquet file: {error}") from None


def read_export_file(handle: BinaryIO, source: str) -> pa.Table:
    """One CSV or Parquet audience export (by extension) → ``EXPORT_SCHEMA``."""
    lowered = source.lower()
    if lowered.endswith(".csv"):
        return to_export_schema(read_csv(handle, source), source)
    if lowered.endswith(".parquet") or lowered.endswith(".parq"):
        return to_export_schema(read_parquet(handle, source), source)
    raise ExportFileError(f"{source}: unsupported file type; expected .csv or .parquet")


def audience_ids(table: pa.Table) -> set[str]:
    """Audience ids with at least one membership in an export-schema table."""
    namespaces = _map_values(table["segmentMembership"].combine_chunks())
    return set(pc.unique(_map_keys(namespaces)).to_pylist())


def check_audiences_found(found: set[str], audiences: list[dict[str, str]]) -> None:
    """A requested audience without a single member in a file-based export is an error, not a warning:
    the files were exported for other audiences, or the audience's column is missing."""
    missing = [a for a in audiences if a["id"] not in found]
    if missing:
        named = ", ".join(f"{a.get('name') or a['id']!r} ({a['id']})" for a in missing)
        raise InputError(f"audience(s) {named} have no member in the file-based export; export them, then rerun")


def _map_keys(array: pa.MapArray) -> pa.Array:
    start, end = array.offsets[0].as_py(), array.offsets[-1].as_py()
    return array.keys.slice(start, end - start)


def _map_values(array: pa.MapArray) -> pa.Array:
    """The values of every entry; ``.items`` alone ignores a slice's bounds."""
    start, end = array.offsets[0].as_py(), array.offsets[-1].as_py()
    return array.items.slice(start, end - start)


# --- conversion -------------------------------------------------------------------------------------
def to_export_schema(table: pa.Table, source: str) -> pa.Table:
    """Flat dotted columns are nested; nested columns are cast to the contract's types. A missing ``_id``
    stays null: the mapping then identifies profiles by their identities."""
    if any("." in name for name in table.column_names):
        return _nest(table, source)
    try:
        columns = [
            table[field.name].cast(field.type) if field.name in table.column_names
            else pa.nulls(table.num_rows, field.type)
            for field in EXPORT_SCHEMA
        ]
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise ExportFileError(f"{source}: columns do not match the export schema: {error}") from None
    return pa.Table.from_arrays(columns, schema=EXPORT_SCHEMA)


def _nest(table: pa.Table, source: str) -> pa.Table:
    n = table.num_rows

    def text(name: str) -> pa.Array:
        if name not in table.column_names:
            return pa.nulls(n, pa.string())
        return _blank_to_null(table[name].combine_chunks().cast(pa.string()))

    name = _struct({"firstName": text("person.name.firstName"), "lastName": text("person.name.lastName")}, NAME_TYPE)
    columns = [
        text("_id"),
        _identity_map(table, text, source),
        _struct({"address": text("personalEmail.address")}, EXPORT_SCHEMA.field("personalEmail").type),
        pa.StructArray.from_arrays([name], fields=list(EXPORT_SCHEMA.field("person").type), mask=name.is_null()),
        _struct(
            {f: text(f"workAddress.{f}") for f in ("street1", "city", "country")},
            EXPORT_SCHEMA.field("workAddress").type,
        ),
        _segment_membership(table, text, source),
    ]
    return pa.Table.from_arrays(columns, schema=EXPORT_SCHEMA)


def _blank_to_null(array: pa.Array) -> pa.Array:
    return pc.if_else(pc.equal(array, ""), pa.scalar(None, pa.string()), array)


def _struct(columns: dict[str, pa.Array], type_: pa.StructType) -> pa.StructArray:
    """Null where every field is null: XDM leaves absent objects out rather than empty."""
    all_null = None
    for column in columns.values():
        null = pc.is_null(column)
        all_null = null if all_null is None else pc.and_(all_null, null)
    return pa.StructArray.from_arrays(list(columns.values()), fields=list(type_), mask=all_null)


def _map_from_entries(n: int, entries: list[tuple[str, pa.Array, np.ndarray]], type_: pa.MapType) -> pa.MapArray:
    """Per row, the entries (key, value) whose ``present`` flag is set, in the order given; rows without
    any entry are null."""
    rows = [np.flatnonzero(present) for _, _, present in entries]
    all_rows = np.concatenate(rows) if rows else np.empty(0, np.int64)
    order = np.argsort(all_rows, kind="stable")
    keys = pa.array(np.repeat([key for key, _, _ in entries], [len(r) for r in rows]).astype(object)
                    if entries else [], pa.string()).take(pa.array(order))
    values = (pa.concat_arrays([value.take(pa.array(r)) for (_, value, _), r in zip(entries, rows, strict=True)])
              if entries else pa.array([], type_.item_type)).take(pa.array(order))
    counts = np.bincount(all_rows, minlength=n).astype(np.int32)
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(counts, out=offsets[1:])
    return pa.MapArray.from_arrays(pa.array(offsets), keys, values, type=type_, mask=pa.array(counts == 0))


def _identity_map(table: pa.Table, text, source: str) -> pa.MapArray:
    """``identityMap.<ns>`` (or ``.id``) holds the identity; optional ``.authenticatedState`` / ``.primary``."""
    namespaces: dict[str, set[str]] = {}
    for name in table.column_names:
        match = IDENTITY_COLUMN.match(name)
        if match:
            namespaces.setdefault(match["ns"], set()).add(name)
    n = table.num_rows
    entries = []
    for ns, names in namespaces.items():
        ids = text(f"identityMap.{ns}.id") if f"identityMap.{ns}.id" in names else text(f"identityMap.{ns}")
        state = text(f"identityMap.{ns}.authenticatedState")
        primary = _boolean(text(f"identityMap.{ns}.primary"), f"identityMap.{ns}.primary", source)
        one = pa.StructArray.from_arrays([ids, state, primary], fields=list(IDENTITY_TYPE))
        lists = pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32)), one)
        entries.append((ns, lists, ids.is_valid().to_numpy(zero_copy_only=False)))
    return _map_from_entries(n, entries, IDENTITY_MAP_TYPE)


def _boolean(values: pa.Array, column: str, source: str) -> pa.Array:
    lowered = pc.utf8_lower(values)
    known = pc.or_kleene(pc.is_null(lowered), pc.is_in(lowered, pa.array(["true", "false", "1", "0"])))
    if not pc.all(known, min_count=0).as_py():  # min_count=0: an empty file has nothing unknown
        row = pc.index(known, False).as_py()
        raise ExportFileError(f"{source}: row {row + 1} column {column!r}: {values[row].as_py()!r} is not a boolean")
    return pc.if_else(pc.is_null(lowered), pa.scalar(None, pa.bool_()), pc.is_in(lowered, pa.array(["true", "1"])))


def _segment_membership(table: pa.Table, text, source: str) -> pa.MapArray:
    audiences: dict[str, dict[str, str]] = {}  # namespace → audience id → status column (ordered)
    for name in table.column_names:
        match = MEMBERSHIP_COLUMN.match(name)
        if match and match["field"] == "status":
            audiences.setdefault(match["ns"], {})[match["audience"]] = name
    n = table.num_rows
    inner_entries = []
    for ns, columns in audiences.items():
        entries = []
        for audience, status_column in sorted(columns.items()):
            status = text(status_column)
            time_column = f"segmentMembership.{ns}.{audience}.lastQualificationTime"
            times = _timestamps(table, time_column, source)
            entries.append((audience, pa.StructArray.from_arrays([status, times], fields=list(MEMBERSHIP_TYPE)),
                            status.is_valid().to_numpy(zero_copy_only=False)))
        inner = _map_from_entries(n, entries, SEGMENT_MEMBERSHIP_TYPE.item_type)
        inner_entries.append((ns, inner, inner.is_valid().to_numpy(zero_copy_only=False)))
    return _map_from_entries(n, inner_entries, SEGMENT_MEMBERSHIP_TYPE)


def _timestamps(table: pa.Table, column: str, source: str) -> pa.Array:
    """ISO 8601 text (any offset) or an existing timestamp column → timestamp[ms, UTC]."""
    target = MEMBERSHIP_TYPE.field("lastQualificationTime").type
    if column not in table.column_names:
        return pa.nulls(table.num_rows, target)
    values = table[column].combine_chunks()
    if pa.types.is_timestamp(values.type):
        return values.cast(target) if values.type.tz else pc.assume_timezone(values, "UTC").cast(target)
    strings = _blank_to_null(values.cast(pa.string()))
    series = strings.to_pandas()
    try:
        parsed = pd.to_datetime(series, utc=True, format="ISO8601")
    except (ValueError, TypeError):
        for row, value in enumerate(series):
            try:
                pd.to_datetime(value, utc=True, format="ISO8601")
            except (ValueError, TypeError):
                raise ExportFileError(
                    f"{source}: row {row + 1} column {column!r}: {value!r} is not an ISO 8601 timestamp"
                ) from None
        raise
    return pa.array(parsed.dt.as_unit("ms"), target)
