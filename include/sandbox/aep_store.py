"""The AEP sandbox's state: the SQLite schema and the columnar profile store behind audience exports.

The profile store is two flat Parquet files in the data dir (``profiles.parquet``, one row per profile, and
``memberships.parquet``, one row per profile × audience) so that the seed, the mutations and the exports
stay vectorised; the nested XDM export shape (``EXPORT_SCHEMA``) is built from them with pyarrow.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from sandbox.common import StateDB

HUBSPOT_CONNECTION_SPEC_ID = "cc6a4487-9e91-433e-a3a3-9cf6626c1806"
MEMBERSHIP_STATUSES = ("realized", "existing", "exited")

SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (token TEXT PRIMARY KEY, client_id TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS connections (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audiences (seq INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS datasets (id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS merge_policies (id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL, created_at REAL NOT NULL,
    outcome TEXT, finished_at REAL, batch_id TEXT, profiles INTEGER, error TEXT
);
CREATE TABLE IF NOT EXISTS batches (id TEXT PRIMARY KEY, job_id INTEGER, dataset_id TEXT, created_at REAL);
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY, batch_id TEXT NOT NULL, seq INTEGER NOT NULL, name TEXT NOT NULL,
    path TEXT NOT NULL, length INTEGER NOT NULL, records INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS population (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# The exported profile shape: a contract the export readers code against (see the task brief and aep.md).
MEMBERSHIP_TYPE = pa.struct([("status", pa.string()), ("lastQualificationTime", pa.timestamp("ms", tz="UTC"))])
IDENTITY_TYPE = pa.struct([("id", pa.string()), ("authenticatedState", pa.string()), ("primary", pa.bool_())])
IDENTITY_MAP_TYPE = pa.map_(pa.string(), pa.list_(IDENTITY_TYPE))
SEGMENT_MEMBERSHIP_TYPE = pa.map_(pa.string(), pa.map_(pa.string(), MEMBERSHIP_TYPE))
EXPORT_SCHEMA = pa.schema(
    [
        ("_id", pa.string()),
        ("identityMap", IDENTITY_MAP_TYPE),
        ("personalEmail", pa.struct([("address", pa.string())])),
        ("person", pa.struct([("name", pa.struct([("firstName", pa.string()), ("lastName", pa.string())]))])),
        ("workAddress", pa.struct([("street1", pa.string()), ("city", pa.string()), ("country", pa.string())])),
        ("segmentMembership", SEGMENT_MEMBERSHIP_TYPE),
    ]
)

# The flat internal store (not an API contract): `dirt` records which kind of dirt a profile got, for tests.
PROFILE_SCHEMA = pa.schema(
    [
        ("profile_id", pa.string()),
        ("email", pa.string()),
        ("personal_email", pa.string()),
        ("ecid", pa.string()),
        ("first_name", pa.string()),
        ("last_name", pa.string()),
        ("street1", pa.string()),
        ("city", pa.string()),
        ("country", pa.string()),
        ("dirt", pa.string()),
    ]
)
MEMBERSHIP_SCHEMA = pa.schema(
    [
        ("row", pa.int32()),  # index into profiles.parquet
        ("audience_id", pa.string()),
        ("status", pa.string()),
        ("last_qualification_time", pa.timestamp("ms", tz="UTC")),
    ]
)


# Variants the public docs leave open, chosen at seed time (``sandbox.seed --email-namespace/--no-ids/
# --audience-namespaces``) and kept in the db, so the server, the file export and the tests agree:
#  - identityMap keys are identity namespace codes; Adobe's code for email is ``Email`` (Identity Service
#    "Standard identity namespaces"), while older examples show ``email``;
#  - nothing documents that a profile export carries ``_id``;
#  - segmentMembership is keyed by the audience's namespace: ``ups`` for Platform-built audiences (their
#    audience object says ``namespace: AEPSegments``), the audience's own namespace otherwise (XDM "Segment
#    Membership Details" field group shows ``AAM`` beside ``ups``).
PLATFORM_NAMESPACE = "AEPSegments"
PLATFORM_MEMBERSHIP_KEY = "ups"


def membership_namespace(audience: dict) -> str:
    namespace = audience.get("namespace") or PLATFORM_NAMESPACE
    return PLATFORM_MEMBERSHIP_KEY if namespace == PLATFORM_NAMESPACE else namespace


@dataclass(frozen=True)
class ExportShape:
    email_namespace: str = "Email"
    with_ids: bool = True
    namespaces: dict[str, str] = field(default_factory=dict)  # audience id → segmentMembership key

    def namespace(self, audience_id: str) -> str:
        return self.namespaces.get(audience_id, PLATFORM_MEMBERSHIP_KEY)


def export_shape(db: str | Path) -> ExportShape:
    """The seeded export variant: meta keys ``email_namespace`` / ``export_ids`` and the audiences' namespaces."""
    state = open_state(db)
    meta = {row["key"]: json.loads(row["value"]) for row in state.query("SELECT key, value FROM population")}
    audiences = [json.loads(row["body"]) for row in state.query("SELECT body FROM audiences")]
    return ExportShape(
        email_namespace=meta.get("email_namespace", "Email"),
        with_ids=meta.get("export_ids", True),
        namespaces={a["id"]: membership_namespace(a) for a in audiences},
    )


