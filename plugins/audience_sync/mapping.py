"""XDM profile export → HubSpot contact rows, vectorised and in bounded memory.

Pure logic: reads the export's Parquet parts and writes Parquet chunks on the local filesystem (through
``storage.atomic_path``, the one atomic write), with no Airflow call, so it runs the same in a task, a test
or a benchmark.

Two passes over the export keep memory bounded whatever its size:
1. the identity and audience columns only: the email (or why there is none), rank, profile id, row number
   and audience statuses of every profile, kept for pass 2 so they are read and checked once; these small
   columns pick one winner per email across all batches and part files;
2. the mapping proper, batch by batch (the attribute columns only), writing the winners in chunk files
   and everything else in the rejects file (one row per rejected profile, first reason wins in the order
   MISSING_EMAIL, INVALID_EMAIL, DUPLICATE_EMAIL, VALUE_TOO_LONG, INVALID_STATUS).

Duplicate rule (one person exported twice, or one address in two spellings): the profile with the latest
``lastQualificationTime`` over all its audience memberships wins, ties go to the smallest profile id. The
winner is kept even if it is then rejected for another reason: the latest profile is the truth about
that person, and sending an older duplicate instead would write stale data. Rows with the winner's email
AND profile id are the same profile split over several rows (file-based exports write one file per
audience): they are merged, not rejected: values come from the winning row, audience statuses are the
union (the winning row's status first, then the other rows' in the same order).

Profile id (rejects' ``record_id``, the tie-break): ``_id`` when the export carries it (nothing documents
that a profile export does), otherwise the primary identity as ``<namespace>:<id>`` (namespace lowercased;
without a primary flag, the first identity in export order). Identity namespaces (``identityMap`` keys,
e.g. Adobe's ``Email``) and audience namespaces (``segmentMembership`` keys) match case-insensitively.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from audience_sync import storage
from audience_sync.config import load_sync_config, load_yaml
from audience_sync.constants import AUDIENCE_STATUSES
from audience_sync.errors import InputError

# developers.hubspot.com, CRM "Properties" API: string property values hold at most 65,536 characters.
MAX_VALUE_LENGTH = 65_536
# HubSpot internal property names: lowercase letters, digits, underscores, starting with a letter
# (developers.hubspot.com, CRM "Properties" API, create a property: `name`).
PROPERTY_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
XDM_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
# Pragmatic RFC 5322 subset, applied after trimming and lowercasing: dot-atom local part (the printable
# ASCII RFC 5322 allows unquoted), '@', then dot-separated hostname labels (letters, digits, inner
# hyphens) ending in a TLD of 2+ letters. Quoted local parts, IP-literal domains and non-ASCII addresses
# are refused on purpose: CRMs and mail providers reject or mangle them. Total length <= 254 and local
# part <= 64 (RFC 5321) are checked beside the pattern. Same pattern for RE2 (pyarrow) and Python's re.
EMAIL_PATTERN = (
    r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}$"
)
MAX_EMAIL_LENGTH = 254
MAX_LOCAL_PART_LENGTH = 64
# Segmentation export jobs: segmentNs "By default, the value is 'ups'"; other audiences pass their own.
AUDIENCE_NAMESPACE = "ups"
IDENTITY_ROOT = "identityMap"
MEMBERSHIP_COLUMN = "segmentMembership"
ID_COLUMN = "_id"
PROFILE_ID = "_profile_id"
DUPLICATE_RULE = "latest lastQualificationTime wins, ties go to the smallest profile id"

REJECT_SCHEMA = pa.schema(
    [
        ("stage", pa.string()),
        ("record_id", pa.string()),
        ("email", pa.string()),
        ("field", pa.string()),
        ("category", pa.string()),
        ("reason", pa.string()),
    ]
)

_TOP_KEYS = {"version", "fields", "governance"}
_ROW_KEYS = {"source", "target", "fallback", "optional", "on_missing"}
ON_MISSING = ("clear", "keep")  # a value gone from AEP: clear the HubSpot property (send ""), or leave it
_GOVERNANCE_KEYS = {"blocked_fields"}


class MappingError(InputError):
    """The mapping file, or the export it is applied to, cannot produce HubSpot contacts."""


class GovernanceError(MappingError):
    """The mapping would send a field that must never leave AEP."""


@dataclass(frozen=True)
class FieldMapping:
    source: str
    target: str
    fallback: str | None = None
    optional: bool = False
    on_missing: str = "clear"

    @property
    def sources(self) -> tuple[str, ...]:
        return (self.source,) if self.fallback is None else (self.source, self.fallback)


@dataclass(frozen=True)
class Mapping:
    path: str
    fields: tuple[FieldMapping, ...]
    blocked_fields: tuple[str, ...] = ()

    @property
    def target_properties(self) -> list[str]:
        return [f.target for f in self.fields]

    @property
    def email(self) -> FieldMapping:
        return next(f for f in self.fields if f.target == "email")

    @property
    def attributes(self) -> tuple[FieldMapping, ...]:
        return tuple(f for f in self.fields if f.target != "email")

    @property
    def keep_on_missing(self) -> list[str]:
        """Targets never cleared when their value disappears (``incremental.plan(keep_on_missing=...)``)."""
        return [f.target for f in self.attributes if f.on_missing == "keep"]


@dataclass
class MapResult:
    mapped_paths: list[str]
    rejects_path: str
    counts: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- loading


def load_mapping(path: str | os.PathLike, blocked_fields: tuple[str, ...] | list[str] | None = None) -> Mapping:
    """Parse and validate a mapping file. ``blocked_fields`` (default: the sync config's, organisation-wide)
    always apply: the file's own ``governance.blocked_fields`` can only add to them."""
    if blocked_fields is None:
        blocked_fields = load_sync_config().blocked_fields
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError(f"mapping file {name}: cannot be read ({exc.strerror or exc})") from exc
    try:
        document = load_yaml(text)
    except yaml.YAMLError as exc:
        raise MappingError(f"mapping file {name}: not valid YAML ({exc})") from exc
    if not isinstance(document, dict):
        raise MappingError(f"mapping file {name}: expected a mapping with a 'fields' list at the top")
    _unknown_keys(document, _TOP_KEYS, "the top level", name)
    if document.get("version", 1) != 1:
        raise MappingError(f"mapping file {name}: version {document['version']!r} is not supported (only 1)")
    governance = document.get("governance") or {}
    if not isinstance(governance, dict):
        raise MappingError(f"mapping file {name}: 'governance' must be a mapping with 'blocked_fields'")
    _unknown_keys(governance, _GOVERNANCE_KEYS, "'governance'", name)
    blocked = governance.get("blocked_fields") or []
    if not isinstance(blocked, list) or not all(isinstance(b, str) and XDM_PATH.match(b) for b in blocked):
        raise MappingError(f"mapping file {name}: 'governance.blocked_fields' must be a list of dotted XDM paths")
    fields = _parse_rows(document.get("fields"), name)
    mapping = Mapping(path=name, fields=fields, blocked_fields=tuple(dict.fromkeys([*blocked, *blocked_fields])))
    check_governance(mapping)
    return mapping


def _unknown_keys(node: dict, allowed: set[str], where: str, name: str) -> None:
    unknown = sorted(set(map(str, node)) - allowed)
    if unknown:
        allowed_keys = ", ".join(sorted(allowed))
        raise MappingError(
            f"mapping file {name}: unknown key(s) {', '.join(unknown)} in {where} (allowed: {allowed_keys})"
        )


def _parse_rows(rows, name: str) -> tuple[FieldMapping, ...]:
    if not isinstance(rows, list) or not rows:
        raise MappingError(f"mapping file {name}: 'fields' must be a non-empty list of rows")
    parsed: list[FieldMapping] = []
    seen: dict[str, int] = {}
    for number, row in enumerate(rows, start=1):
        where = f"mapping file {name}: fields row {number}"
        if not isinstance(row, dict):
            raise MappingError(f"{where}: expected 'source' and 'target' keys, got {type(row).__name__}")
        _unknown_keys(row, _ROW_KEYS, f"fields row {number}", name)
        source, target, fallback = row.get("source"), row.get("target"), row.get("fallback")
        for key, value in (("source", source), ("fallback", fallback)):
            if (key == "source" or value is not None) and not (isinstance(value, str) and XDM_PATH.match(value)):
                raise MappingError(f"{where}: {key} {value!r} is not a dotted XDM path like person.name.firstName")
        if not isinstance(target, str) or not PROPERTY_NAME.match(target):
            raise MappingError(
                f"{where}: target {target!r} is not a HubSpot property name "
                "(lowercase letter first, then lowercase letters, digits, underscores)"
            )
        if target in seen:
            raise MappingError(f"{where}: target {target!r} is already written by row {seen[target]}")
        optional = row.get("optional", False)
        if not isinstance(optional, bool):
            raise MappingError(f"{where}: optional must be true or false, got {optional!r}")
        if target == "email" and optional:
            raise MappingError(f"{where}: the email row cannot be optional, HubSpot upserts on it")
        on_missing = row.get("on_missing", "clear")
        if on_missing not in ON_MISSING:
            raise MappingError(f"{where}: on_missing must be one of {', '.join(ON_MISSING)}, got {on_missing!r}")
        if target == "email" and "on_missing" in row:
            raise MappingError(f"{where}: on_missing does not apply to the email row")
        seen[target] = number
        parsed.append(
            FieldMapping(source=source, target=target, fallback=fallback, optional=optional, on_missing=on_missing)
        )
    if "email" not in seen:
        raise MappingError(
            f"mapping file {name}: no row with target 'email'; HubSpot contacts are upserted on their email "
            "(e.g. source: identityMap.Email, fallback: personalEmail.address, target: email)"
        )
    return tuple(parsed)


def check_governance(mapping: Mapping) -> None:
    """Refuse a mapping whose source or fallback is, lies inside, or contains a blocked field."""
    violations = [
        f"{f.target} <- {source} (blocked: {blocked})"
        for f in mapping.fields
        for source in f.sources
        for blocked in mapping.blocked_fields
        if _overlaps(source, blocked)
    ]
    if violations:
        raise GovernanceError(
            f"mapping file {mapping.path}: governance forbids sending these fields out of AEP: {'; '.join(violations)}"
        )


def _overlaps(source: str, blocked: str) -> bool:
    """Same path, or one inside the other. Identity namespaces compare case-insensitively, as they are read:
    blocking ``identityMap.ECID`` also blocks ``identityMap.ecid``."""
    source, blocked = _namespace_folded(source), _namespace_folded(blocked)
    return source == blocked or source.startswith(blocked + ".") or blocked.startswith(source + ".")


def _namespace_folded(path: str) -> str:
    head, _, rest = path.partition(".")
    return f"{head}.{rest.lower()}" if head == IDENTITY_ROOT and rest else path


# ------------------------------------------------------------------------------------- schema handling


def _resolve(schema: pa.Schema, path: str, part: str) -> pa.DataType | None:
    """The Arrow type at ``path`` in this part's schema, or None when the path is absent."""
    head, *rest = path.split(".")
    if schema.get_field_index(head) < 0:
        return None
    kind = schema.field(head).type
    if head == IDENTITY_ROOT:
        if not pa.types.is_map(kind):
            raise MappingError(f"export part {part}: {IDENTITY_ROOT} is {kind}, expected a map of namespaces")
        if len(rest) != 1:
            raise MappingError(f"path {path}: address an identity as {IDENTITY_ROOT}.<namespace>")
        return kind
    for name in rest:
        if not pa.types.is_struct(kind):
            raise MappingError(f"export part {part}: path {path} goes through {kind}, which has no named fields")
        index = kind.get_field_index(name)
        if index < 0:
            return None
        kind = kind.field(index).type
    return kind


def _check_schema(schema: pa.Schema, mapping: Mapping, part: str) -> list[str]:
    """Top-level columns to read; a required row none of whose sources exist is an error naming them."""
    present = {s: _resolve(schema, s, part) is not None for f in mapping.fields for s in f.sources}
    missing = [
        f"{' or '.join(f.sources)} (for {f.target})"
        for f in mapping.fields
        if not f.optional and not any(present[s] for s in f.sources)
    ]
    if missing:
        raise MappingError(f"export part {part}: mapped source path(s) missing from the export: {'; '.join(missing)}")
    wanted = {ID_COLUMN, IDENTITY_ROOT, MEMBERSHIP_COLUMN}
    wanted |= {s.split(".")[0] for f in mapping.fields for s in f.sources}
    return [name for name in schema.names if name in wanted]


# -------------------------------------------------------------------------------------- column helpers


def _source_strings(batch: pa.RecordBatch, path: str) -> pa.Array:
    """A scalar XDM path as trimmed HubSpot strings; absent or blank → null."""
    head, *rest = path.split(".")
    if batch.schema.get_field_index(head) < 0:
        return pa.nulls(batch.num_rows, pa.string())
    values = batch.column(head)
    for name in rest:
        if values.type.get_field_index(name) < 0:
            return pa.nulls(batch.num_rows, pa.string())
        values = pc.struct_field(values, name)
    return _clean(_as_strings(values, path))


def _as_strings(values: pa.Array, path: str) -> pa.Array:
    """HubSpot takes property values as strings; dates and times as UTC epoch milliseconds
    (developers.hubspot.com FAQ "How should timestamps be formatted for HubSpot's APIs?")."""
    kind = values.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        millis = pc.cast(
            pc.cast(values, pa.timestamp("ms", "UTC") if pa.types.is_timestamp(kind) else pa.date64()), pa.int64()
        )
        return pc.cast(millis, pa.string())
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return pc.cast(values, pa.string())
    if (
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_decimal(kind)
        or pa.types.is_boolean(kind)
    ):
        return pc.cast(values, pa.string())
    raise MappingError(f"path {path} holds {kind}, not a single value; map one of its scalar fields instead")


def _clean(values: pa.Array) -> pa.Array:
    trimmed = pc.utf8_trim_whitespace(values)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)


