"""Synthetic AEP population for the sandbox: audiences, the export dataset, the merge policy and the profiles.

Commands (``PYTHONPATH=include:plugins``, cwd the repository root):

    python -m sandbox.seed --db PATH [--data-dir DIR] --profiles 10000 --audiences 3 [--seed 42] [--dirty-rate 0.01]
        [--email-namespace Email|email] [--no-ids] [--audience-namespaces AEPSegments AAM ...]
    python -m sandbox.seed mutate --db PATH --fraction 0.01 [--exit-fraction F] [--data-dir DIR]
    python -m sandbox.seed files --db PATH --out DIR --format parquet|csv --audiences ID [ID ...]
        [--statuses realized existing exited] [--part-rows N] [--data-dir DIR]

Everything is generated column-wise with numpy/pyarrow (1,000,000 profiles seed in a few seconds) and is
deterministic given ``--seed``.

Dirt, each kind on ``round(profiles × dirty_rate)`` distinct profiles (recorded in the store's ``dirt``
column, never exported):
  messy_email      email (identity and personalEmail) title-cased and padded with spaces
  duplicate        a second profile id for another person: same name, the email upper-cased, the same audiences
                   with a later lastQualificationTime (the original gets dirt ``duplicate_source``)
  missing_email    neither identityMap email nor personalEmail
  invalid_email    e.g. ``name.example.com``, ``name@``, ``@example.com``, ``first last@example.com``
  non_ascii_name   names such as José, Strauß, Zoë, 中文
  over_long        workAddress.street1 longer than 65,536 characters (capped at ``OVER_LONG_CAP`` profiles)
Independently, each of first name, last name, street, city, country and ECID is null on another
``round(profiles × dirty_rate)`` random profiles. Clean profiles: 70 % carry the email in identityMap and
personalEmail, 20 % only in identityMap, 10 % only in ``personalEmail.address``.

Export variants (see ``aep_store.ExportShape``): ``--email-namespace`` is the identityMap key of the email
identity (default ``Email``, Adobe's namespace code); ``--no-ids`` exports profiles without ``_id``;
``--audience-namespaces`` gives the audiences' ``namespace`` in turn (default ``AEPSegments``: members are
exported under ``segmentMembership.ups``; any other namespace, e.g. ``AAM``, is its own segmentMembership key
and makes the audience an external one).

Audience file export (``files``), as AEP file-based destinations write it, one row per profile that has a
requested status in at least one requested audience, columns in this order:
  _id (unless --no-ids), identityMap.<email namespace>, identityMap.ECID (the first id of that namespace), personalEmail.address,
  person.name.firstName, person.name.lastName, workAddress.street1, workAddress.city, workAddress.country,
  then for each requested audience id A in namespace NS: segmentMembership.NS.A.status, segmentMembership.NS.A.lastQualificationTime
  (null/empty when the profile has no requested status in A). In CSV the time is ISO-8601 UTC with
  milliseconds (``2026-01-01T00:00:00.000Z``); in Parquet it is timestamp[ms, tz=UTC].
Files are ``<out>/audience-export-NNNNN.<csv|parquet>`` of at most ``--part-rows`` rows.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sandbox import credentials
from sandbox.aep_store import (
    MEMBERSHIP_STATUSES,
    PLATFORM_NAMESPACE,
    ExportShape,
    default_data_dir,
    export_shape,
    load_population,
    open_state,
    save_population,
    select_members,
    write_parts,
)

AUDIENCE_NAMES = [
    "Gold Members",
    "Newsletter Subscribers",
    "Churn Risk",
    "High Value Customers",
    "Recent Purchasers",
    "Cart Abandoners",
    "Mobile App Users",
    "Event Attendees",
    "Lapsed Customers",
    "Loyalty Platinum",
]
AUDIENCE_SHARES = [0.5, 0.35, 0.2, 0.15, 0.12, 0.1, 0.08, 0.06, 0.05, 0.04]
STATUS_SHARES = [0.55, 0.35, 0.10]  # realized, existing, exited
FIRST_NAMES = [
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Anna",
    "Lukas",
    "Emma",
    "Noah",
    "Olivia",
    "Liam",
    "Sophie",
    "Paul",
    "Laura",
    "Tom",
]
LAST_NAMES = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Fischer",
    "Weber",
    "Schneider",
    "Meyer",
    "Wagner",
    "Becker",
    "Hoffmann",
    "Klein",
    "Wolf",
    "Neumann",
]
NON_ASCII_FIRST = ["José", "Zoë", "Jürgen", "Søren", "Łukasz", "中文", "Renée", "Ólafur"]
NON_ASCII_LAST = ["Strauß", "Müller", "Nguyễn", "王", "Þórsson", "Gómez", "Åberg", "Dvořák"]
STREETS = [
    "Main St",
    "Oak Ave",
    "Maple Rd",
    "Hauptstraße",
    "Park Lane",
    "Rue de Rivoli",
    "High Street",
    "Elm St",
    "Cedar Blvd",
]
CITIES = [
    ("Berlin", "Germany"),
    ("Munich", "Germany"),
    ("New York", "United States"),
    ("Austin", "United States"),
    ("London", "United Kingdom"),
    ("Paris", "France"),
    ("Toronto", "Canada"),
    ("Sydney", "Australia"),
    ("Madrid", "Spain"),
    ("Zürich", "Switzerland"),
]
DOMAINS = ["example.com", "mail.example.org", "example.net", "corp.example.com"]
DIRT_KINDS = ["messy_email", "duplicate", "missing_email", "invalid_email", "non_ascii_name", "over_long"]
NULLABLE_FIELDS = ["first_name", "last_name", "street1", "city", "country", "ecid"]
OVER_LONG_CAP = 20  # each over-long street is 70 KB: keep million-profile stores small
OVER_LONG_LENGTH = 70_000
BASE_TIME_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: times derive from the seed, not the clock
DAY_MS = 86_400_000


@dataclass
class SeedResult:
    profiles: int
    memberships: int
    audiences: list[dict]
    dirt: dict[str, int]
    seconds: float


@dataclass
class MutateResult:
    changed_profiles: int
    exited_memberships: int
    generation: int
    changed_ids: list[str]


def _pick(rng: np.random.Generator, values: list[str], n: int) -> pa.Array:
    return pa.array(values, pa.string()).take(pa.array(rng.integers(0, len(values), n)))


def _hex_uuids(rng: np.random.Generator, n: int) -> pa.Array:
    """n random UUID-formatted strings, built as a byte matrix (no per-row Python)."""
    digits = np.frombuffer(b"0123456789abcdef", np.uint8)[rng.integers(0, 16, (n, 32), dtype=np.uint8)]
    dash = np.full((n, 1), ord("-"), np.uint8)
    chars = np.hstack(
        [digits[:, :8], dash, digits[:, 8:12], dash, digits[:, 12:16], dash, digits[:, 16:20], dash, digits[:, 20:]]
    )
    return pa.array(np.ascontiguousarray(chars).view("S36").ravel()).cast(pa.string())


def _numeric_ids(rng: np.random.Generator, n: int, width: int) -> pa.Array:
    chars = (rng.integers(0, 10, (n, width), dtype=np.uint8) + ord("0")).astype(np.uint8)
    return pa.array(np.ascontiguousarray(chars).view(f"S{width}").ravel()).cast(pa.string())


def _set(column: pa.Array, rows: np.ndarray, values: pa.Array | str | None) -> pa.Array:
    """``column`` with ``rows`` replaced by ``values`` (an array aligned with the column, a scalar, or null)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if values is None or isinstance(values, str):
        index = np.arange(len(column))
        index[rows] = len(column)
        return pa.concat_arrays([column, pa.array([values], pa.string())]).take(pa.array(index))
    mask = np.zeros(len(column), bool)
    mask[rows] = True
    return pc.if_else(pa.array(mask), values, column)