def default_data_dir(db: str | Path) -> Path:
    return Path(db).resolve().parent / "aep_data"


def open_state(db: str | Path) -> StateDB:
    return StateDB(str(db), SCHEMA)


def profiles_path(data_dir: Path) -> Path:
    return Path(data_dir) / "profiles.parquet"


def memberships_path(data_dir: Path) -> Path:
    return Path(data_dir) / "memberships.parquet"


def _write_atomic(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, compression="snappy")
    os.replace(tmp, path)


def save_population(data_dir: Path, profiles: pa.Table, memberships: pa.Table) -> None:
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(profiles.cast(PROFILE_SCHEMA), profiles_path(data_dir))
    _write_atomic(memberships.cast(MEMBERSHIP_SCHEMA), memberships_path(data_dir))


def load_population(data_dir: Path) -> tuple[pa.Table, pa.Table]:
    """Both store tables; empty ones when nothing was seeded (an export then finds no members)."""
    if not profiles_path(data_dir).exists():
        return PROFILE_SCHEMA.empty_table(), MEMBERSHIP_SCHEMA.empty_table()
    return pq.read_table(profiles_path(data_dir)), pq.read_table(memberships_path(data_dir))


def select_members(
    profiles: pa.Table, memberships: pa.Table, audience_ids: list[str], statuses: list[str]
) -> tuple[pa.Table, pa.Table, np.ndarray]:
    """Profiles with a requested status in a requested audience, and those memberships sorted by profile.

    Returns (profiles subset, memberships subset, counts of memberships per selected profile).
    """
    keep = pc.and_(
        pc.is_in(memberships["audience_id"], value_set=pa.array(audience_ids, pa.string())),
        pc.is_in(memberships["status"], value_set=pa.array(statuses, pa.string())),
    )
    chosen = memberships.filter(keep).sort_by([("row", "ascending"), ("audience_id", "ascending")])
    rows, counts = np.unique(chosen["row"].to_numpy(), return_counts=True)
    return profiles.take(pa.array(rows, pa.int64())), chosen, counts


def _identity_map(email: pa.ChunkedArray, ecid: pa.ChunkedArray, email_key: str) -> pa.Array:
    """identityMap with an ``email_key`` entry (primary) and an ``ECID`` entry per profile, when present."""
    n = len(email)
    has_email = email.is_valid().to_numpy(zero_copy_only=False)
    has_ecid = ecid.is_valid().to_numpy(zero_copy_only=False)
    counts = has_email.astype(np.int32) + has_ecid
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(counts, out=offsets[1:])
    rows = np.arange(n)
    source = np.empty(offsets[-1], np.int64)  # index into concat(email, ecid)
    source[offsets[:-1][has_email]] = rows[has_email]
    source[offsets[:-1][has_ecid] + has_email[has_ecid]] = n + rows[has_ecid]
    ids = pa.chunked_array(email.chunks + ecid.chunks, pa.string()).combine_chunks().take(pa.array(source))
    is_email = source < n
    primary = is_email | ~has_email[np.where(is_email, source, source - n)]
    is_email_arrow = pa.array(is_email)
    entries = pa.StructArray.from_arrays(
        [ids, pc.if_else(is_email_arrow, "authenticated", "ambiguous"), pa.array(primary)],
        fields=list(IDENTITY_TYPE),
    )
    items = pa.ListArray.from_arrays(pa.array(np.arange(len(source) + 1, dtype=np.int32)), entries)
    keys = pc.if_else(is_email_arrow, email_key, "ECID")
    return pa.MapArray.from_arrays(pa.array(offsets), keys, items, type=IDENTITY_MAP_TYPE, mask=pa.array(counts == 0))