def _map_entries(values: pa.Array) -> tuple[np.ndarray, pa.Array, pa.Array]:
    """(parent row, key, value) of every entry of a MAP column, as flat arrays."""
    kind = values.type
    as_list = values.cast(
        pa.list_(pa.struct([pa.field("key", kind.key_type, nullable=False), pa.field("value", kind.item_type)]))
    )
    flat = pc.list_flatten(as_list)
    parents = pc.list_parent_indices(as_list).to_numpy()
    return parents, pc.struct_field(flat, "key"), pc.struct_field(flat, "value")


def _identities(identity_map: pa.Array, namespace: str) -> tuple[np.ndarray, pa.Array]:
    """(profile row, identity struct) of every identity under ``namespace``, matched case-insensitively
    (namespace codes: Adobe's is ``Email``, exports and older docs also show ``email``), in export order."""
    parents, keys, values = _map_entries(identity_map)
    match = pc.fill_null(pc.equal(pc.utf8_lower(keys), namespace.lower()), False)
    values = values.filter(match)
    entry = pc.list_parent_indices(values).to_numpy()
    return parents[match.to_numpy(zero_copy_only=False)][entry], pc.list_flatten(values)


def profile_ids(batch: pa.RecordBatch) -> pa.Array:
    """``_id`` where present, else the primary identity (the first one without a primary flag) as
    ``<namespace>:<id>``: stable across runs for the same profile, so rejects and the dedup tie-break
    work without ``_id``."""
    n = batch.num_rows
    ids = (pc.cast(batch.column(ID_COLUMN), pa.string()) if batch.schema.get_field_index(ID_COLUMN) >= 0
           else pa.nulls(n, pa.string()))
    if batch.schema.get_field_index(IDENTITY_ROOT) < 0 or not pc.any(pc.is_null(ids)).as_py():
        return ids
    parents, keys, values = _map_entries(batch.column(IDENTITY_ROOT))
    items = pc.list_flatten(values)
    if not len(items):
        return ids
    entry = pc.list_parent_indices(values).to_numpy()
    rows = parents[entry]
    values = _clean(pc.cast(pc.struct_field(items, "id"), pa.string()))
    names = pc.utf8_lower(keys.take(pa.array(entry)))
    primary = pc.fill_null(pc.struct_field(items, "primary"), False).to_numpy(zero_copy_only=False)
    usable = pc.is_valid(values).to_numpy(zero_copy_only=False)
    order = np.lexsort((np.arange(len(rows)), ~primary, ~usable, rows))
    first = np.ones(len(order), dtype=bool)
    first[1:] = rows[order][1:] != rows[order][:-1]
    chosen = order[first & usable[order]]
    fallback = np.full(n, -1, dtype=np.int64)
    fallback[rows[chosen]] = chosen
    missing = fallback < 0
    take = pa.array(np.where(missing, 0, fallback), mask=missing)
    return pc.coalesce(ids, pc.binary_join_element_wise(names.take(take), values.take(take), ":"))