def _scatter(n: int, rows: np.ndarray, values: pa.Array) -> pa.Array:
    """An n-long array holding ``values`` at ``rows`` (null elsewhere)."""
    index = np.full(n, -1, np.int64)
    index[rows] = np.arange(len(rows))
    return values.take(pa.array(index, mask=index < 0))


def _profiles(rng: np.random.Generator, n: int) -> dict[str, pa.Array]:
    first, last = _pick(rng, FIRST_NAMES, n), _pick(rng, LAST_NAMES, n)
    number = pa.array(np.arange(n)).cast(pa.string())
    email = pc.binary_join_element_wise(
        pc.utf8_lower(first), ".", pc.utf8_lower(last), number, "@", _pick(rng, DOMAINS, n), ""
    )
    where = rng.random(n)
    city_index = pa.array(rng.integers(0, len(CITIES), n))
    return {
        "profile_id": _hex_uuids(rng, n),
        "email": pc.if_else(pa.array(where < 0.9), email, pa.nulls(n, pa.string())),
        "personal_email": pc.if_else(pa.array((where < 0.7) | (where >= 0.9)), email, pa.nulls(n, pa.string())),
        "ecid": _numeric_ids(rng, n, 38),
        "first_name": first,
        "last_name": last,
        "street1": pc.binary_join_element_wise(
            pa.array(rng.integers(1, 999, n)).cast(pa.string()), _pick(rng, STREETS, n), " "
        ),
        "city": pa.array([c for c, _ in CITIES]).take(city_index),
        "country": pa.array([c for _, c in CITIES]).take(city_index),
        "dirt": pa.nulls(n, pa.string()),
    }