# Also in audience_sync.file_exports, on purpose: the sandbox stands in for Adobe, so it builds the export shape
# without the product's code; sharing it would let a product change pass the file-vs-API export comparison tests.
def _struct(columns: dict[str, pa.Array], type_: pa.StructType) -> pa.StructArray:
    """A struct that is null where all its fields are null (XDM objects are absent rather than empty)."""
    all_null = None
    for column in columns.values():
        null = pc.is_null(column)
        all_null = null if all_null is None else pc.and_(all_null, null)
    return pa.StructArray.from_arrays(list(columns.values()), fields=list(type_), mask=all_null)


def _combined(table: pa.Table, name: str) -> pa.Array:
    return table[name].combine_chunks()


def _segment_membership(chosen: pa.Table, n: int, audience_ids: list[str], shape: ExportShape) -> pa.MapArray:
    """namespace → audience id → membership, one entry per (profile, namespace); ``chosen`` sorted by row."""
    names_in_order = list(dict.fromkeys(shape.namespace(a) for a in audience_ids))  # first requested first
    keys = pa.array([shape.namespace(a) for a in audience_ids], pa.string())
    position = pc.index_in(chosen["audience_id"], value_set=pa.array(audience_ids, pa.string()))
    rank = pa.array([names_in_order.index(shape.namespace(a)) for a in audience_ids], pa.int32()).take(position)
    chosen = chosen.append_column("namespace", keys.take(position)).append_column("rank", rank)
    chosen = chosen.sort_by([("row", "ascending"), ("rank", "ascending"), ("audience_id", "ascending")])
    rows = chosen["row"].to_numpy()
    names = _combined(chosen, "namespace")
    starts = np.ones(len(rows), dtype=bool)
    if len(rows) > 1:
        starts[1:] = (rows[1:] != rows[:-1]) | pc.not_equal(names.slice(1), names.slice(0, len(rows) - 1)).to_numpy(
            zero_copy_only=False
        )
    group_starts = np.flatnonzero(starts)
    inner = pa.MapArray.from_arrays(
        pa.array(np.append(group_starts, len(rows)).astype(np.int32)),
        _combined(chosen, "audience_id"),
        pa.StructArray.from_arrays(
            [_combined(chosen, "status"), _combined(chosen, "last_qualification_time")], fields=list(MEMBERSHIP_TYPE)
        ),
        type=SEGMENT_MEMBERSHIP_TYPE.item_type,
    )
    profile_of_group = np.searchsorted(np.unique(rows), rows[group_starts])
    outer_offsets = np.zeros(n + 1, np.int32)
    np.cumsum(np.bincount(profile_of_group, minlength=n), out=outer_offsets[1:])
    return pa.MapArray.from_arrays(
        pa.array(outer_offsets), names.take(pa.array(group_starts)), inner, type=SEGMENT_MEMBERSHIP_TYPE
    )


def build_export_table(
    profiles: pa.Table,
    memberships: pa.Table,
    audience_ids: list[str],
    statuses: list[str],
    shape: ExportShape = ExportShape(),
) -> pa.Table:
    """The export-job result in ``EXPORT_SCHEMA`` (without ``_id`` when the shape says so); segmentMembership
    holds only the requested audiences/statuses, each under its audience's namespace."""
    members, chosen, _ = select_members(profiles, memberships, audience_ids, statuses)
    n = members.num_rows
    segment_membership = _segment_membership(chosen, n, audience_ids, shape)
    person_type = EXPORT_SCHEMA.field("person").type
    name = _struct(
        {"firstName": _combined(members, "first_name"), "lastName": _combined(members, "last_name")},
        person_type.field("name").type,
    )
    columns = [
        _combined(members, "profile_id"),
        _identity_map(members["email"], members["ecid"], shape.email_namespace),
        _struct({"address": _combined(members, "personal_email")}, EXPORT_SCHEMA.field("personalEmail").type),
        pa.StructArray.from_arrays([name], fields=list(person_type), mask=pc.is_null(name)),
        _struct(
            {k: _combined(members, c) for k, c in (("street1", "street1"), ("city", "city"), ("country", "country"))},
            EXPORT_SCHEMA.field("workAddress").type,
        ),
        segment_membership,
    ]
    table = pa.Table.from_arrays(columns, schema=EXPORT_SCHEMA)
    return table if shape.with_ids else table.drop_columns(["_id"])


def write_parts(table: pa.Table, folder: Path, part_rows: int, stem: str = "part", fmt: str = "parquet") -> list[Path]:
    """Split ``table`` into files of at most ``part_rows`` rows; no rows → no files."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, start in enumerate(range(0, table.num_rows, part_rows)):
        path = folder / f"{stem}-{number:05d}.{fmt}"
        part = table.slice(start, part_rows)
        if fmt == "csv":
            pacsv.write_csv(part, path)
        else:
            pq.write_table(part, path, compression="snappy")
        paths.append(path)
    return paths