@dataclass
class _Candidates:
    """Possible values of one row of the mapping: which profile, its cleaned value, its preference."""

    rows: list = field(default_factory=list)
    values: list = field(default_factory=list)
    order: list = field(default_factory=list)  # lower is preferred: source rank, then primary, then export order

    def add(self, rows: np.ndarray, values: pa.Array, order: np.ndarray) -> None:
        self.rows.append(rows)
        self.values.append(values)
        self.order.append(order)


def _gather(batch: pa.RecordBatch, mapping_field: FieldMapping, clean) -> _Candidates:
    """Every non-blank candidate of a row: identity ids (primary first) and scalar paths, in source order."""
    candidates = _Candidates()
    for rank, source in enumerate(mapping_field.sources):
        head, *rest = source.split(".")
        if head == IDENTITY_ROOT:
            if batch.schema.get_field_index(head) < 0:
                continue
            rows, items = _identities(batch.column(head), rest[0])
            primary = pc.fill_null(pc.struct_field(items, "primary"), False).to_numpy(zero_copy_only=False)
            values = clean(_as_strings(pc.struct_field(items, "id"), source))
            order = rank * 2 + (~primary).astype(np.int64)
        else:
            values = clean(_source_strings(batch, source))
            rows = np.arange(batch.num_rows)
            order = np.full(batch.num_rows, rank * 2, dtype=np.int64)
        present = pc.is_valid(values).to_numpy(zero_copy_only=False)
        candidates.add(rows[present], values.filter(pa.array(present)), order[present])
    return candidates