def _memberships(
    rng: np.random.Generator, n: int, audience_ids: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense (n × audiences) matrices: member?, status code, lastQualificationTime (ms)."""
    a = len(audience_ids)
    shares = np.array([AUDIENCE_SHARES[i % len(AUDIENCE_SHARES)] for i in range(a)])
    member = rng.random((n, a)) < shares
    status = rng.choice(len(MEMBERSHIP_STATUSES), size=(n, a), p=STATUS_SHARES).astype(np.int8)
    times = BASE_TIME_MS - rng.integers(0, 90 * DAY_MS, (n, a))
    return member, status, times


def _apply_dirt(
    rng: np.random.Generator, cols: dict[str, pa.Array], dirty_rate: float, matrices: tuple
) -> dict[str, int]:
    n = len(cols["profile_id"])
    k = round(n * dirty_rate)
    counts = {kind: k for kind in DIRT_KINDS}
    counts["over_long"] = min(k, OVER_LONG_CAP)
    needed = sum(counts.values()) + counts["duplicate"]  # duplicates also take a source profile each
    if needed > n:
        raise ValueError(f"dirty_rate {dirty_rate} needs {needed} distinct profiles but there are only {n}")
    order = rng.permutation(n)
    groups, start = {}, 0
    for kind in [*DIRT_KINDS, "duplicate_source"]:
        size = counts["duplicate" if kind == "duplicate_source" else kind]
        groups[kind] = np.sort(order[start : start + size])
        start += size
    dirt = cols["dirt"]
    for kind, rows in groups.items():
        dirt = _set(dirt, rows, kind)
    cols["dirt"] = dirt

    rows = groups["messy_email"]
    for field in ("email", "personal_email"):
        messy = pc.binary_join_element_wise("  ", pc.utf8_title(cols[field]), " ", "")
        cols[field] = _set(cols[field], rows, messy)

    rows = groups["missing_email"]
    cols["email"] = _set(cols["email"], rows, None)
    cols["personal_email"] = _set(cols["personal_email"], rows, None)

    rows = groups["invalid_email"]
    local = pc.binary_join_element_wise(pc.utf8_lower(cols["first_name"]), pc.utf8_lower(cols["last_name"]), ".")
    invalid = pc.choose(
        pa.array(rng.integers(0, 4, n), pa.int8()),
        pc.binary_join_element_wise(local, "example.com", "."),
        pc.binary_join_element_wise(local, "@", ""),
        pa.array(np.full(n, "@example.com", dtype=object), pa.string()),
        pc.binary_join_element_wise(cols["first_name"], cols["last_name"], "@example.com", " "),
    )
    cols["email"] = _set(cols["email"], rows, invalid)
    cols["personal_email"] = _set(cols["personal_email"], rows, invalid)

    rows = groups["non_ascii_name"]
    cols["first_name"] = _set(cols["first_name"], rows, _pick(rng, NON_ASCII_FIRST, n))
    cols["last_name"] = _set(cols["last_name"], rows, _pick(rng, NON_ASCII_LAST, n))

    rows = groups["over_long"]
    long_street = "Very Long Street " + "x" * OVER_LONG_LENGTH
    cols["street1"] = _set(cols["street1"], rows, long_street)

    # duplicates: the target becomes a second profile of the source person (email spelled differently)
    sources, targets = groups["duplicate_source"], groups["duplicate"]
    source_of = np.arange(n)
    source_of[targets] = sources
    take = pa.array(source_of)
    for field in ("first_name", "last_name", "city", "country", "street1"):
        cols[field] = cols[field].take(take)
    upper_email = pc.utf8_upper(cols["email"].take(take))
    has_email = pc.is_valid(cols["email"].take(take))
    fallback = pc.utf8_upper(cols["personal_email"].take(take))
    cols["email"] = _set(cols["email"], targets, pc.if_else(has_email, upper_email, fallback))
    cols["personal_email"] = _set(cols["personal_email"], targets, None)
    member, status, times = matrices
    member[sources, 0] = True
    status[sources, 0] = 0
    member[targets] = member[sources]
    status[targets] = status[sources]
    times[targets] = times[sources] + rng.integers(1, 30, (len(targets), 1)) * DAY_MS

    for field in NULLABLE_FIELDS:
        cols[field] = _set(cols[field], rng.choice(n, size=k, replace=False), None)
    return counts


def _membership_table(audience_ids: list[str], member: np.ndarray, status: np.ndarray, times: np.ndarray) -> pa.Table:
    rows, cols = np.nonzero(member)
    return pa.table(
        {
            "row": pa.array(rows.astype(np.int32)),
            "audience_id": pa.array(audience_ids, pa.string()).take(pa.array(cols)),
            "status": pa.array(list(MEMBERSHIP_STATUSES), pa.string()).take(pa.array(status[rows, cols])),
            "last_qualification_time": pa.array(times[rows, cols], pa.timestamp("ms", tz="UTC")),
        }
    )


def _audience_body(audience_id: str, name: str, seq: int, namespace: str = PLATFORM_NAMESPACE) -> dict:
    # Shape of an audience in GET /audiences (Segmentation Service "Audiences endpoint",
    # https://experienceleague.adobe.com/en/docs/experience-platform/segmentation/api/audiences, and the
    # PlatformGeneratedAudience / ExternallyGeneratedAudience schemas of segmentation.yaml)
    created = BASE_TIME_MS - (100 - seq) * DAY_MS
    platform = namespace == PLATFORM_NAMESPACE
    origin = "AUDIENCE_MANAGER" if namespace.startswith("AAM") else "CUSTOM_UPLOAD"
    origin = "REAL_TIME_CUSTOMER_PROFILE" if platform else origin
    return {
        "id": audience_id,
        "audienceId": audience_id,
        "name": name,
        "namespace": namespace,
        "description": f"Profiles in the {name} audience (sandbox seed)",
        "type": "SegmentDefinition" if platform else "ExternalAudience",
        "originName": origin,
        "lifecycleState": "published",
        "imsOrgId": credentials.AEP_ORG_ID,
        "sandbox": {"sandboxName": credentials.AEP_SANDBOX_NAME, "type": "production", "default": True},
        "schema": {"name": "_xdm.context.profile"},
        "expression": {"type": "PQL", "format": "pql/text", "value": f'segmentMembership.ups.name = "{name}"'},
        "mergePolicyId": credentials.AEP_MERGE_POLICY_ID,
        "evaluationInfo": {
            "batch": {"enabled": True},
            "continuous": {"enabled": False},
            "synchronous": {"enabled": False},
        },
        "labels": [],
        "createEpoch": created // 1000,
        "creationTime": created,
        "updateEpoch": created // 1000,
        "updateTime": created,
    }


def _write_catalog(db: str | Path, audiences: list[dict], meta: dict) -> None:
    state = open_state(db)
    with state as conn:
        conn.execute("DELETE FROM audiences")
        conn.executemany(
            "INSERT INTO audiences (seq, id, body) VALUES (?, ?, ?)",
            [(i, a["id"], json.dumps(a)) for i, a in enumerate(audiences)],
        )
        dataset = {
            "id": credentials.AEP_DATASET_ID,
            "name": "Audience export (profile union schema)",
            "schemaRef": {
                "id": "_xdm.context.profile__union",
                "contentType": "application/vnd.adobe.xed+json;version=1",
            },
        }
        merge_policy = {
            "id": credentials.AEP_MERGE_POLICY_ID,
            "name": "Default timestamp-ordered",
            "default": True,
            "version": 1,
            "attributeMerge": {"type": "timestampOrdered"},
            "identityGraph": {"type": "pdg"},
        }
        conn.execute("INSERT OR REPLACE INTO datasets (id, body) VALUES (?, ?)", (dataset["id"], json.dumps(dataset)))
        conn.execute(
            "INSERT OR REPLACE INTO merge_policies (id, body) VALUES (?, ?)",
            (merge_policy["id"], json.dumps(merge_policy)),
        )
        conn.executemany(
            "INSERT OR REPLACE INTO population (key, value) VALUES (?, ?)",
            [(k, json.dumps(v)) for k, v in meta.items()],
        )


def _meta(db: str | Path) -> dict:
    return {row["key"]: json.loads(row["value"]) for row in open_state(db).query("SELECT key, value FROM population")}


def seed_population(
    db: str | Path,
    data_dir: str | Path | None = None,
    profiles: int = 10_000,
    audiences: int = 3,
    seed: int = 42,
    dirty_rate: float = 0.01,
    email_namespace: str = "Email",
    export_ids: bool = True,
    audience_namespaces: list[str] | tuple[str, ...] = (PLATFORM_NAMESPACE,),
) -> SeedResult:
    """(Re)create the audiences, the export dataset, the merge policy and the profile store; the export
    variant options are described in the module docstring."""
    if profiles < 1 or audiences < 1:
        raise ValueError("profiles and audiences must be at least 1")
    if not 0 <= dirty_rate <= 0.1:
        raise ValueError(f"dirty_rate must be between 0 and 0.1, got {dirty_rate}")
    started = time.monotonic()
    data_dir = Path(data_dir) if data_dir else default_data_dir(db)
    rng = np.random.default_rng(seed)
    audience_ids = [str(x) for x in _hex_uuids(rng, audiences).to_pylist()]
    names = [AUDIENCE_NAMES[i] if i < len(AUDIENCE_NAMES) else f"Audience {i + 1}" for i in range(audiences)]
    cols = _profiles(rng, profiles)
    matrices = _memberships(rng, profiles, audience_ids)
    dirt = _apply_dirt(rng, cols, dirty_rate, matrices)
    memberships = _membership_table(audience_ids, *matrices)
    save_population(data_dir, pa.table(cols), memberships)
    if not audience_namespaces or not email_namespace:
        raise ValueError("audience_namespaces and email_namespace must not be empty")
    bodies = [
        _audience_body(a, name, i, audience_namespaces[i % len(audience_namespaces)])
        for i, (a, name) in enumerate(zip(audience_ids, names))
    ]
    meta = {"seed": seed, "generation": 0, "profiles": profiles, "data_dir": str(data_dir),
            "email_namespace": email_namespace, "export_ids": export_ids}
    _write_catalog(db, bodies, meta)
    return SeedResult(profiles, memberships.num_rows, bodies, dirt, time.monotonic() - started)


def _changed(rng: np.random.Generator, column: pa.Array, values: list[str], rows: np.ndarray) -> pa.Array:
    """New values from ``values`` for ``rows``, never equal to the old ones."""
    n = len(column)
    index = rng.integers(0, len(values), n)
    table = pa.array(values, pa.string())
    new = table.take(pa.array(index))
    same = pc.fill_null(pc.equal(new, column), False)
    new = pc.if_else(same, table.take(pa.array((index + 1) % len(values))), new)
    return _set(column, rows, new)


def mutate_population(
    db: str | Path, data_dir: str | Path | None = None, fraction: float = 0.01, exit_fraction: float | None = None
) -> MutateResult:
    """Change names/city of ``fraction`` of the profiles and move ``exit_fraction`` of active memberships to exited."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    exit_fraction = fraction if exit_fraction is None else exit_fraction
    data_dir = Path(data_dir) if data_dir else default_data_dir(db)
    meta = _meta(db)
    if "seed" not in meta:
        raise ValueError(f"no population seeded in {db}; run `python -m sandbox.seed` first")
    generation = meta["generation"] + 1
    rng = np.random.default_rng([meta["seed"], generation])
    profiles, memberships = load_population(data_dir)
    cols = {name: profiles[name].combine_chunks() for name in profiles.column_names}
    n = profiles.num_rows
    rows = np.sort(rng.choice(n, size=round(n * fraction), replace=False))
    cols["first_name"] = _changed(rng, cols["first_name"], FIRST_NAMES, rows)
    cols["last_name"] = _changed(rng, cols["last_name"], LAST_NAMES, rows)
    city_index = rng.integers(0, len(CITIES), n)
    new_city = pa.array([c for c, _ in CITIES]).take(pa.array(city_index))
    same = pc.fill_null(pc.equal(new_city, cols["city"]), False).to_numpy(zero_copy_only=False)
    city_index = np.where(same, (city_index + 1) % len(CITIES), city_index)
    cols["city"] = _set(cols["city"], rows, pa.array([c for c, _ in CITIES]).take(pa.array(city_index)))
    cols["country"] = _set(cols["country"], rows, pa.array([c for _, c in CITIES]).take(pa.array(city_index)))

    status = memberships["status"].combine_chunks()
    active = np.flatnonzero(pc.not_equal(status, "exited").to_numpy(zero_copy_only=False))
    exits = rng.choice(active, size=round(len(active) * exit_fraction), replace=False)
    now = BASE_TIME_MS + generation * DAY_MS
    times = memberships["last_qualification_time"].combine_chunks()
    mask = np.zeros(memberships.num_rows, bool)
    mask[exits] = True
    memberships = memberships.set_column(2, "status", _set(status, exits, "exited"))
    memberships = memberships.set_column(
        3,
        "last_qualification_time",
        pc.if_else(pa.array(mask), pa.scalar(now, pa.timestamp("ms", tz="UTC")), times),
    )
    save_population(data_dir, pa.table(cols), memberships)
    with open_state(db) as conn:
        conn.execute("UPDATE population SET value = ? WHERE key = 'generation'", (json.dumps(generation),))
    changed_ids = cols["profile_id"].take(pa.array(rows)).to_pylist()
    return MutateResult(len(rows), len(exits), generation, changed_ids)


def audience_file_table(
    profiles,
    memberships,
    audience_ids: list[str],
    statuses: list[str],
    for_csv: bool,
    shape: ExportShape = ExportShape(),
) -> pa.Table:
    """The flat, dotted-column table described in the module docstring."""
    members, chosen, _ = select_members(profiles, memberships, audience_ids, statuses)
    n = members.num_rows
    columns = {
        "_id": members["profile_id"],
        f"identityMap.{shape.email_namespace}": members["email"],
        "identityMap.ECID": members["ecid"],
        "personalEmail.address": members["personal_email"],
        "person.name.firstName": members["first_name"],
        "person.name.lastName": members["last_name"],
        "workAddress.street1": members["street1"],
        "workAddress.city": members["city"],
        "workAddress.country": members["country"],
    }
    selected_rows = np.unique(chosen["row"].to_numpy())
    chosen_rows = chosen["row"].to_numpy()
    for audience_id in audience_ids:
        in_audience = pc.equal(chosen["audience_id"], audience_id)
        sub = chosen.filter(in_audience)
        positions = np.searchsorted(selected_rows, chosen_rows[in_audience.to_numpy()])
        time_column = _scatter(n, positions, sub["last_qualification_time"].combine_chunks())
        if for_csv:
            time_column = pc.strftime(time_column, format="%Y-%m-%dT%H:%M:%SZ")
        prefix = f"segmentMembership.{shape.namespace(audience_id)}.{audience_id}"
        columns[f"{prefix}.status"] = _scatter(n, positions, sub["status"].combine_chunks())
        columns[f"{prefix}.lastQualificationTime"] = time_column
    if not shape.with_ids:
        del columns["_id"]
    return pa.table(columns)


def write_audience_files(
    db: str | Path,
    out: str | Path,
    fmt: str,
    audience_ids: list[str],
    statuses: list[str] | tuple[str, ...] = MEMBERSHIP_STATUSES,
    data_dir: str | Path | None = None,
    part_rows: int = 250_000,
) -> list[Path]:
    """Write the audience export as file-based destinations do; returns the part files."""
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"format must be csv or parquet, got {fmt!r}")
    known = {row["id"] for row in open_state(db).query("SELECT id FROM audiences")}
    unknown = [a for a in audience_ids if a not in known]
    if unknown:
        raise ValueError(f"unknown audience ids: {', '.join(unknown)}")
    statuses = list(statuses)
    bad = [s for s in statuses if s not in MEMBERSHIP_STATUSES]
    if bad:
        raise ValueError(f"unknown statuses: {', '.join(bad)}")
    profiles, memberships = load_population(Path(data_dir) if data_dir else default_data_dir(db))
    table = audience_file_table(profiles, memberships, audience_ids, statuses, fmt == "csv", export_shape(db))
    return write_parts(table, Path(out), part_rows, stem="audience-export", fmt=fmt)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv and argv[0] in ("mutate", "files") else "seed"
    parser = argparse.ArgumentParser(prog=f"python -m sandbox.seed {'' if command == 'seed' else command}".strip())
    parser.add_argument("--db", required=True)
    parser.add_argument("--data-dir")
    if command == "seed":
        parser.add_argument("--profiles", type=int, default=10_000)
        parser.add_argument("--audiences", type=int, default=3)
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--dirty-rate", type=float, default=0.01)
        parser.add_argument("--email-namespace", default="Email", help="identityMap key of the email identity")
        parser.add_argument("--no-ids", action="store_true", help="export profiles without _id")
        parser.add_argument("--audience-namespaces", nargs="+", default=[PLATFORM_NAMESPACE],
                            help="the audiences' namespaces, in turn (AEPSegments: exported under ups)")
    elif command == "mutate":
        parser.add_argument("--fraction", type=float, required=True)
        parser.add_argument("--exit-fraction", type=float)
    else:
        parser.add_argument("--out", required=True)
        parser.add_argument("--format", choices=["parquet", "csv"], default="parquet")
        parser.add_argument("--audiences", nargs="+", required=True)
        parser.add_argument("--statuses", nargs="+", default=list(MEMBERSHIP_STATUSES))
        parser.add_argument("--part-rows", type=int, default=250_000)
    args = parser.parse_args(argv)
    try:
        if command == "seed":
            result = seed_population(
                args.db, args.data_dir, args.profiles, args.audiences, args.seed, args.dirty_rate,
                args.email_namespace, not args.no_ids, args.audience_namespaces,
            )
            summary = {
                "profiles": result.profiles,
                "memberships": result.memberships,
                "audiences": [{k: a[k] for k in ("id", "name", "namespace")} for a in result.audiences],
                "dirt": result.dirt,
                "seconds": round(result.seconds, 2),
            }
        elif command == "mutate":
            result = mutate_population(args.db, args.data_dir, args.fraction, args.exit_fraction)
            summary = {k: v for k, v in result.__dict__.items() if k != "changed_ids"}
        else:
            paths = write_audience_files(
                args.db, args.out, args.format, args.audiences, args.statuses, args.data_dir, args.part_rows
            )
            summary = {"files": [str(p) for p in paths]}
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