def _pick(candidates: _Candidates, is_good, num_rows: int) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """Per profile, its best candidate (good ones first, then by order, then export order), whether that
    one is good, and whether the profile had no candidate at all. ``is_good`` judges each profile's first
    candidate by order, and the others only where that one is not good: most profiles stop there."""
    if not sum(len(r) for r in candidates.rows):  # e.g. a batch in which no profile has an email at all
        return pa.nulls(num_rows, pa.string()), np.zeros(num_rows, dtype=bool), np.ones(num_rows, dtype=bool)
    rows = np.concatenate(candidates.rows)
    order = np.concatenate(candidates.order)
    values = pa.concat_arrays([v.cast(pa.string()) for v in candidates.values])
    export_order = np.arange(len(rows))
    preferred = np.lexsort((export_order, order, rows))
    preferred_rows = rows[preferred]
    head = np.ones(len(rows), dtype=bool)
    head[1:] = preferred_rows[1:] != preferred_rows[:-1]
    good = np.zeros(len(rows), dtype=bool)  # left False unjudged: those rank after a good first candidate
    good[preferred[head]] = is_good(values.take(pa.array(preferred[head])))
    retry = preferred[~head & ~good[preferred[head]][np.cumsum(head) - 1]]
    if len(retry):
        good[retry] = is_good(values.take(pa.array(retry)))
    sequence = np.lexsort((export_order, order, ~good, rows))
    sorted_rows = rows[sequence]
    first = np.ones(len(sorted_rows), dtype=bool)
    first[1:] = sorted_rows[1:] != sorted_rows[:-1]
    chosen = np.full(num_rows, -1, dtype=np.int64)
    chosen[sorted_rows[first]] = sequence[first]
    missing = chosen < 0
    picked = values.take(pa.array(np.where(missing, 0, chosen), mask=missing))
    return picked, np.where(missing, False, good[np.where(missing, 0, chosen)]), missing


def _normalise_email(values: pa.Array) -> pa.Array:
    return pc.utf8_lower(_clean(values))


def _valid_email(emails: pa.Array) -> np.ndarray:
    matches = pc.match_substring_regex(emails, EMAIL_PATTERN)
    short = pc.less_equal(pc.utf8_length(emails), MAX_EMAIL_LENGTH)
    at = pc.find_substring(emails, "@")
    local_ok = pc.and_(pc.greater(at, 0), pc.less_equal(at, MAX_LOCAL_PART_LENGTH))
    return pc.fill_null(pc.and_(pc.and_(matches, short), local_ok), False).to_numpy(zero_copy_only=False)


@dataclass
class _Emails:
    email: pa.Array | pa.ChunkedArray  # normalised valid email or null
    raw: pa.Array | pa.ChunkedArray  # the best candidate as found (trimmed, lowercased) when none is valid, else null
    missing: np.ndarray  # no candidate at all
    invalid: np.ndarray  # candidates, none valid

    @staticmethod
    def concat(pieces: list[_Emails]) -> _Emails:
        return _Emails(
            email=pa.chunked_array([p.email for p in pieces], pa.string()),
            raw=pa.chunked_array([p.raw for p in pieces], pa.string()),
            missing=np.concatenate([p.missing for p in pieces] or [np.empty(0, dtype=bool)]),
            invalid=np.concatenate([p.invalid for p in pieces] or [np.empty(0, dtype=bool)]),
        )

    def slice(self, offset: int, length: int) -> _Emails:
        end = offset + length
        return _Emails(
            email=self.email.slice(offset, length).combine_chunks(),
            raw=self.raw.slice(offset, length).combine_chunks(),
            missing=self.missing[offset:end],
            invalid=self.invalid[offset:end],
        )


def _emails(batch: pa.RecordBatch, mapping: Mapping) -> _Emails:
    """The first valid address among the primary identity ids, the other ids, then the fallback path."""
    candidates = _gather(batch, mapping.email, _normalise_email)
    picked, valid, missing = _pick(candidates, _valid_email, batch.num_rows)
    none = pa.scalar(None, pa.string())
    return _Emails(
        email=pc.if_else(pa.array(valid), picked, none),
        raw=pc.if_else(pa.array(valid), none, picked),
        missing=missing,
        invalid=~missing & ~valid,
    )


def _attribute(batch: pa.RecordBatch, mapping_field: FieldMapping) -> pa.Array:
    """An attribute's value: the first non-blank of its sources (identity ids: primary first)."""
    if all(not s.startswith(IDENTITY_ROOT + ".") for s in mapping_field.sources):
        found = [_source_strings(batch, s) for s in mapping_field.sources]
        return found[0] if len(found) == 1 else pc.coalesce(*found)
    candidates = _gather(batch, mapping_field, _clean)
    return _pick(candidates, lambda values: np.ones(len(values), dtype=bool), batch.num_rows)[0]


@dataclass
class _Memberships:
    rank: np.ndarray  # latest lastQualificationTime (epoch ms) over all memberships; int64 min if none
    statuses: dict[str, pa.Array]  # audience id → status (lowercased) or null


def _memberships(batch: pa.RecordBatch, audience_namespaces: dict[str, str]) -> _Memberships:
    """``audience_namespaces``: audience id → the segmentMembership namespace its status is read from."""
    audience_ids = list(audience_namespaces)
    rank = np.full(batch.num_rows, np.iinfo(np.int64).min, dtype=np.int64)
    statuses = {aid: pa.nulls(batch.num_rows, pa.string()) for aid in audience_ids}
    if batch.schema.get_field_index(MEMBERSHIP_COLUMN) < 0:
        return _Memberships(rank, statuses)
    column = batch.column(MEMBERSHIP_COLUMN)
    if not (pa.types.is_map(column.type) and pa.types.is_map(column.type.item_type)):
        raise MappingError(
            f"{MEMBERSHIP_COLUMN} is {column.type}, expected map<namespace, map<audience id, membership>>"
        )
    outer_rows, namespaces, inner = _map_entries(column)
    inner_parents, audience, membership = _map_entries(inner)
    rows = outer_rows[inner_parents]
    kind = membership.type
    if kind.get_field_index("lastQualificationTime") >= 0:
        qualified = pc.struct_field(membership, "lastQualificationTime")
        if pa.types.is_timestamp(qualified.type):
            millis = pc.cast(pc.cast(qualified, pa.timestamp("ms", "UTC")), pa.int64())
            millis = pc.fill_null(millis, np.iinfo(np.int64).min).to_numpy(zero_copy_only=False)
            np.maximum.at(rank, rows, millis)
    if kind.get_field_index("status") < 0 or not audience_ids:
        return _Memberships(rank, statuses)
    status = pc.utf8_lower(_clean(pc.cast(pc.struct_field(membership, "status"), pa.string())))
    lowered = pc.utf8_lower(namespaces)
    for aid in audience_ids:
        in_namespace = pc.equal(lowered, audience_namespaces[aid].lower()).to_numpy(zero_copy_only=False)
        hit = in_namespace[inner_parents] & pc.fill_null(pc.equal(audience, aid), False).to_numpy(zero_copy_only=False)
        if not hit.any():
            continue
        target = np.full(batch.num_rows, -1, dtype=np.int64)
        target[rows[hit]] = np.flatnonzero(hit)
        statuses[aid] = status.take(pa.array(np.where(target < 0, 0, target), mask=target < 0))
    return _Memberships(rank, statuses)


# ------------------------------------------------------------------------------------------ writing


def atomic_write_table(table: pa.Table, path: str) -> str:
    """A local Parquet file written through ``storage.atomic_path``: a killed task never leaves half a file."""
    with storage.atomic_path(Path(path)) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return path


class AtomicParquetWriter:
    """Streams batches into one Parquet file that appears, complete, only on a clean exit."""

    def __init__(self, path: str, schema: pa.Schema):
        self.path = path
        self.schema = schema
        self.rows = 0

    def __enter__(self) -> AtomicParquetWriter:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(storage.atomic_path(Path(self.path)))
            self.writer = stack.enter_context(pq.ParquetWriter(tmp, self.schema, compression="zstd"))
            self._open = stack.pop_all()
        return self

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            self.writer.write_table(table.select(self.schema.names).cast(self.schema))
            self.rows += table.num_rows

    def __exit__(self, exc_type, exc, tb) -> None:
        self._open.__exit__(exc_type, exc, tb)  # the writer closed, then the file renamed into place or removed


class ChunkWriter:
    """Buffers rows and writes ``part-NNNNN.parquet`` files of ``chunk_rows`` rows each (the last may be short)."""

    def __init__(self, folder: str, schema: pa.Schema, chunk_rows: int):
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
        os.makedirs(folder, exist_ok=True)
        for stale in Path(folder).glob("part-*.parquet"):  # a retried task must not leave a previous try's chunks
            stale.unlink()
        self.folder, self.schema, self.chunk_rows = folder, schema, chunk_rows
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.paths: list[str] = []

    def add(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        self.pending.append(table.select(self.schema.names).cast(self.schema))
        self.pending_rows += table.num_rows
        while self.pending_rows >= self.chunk_rows:
            self._flush(self.chunk_rows)

    def close(self) -> list[str]:
        if self.pending_rows:
            self._flush(self.pending_rows)
        return self.paths

    def _flush(self, rows: int) -> None:
        buffered = pa.concat_tables(self.pending)
        path = os.path.join(self.folder, f"part-{len(self.paths):05d}.parquet")
        self.paths.append(atomic_write_table(buffered.slice(0, rows), path))
        rest = buffered.slice(rows)
        self.pending, self.pending_rows = ([rest] if rest.num_rows else []), rest.num_rows


# ------------------------------------------------------------------------------------------ mapping


def _iter_parts(part_paths: list[str], mapping: Mapping, read_batch_rows: int, only: set[str] | None = None):
    """(part, first global row number, batch) over every part; schema checked before a part is read."""
    offset = 0
    for part in part_paths:
        reader = pq.ParquetFile(part)
        columns = _check_schema(reader.schema_arrow, mapping, part)
        if only is not None:
            columns = [c for c in columns if c in only]
        for batch in reader.iter_batches(batch_size=read_batch_rows, columns=columns):
            yield part, offset, batch
            offset += batch.num_rows


@dataclass
class _Dedup:
    """Pass 1's verdict per exported row (global row number). A row with the same email as the winner is
    either another profile (``loser_to_winner``: a DUPLICATE_EMAIL reject naming the winner) or the
    winner's own profile split over several rows, e.g. one file per audience (``merged``: dropped, its
    audience statuses filling the winner's gaps, see ``_merged_statuses``)."""

    total: int
    ids: pa.ChunkedArray  # profile id of every row (``profile_ids``)
    emails: _Emails  # of every row
    loser_to_winner: np.ndarray  # winner position in ``ranked_ids`` per duplicate row, else -1
    ranked_ids: pa.Array  # profile ids of the rows whose email occurs more than once, in dedup order
    merged: np.ndarray  # bool per row: part of a profile whose winning row is another one
    merged_rows: np.ndarray  # row numbers of the merged rows, in dedup order
    merged_into: np.ndarray  # the winning row number of each of them
    statuses: dict[str, pa.ChunkedArray]  # audience id → every row's status (``_memberships``)

    def kept(self, offset: int, length: int) -> tuple[pa.Array, _Emails, dict[str, pa.Array]]:
        """Profile ids, emails and audience statuses of the rows ``offset`` to ``offset + length``: pass 2's
        batches need not line up with pass 1's (a reader's batches follow the row groups of the columns it
        reads)."""
        statuses = {aid: status.slice(offset, length).combine_chunks() for aid, status in self.statuses.items()}
        return self.ids.slice(offset, length).combine_chunks(), self.emails.slice(offset, length), statuses


def _winners(
    part_paths: list[str], mapping: Mapping, read_batch_rows: int, audience_namespaces: dict[str, str]
) -> _Dedup:
    """Pass 1: one winner per email (``DUPLICATE_RULE``), and which other rows are the winner's profile."""
    email_columns = {ID_COLUMN, IDENTITY_ROOT, MEMBERSHIP_COLUMN} | {s.split(".")[0] for s in mapping.email.sources}
    found, ids, ranks, total = [], [], [], 0
    statuses: dict[str, list[pa.Array]] = {aid: [] for aid in audience_namespaces}
    for _part, offset, batch in _iter_parts(part_paths, mapping, read_batch_rows, email_columns):
        found.append(_emails(batch, mapping))
        ids.append(profile_ids(batch))
        memberships = _memberships(batch, audience_namespaces)
        ranks.append(memberships.rank)
        for aid, status in memberships.statuses.items():
            statuses[aid].append(status)
        total = offset + batch.num_rows
    emails, ids = _Emails.concat(found), pa.chunked_array(ids, pa.string())
    statuses = {aid: pa.chunked_array(pieces, pa.string()) for aid, pieces in statuses.items()}
    del found
    loser_to_winner = np.full(total, -1, dtype=np.int64)
    merged = np.zeros(total, dtype=bool)
    none = np.empty(0, dtype=np.int64)
    if not total:
        return _Dedup(total, ids, emails, loser_to_winner, pa.array([], pa.string()), merged, none, none, statuses)
    # Only rows whose email occurs more than once can lose or merge: hashing finds them, and only they are
    # sorted (sorting every row by email was a third of pass 1).
    codes = pc.dictionary_encode(emails.email)
    code = pc.fill_null(pa.chunked_array([c.indices for c in codes.chunks], pa.int32()), -1).to_numpy()
    del codes
    shared = code >= 0
    shared[shared] = np.bincount(code[shared])[code[shared]] > 1
    keys = pa.table(
        {"email": emails.email, "rank": np.concatenate(ranks), "id": ids, "seq": np.arange(total, dtype=np.int64)}
    ).filter(pa.array(shared))
    del ranks, code, shared
    order = pc.sort_indices(
        keys, sort_keys=[("email", "ascending"), ("rank", "descending"), ("id", "ascending"), ("seq", "ascending")]
    )
    keys = keys.take(order)
    ranked_emails = keys.column("email").combine_chunks()
    starts = np.ones(keys.num_rows, dtype=bool)
    if keys.num_rows > 1:
        following = pc.not_equal(ranked_emails.slice(1), ranked_emails.slice(0, keys.num_rows - 1))
        starts[1:] = following.to_numpy(zero_copy_only=False)
    winner = np.maximum.accumulate(np.where(starts, np.arange(keys.num_rows), 0))
    seq = keys.column("seq").to_numpy()
    ranked = keys.column("id").combine_chunks()
    same_profile = ~starts & pc.fill_null(pc.equal(ranked, ranked.take(pa.array(winner))), False).to_numpy(
        zero_copy_only=False
    )
    duplicate = ~starts & ~same_profile
    loser_to_winner[seq[duplicate]] = winner[duplicate]
    merged[seq[same_profile]] = True
    merged_rows, merged_into = seq[same_profile], seq[winner[same_profile]]
    return _Dedup(total, ids, emails, loser_to_winner, ranked, merged, merged_rows, merged_into, statuses)


def _merged_statuses(dedup: _Dedup) -> None:
    """Pass 1b, only when a profile spans several rows: per audience, the status each winner lacks taken
    from its merged rows (the first one in dedup order that has one), in ``dedup.statuses``."""
    if not len(dedup.merged_rows):
        return
    rows = np.flatnonzero(dedup.merged)
    priority = np.empty(dedup.total, dtype=np.int64)  # a merged row's place in dedup order
    priority[dedup.merged_rows] = np.arange(len(dedup.merged_rows))
    winners = np.empty(dedup.total, dtype=np.int64)
    winners[dedup.merged_rows] = dedup.merged_into
    for aid, every in dedup.statuses.items():
        status = every.take(pa.array(rows)).combine_chunks()
        present = pc.is_valid(status).to_numpy(zero_copy_only=False)
        found, status = rows[present], status.filter(pa.array(present))
        owner = winners[found]
        sequence = np.lexsort((priority[found], owner))
        owner = owner[sequence]
        first = np.ones(len(owner), dtype=bool)
        first[1:] = owner[1:] != owner[:-1]
        if first.any():
            at = np.full(dedup.total, -1, dtype=np.int64)
            at[owner[first]] = sequence[first]
            gaps = status.take(pa.array(np.where(at < 0, 0, at), mask=at < 0))
            dedup.statuses[aid] = pc.coalesce(every, pa.chunked_array([gaps]))


class _BatchRejects:
    """One reject row per profile: the first reason found wins, later checks skip rejected profiles."""

    def __init__(self, writer: AtomicParquetWriter, counter: Counter, ids: pa.Array, emails: pa.Array):
        self.writer, self.counter, self.ids, self.emails = writer, counter, ids, emails
        self.taken = np.zeros(len(ids), dtype=bool)

    def add(
        self, mask: np.ndarray, field_name: str, category: str, reason: str | Callable[[np.ndarray], pa.Array]
    ) -> None:
        """``reason`` is one sentence for all, or makes one per rejected profile from their rows' mask (built
        for those rows only: a sentence for every row of the batch cost more than the rest of the check)."""
        mask = mask & ~self.taken
        count = int(mask.sum())
        if not count:
            return
        selected = pa.array(mask)

        def repeat(value: str) -> pa.Array:
            return pa.array([value] * count, pa.string())

        self.writer.write(
            pa.table(
                {
                    "stage": repeat("map"),
                    "record_id": self.ids.filter(selected),
                    "email": self.emails.filter(selected),
                    "field": repeat(field_name),
                    "category": repeat(category),
                    "reason": repeat(reason) if isinstance(reason, str) else reason(mask),
                },
                schema=REJECT_SCHEMA,
            )
        )
        self.counter[category] += count
        self.taken |= mask


def _map_batch(
    batch: pa.RecordBatch,
    offset: int,
    mapping: Mapping,
    audience_properties: dict[str, str],
    dedup: _Dedup,
    sink: AtomicParquetWriter,
    by_category: Counter,
) -> pa.Table:
    """Pass 2 for one batch: rejects go to ``sink``, the mapped rows of the rest are returned (rows merged
    into their profile's winning row are left out, neither mapped nor rejected)."""
    ids, emails, statuses = dedup.kept(offset, batch.num_rows)
    rejects = _BatchRejects(sink, by_category, ids, pc.coalesce(emails.email, emails.raw))
    sources = " or ".join(mapping.email.sources)
    rejects.add(emails.missing, sources, "MISSING_EMAIL", f"the profile has no email in {sources}")
    rejects.add(
        emails.invalid, "email", "INVALID_EMAIL", "the email address is not a valid address (see EMAIL_PATTERN)"
    )
    winner_at = dedup.loser_to_winner[offset : offset + batch.num_rows]
    lost = winner_at >= 0
    if lost.any():
        prefix = f"another profile has the same email and wins ({DUPLICATE_RULE}): "

        def duplicate_reason(rows: np.ndarray) -> pa.Array:
            winner_ids = pc.fill_null(dedup.ranked_ids.take(pa.array(winner_at[rows])), "<no profile id>")
            return pc.binary_join_element_wise(prefix, winner_ids, "")

        rejects.add(lost, "email", "DUPLICATE_EMAIL", duplicate_reason)

    columns = {"email": emails.email}
    for mapping_field in mapping.attributes:
        values = _attribute(batch, mapping_field)
        columns[mapping_field.target] = values
        # A character takes at least one byte: only values that long in bytes are counted in characters.
        if not pc.any(pc.greater(pc.binary_length(values), MAX_VALUE_LENGTH)).as_py():
            continue
        length = pc.utf8_length(values)
        too_long = pc.fill_null(pc.greater(length, MAX_VALUE_LENGTH), False).to_numpy(zero_copy_only=False)

        def too_long_reason(rows: np.ndarray, length=length, mapping_field=mapping_field) -> pa.Array:
            return pc.binary_join_element_wise(
                f"{mapping_field.target} (from {mapping_field.source}) is ",
                pc.cast(length.filter(pa.array(rows)), pa.string()),
                f" characters long; HubSpot holds at most {MAX_VALUE_LENGTH} and values are never truncated",
                "",
            )

        rejects.add(too_long, mapping_field.target, "VALUE_TOO_LONG", too_long_reason)
    for aid, prop in audience_properties.items():
        status = statuses[aid]
        unknown = pc.and_(pc.is_valid(status), pc.invert(pc.is_in(status, pa.array(AUDIENCE_STATUSES))))
        rejects.add(
            pc.fill_null(unknown, False).to_numpy(zero_copy_only=False),
            prop,
            "INVALID_STATUS",
            f"membership status of audience {aid} is not one of {', '.join(AUDIENCE_STATUSES)}",
        )
        columns[prop] = status
    columns[PROFILE_ID] = ids
    merged = dedup.merged[offset : offset + batch.num_rows]
    return pa.table(columns).filter(pa.array(~rejects.taken & ~merged))


def map_counts(exported: int, valid: int, by_category: Counter, merged: int = 0) -> dict:
    """``exported`` = ``valid`` + ``rejected`` + ``merged`` (rows of a profile exported more than once,
    folded into its winning row)."""
    return {
        "exported": exported,
        "valid": valid,
        "rejected": sum(by_category.values()),
        "rejected_by_category": dict(sorted(by_category.items())),
        "deduplicated": by_category.get("DUPLICATE_EMAIL", 0),
        "merged": merged,
    }


def map_export(
    part_paths: list[str],
    mapping: Mapping,
    audience_properties: dict[str, str],
    out_dir: str,
    chunk_rows: int = 10_000,
    read_batch_rows: int = 100_000,
    audience_namespaces: dict[str, str] | None = None,
) -> MapResult:
    """Map the export into ``out_dir/mapped/part-*.parquet`` and ``out_dir/rejects/map.parquet``.

    ``audience_namespaces``: audience id → its segmentMembership namespace (``resolve_audiences``'
    ``namespace``); an audience not named there is read under ``ups``.

    Mapped columns: ``email``, the mapping's other targets, one column per audience property (its
    status: realized/existing/exited, or null when not a member), and ``_profile_id``; all strings.
    """
    properties = list(audience_properties.values())
    bad = [p for p in properties if not PROPERTY_NAME.match(p)]
    clash = sorted(set(properties) & set(mapping.target_properties))
    if bad or clash or len(set(properties)) != len(properties):
        raise MappingError(
            f"audience properties {properties} are unusable with mapping {mapping.path}: "
            f"invalid names {bad}, names also mapped from XDM {clash}, or two audiences sharing a property"
        )
    check_governance(mapping)
    schema = pa.schema(
        [(n, pa.string()) for n in ["email", *[f.target for f in mapping.attributes], *properties, PROFILE_ID]]
    )
    namespaces = {aid: (audience_namespaces or {}).get(aid) or AUDIENCE_NAMESPACE for aid in audience_properties}
    rejects_path = os.path.join(out_dir, "rejects", "map.parquet")
    by_category: Counter[str] = Counter()
    valid = 0
    attribute_columns = {s.split(".")[0] for f in mapping.attributes for s in f.sources}
    with _system_allocator():
        dedup = _winners(part_paths, mapping, read_batch_rows, namespaces)
        _merged_statuses(dedup)
        chunks = ChunkWriter(os.path.join(out_dir, "mapped"), schema, chunk_rows)
        with AtomicParquetWriter(rejects_path, REJECT_SCHEMA) as sink:
            for _part, offset, batch in _iter_parts(part_paths, mapping, read_batch_rows, attribute_columns):
                table = _map_batch(batch, offset, mapping, audience_properties, dedup, sink, by_category)
                valid += table.num_rows
                chunks.add(table)
        mapped_paths = chunks.close()
    counts = map_counts(dedup.total, valid, by_category, len(dedup.merged_rows))
    return MapResult(mapped_paths=mapped_paths, rejects_path=rejects_path, counts=counts)


@contextlib.contextmanager
def _system_allocator():
    """Arrow buffers from the C library's allocator for the duration of a mapping. Arrow's default
    (mimalloc) commits its arenas in fresh transparent huge pages, and faulting those in is kernel time:
    on the benchmark VM, mapping 100,000 profiles took 0.8-2.1 s of CPU with it, 0.5-0.6 s without, and
    1,000,000 took 6.9 s instead of 4.2 s. The pool is process-wide, so the previous one is put back."""
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(previous)
