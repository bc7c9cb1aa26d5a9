"""The synthetic AEP population: determinism, documented dirt, mutations, file exports, and the CLI."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from sandbox import credentials
from sandbox.aep_store import ExportShape, export_shape, load_population, open_state
from sandbox.seed import (
    DIRT_KINDS,
    NULLABLE_FIELDS,
    OVER_LONG_CAP,
    mutate_population,
    seed_population,
    write_audience_files,
)
from sandbox_process import ROOT

VALID_EMAIL = re.compile(r"^[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}$")
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    """20,000 profiles at the default dirty rate; read-only for the tests that use it."""
    db = tmp_path_factory.mktemp("seed") / "aep.sqlite3"
    result = seed_population(db, None, 20_000, 4, seed=11, dirty_rate=0.01)
    profiles, memberships = load_population(db.parent / "aep_data")
    return db, result, profiles.to_pandas(), memberships.to_pandas()


def test_catalog_has_audiences_dataset_and_merge_policy(population):
    db, result, _, _ = population
    state = open_state(db)
    names = [json.loads(r["body"])["name"] for r in state.query("SELECT body FROM audiences ORDER BY seq")]
    assert names == ["Gold Members", "Newsletter Subscribers", "Churn Risk", "High Value Customers"]
    assert [a["name"] for a in result.audiences] == names
    assert state.query("SELECT id FROM datasets")[0]["id"] == credentials.AEP_DATASET_ID
    assert state.query("SELECT id FROM merge_policies")[0]["id"] == credentials.AEP_MERGE_POLICY_ID


def test_same_seed_same_population_other_seed_differs(tmp_path):
    tables = []
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        seed_population(tmp_path / name / "aep.sqlite3", None, 2000, 3, seed=seed, dirty_rate=0.02)
        tables.append(load_population(tmp_path / name / "aep_data"))
    assert tables[0][0].equals(tables[1][0]) and tables[0][1].equals(tables[1][1])
    assert not tables[0][0].equals(tables[2][0])


def test_each_kind_of_dirt_at_documented_rate(population):
    _, result, profiles, _ = population
    expected = round(20_000 * 0.01)
    counts = profiles["dirt"].value_counts().to_dict()
    for kind in DIRT_KINDS:
        assert counts[kind] == result.dirt[kind] == (OVER_LONG_CAP if kind == "over_long" else expected)
    assert counts["duplicate_source"] == expected
    for field in NULLABLE_FIELDS:
        assert profiles[field].isna().sum() >= expected


def test_dirt_looks_like_what_it_claims(population):
    _, _, profiles, _ = population
    by_kind = {kind: profiles[profiles["dirt"] == kind] for kind in DIRT_KINDS}
    messy = by_kind["messy_email"]["email"].dropna()
    assert len(messy) and all(e != e.strip() and e != e.lower() and VALID_EMAIL.match(e.strip().lower()) for e in messy)
    missing = by_kind["missing_email"]
    assert missing["email"].isna().all() and missing["personal_email"].isna().all()
    invalid = by_kind["invalid_email"][["email", "personal_email"]].stack().dropna()
    assert len(invalid) and not any(VALID_EMAIL.match(e) for e in invalid)
    names = by_kind["non_ascii_name"][["first_name", "last_name"]].stack().dropna()
    assert sum(not n.isascii() for n in names) >= len(names) * 0.9
    assert {"é", "ß", "中"} & set("".join(names))
    assert (by_kind["over_long"]["street1"].dropna().str.len() > 65_536).all()
    clean = profiles[profiles["dirt"].isna()]
    only_personal = clean["email"].isna() & clean["personal_email"].notna()
    assert 0.05 < only_personal.mean() < 0.15


def test_duplicates_share_a_differently_spelled_email(population):
    _, _, profiles, memberships = population
    profiles = profiles.assign(row=range(len(profiles)))
    normal = profiles["email"].fillna(profiles["personal_email"]).str.strip().str.lower()
    profiles = profiles.assign(normal=normal)
    targets = profiles[profiles["dirt"] == "duplicate"]
    sources = profiles[profiles["dirt"] == "duplicate_source"].set_index("normal")
    assert targets["normal"].isin(sources.index).all()
    first = memberships.set_index(["row", "audience_id"])["last_qualification_time"]
    checked = 0
    for target in targets.head(50).itertuples():
        source = sources.loc[target.normal]
        assert source["profile_id"] != target.profile_id
        assert source["email"] != target.email
        names = {source["first_name"], target.first_name} - {None}
        assert len({n for n in names if isinstance(n, str)}) <= 1  # same person, unless a null was injected
        for audience_id in memberships[memberships["row"] == target.row]["audience_id"]:
            assert first[(target.row, audience_id)] != first[(source["row"], audience_id)]
            checked += 1
    assert checked >= 50  # every duplicate pair is in at least one audience together


def test_mutate_changes_values_and_exits_members(tmp_path):
    db = tmp_path / "aep.sqlite3"
    seed_population(db, None, 5000, 3, seed=2, dirty_rate=0.0)
    before, before_members = load_population(tmp_path / "aep_data")
    result = mutate_population(db, None, fraction=0.02, exit_fraction=0.05)
    after, after_members = load_population(tmp_path / "aep_data")
    assert result.generation == 1 and result.changed_profiles == 100 == len(set(result.changed_ids))
    changed = pc.is_in(before["profile_id"], pa.array(result.changed_ids))
    for field in ("first_name", "last_name", "city"):
        differs = pc.fill_null(pc.not_equal(before[field], after[field]), True)
        assert pc.all(pc.or_(pc.invert(changed), differs)).as_py(), field  # every chosen profile changed
        assert pc.sum(pc.and_(pc.invert(changed), differs)).as_py() in (0, None), field  # and no other
    assert before["email"].equals(after["email"]) and before["profile_id"].equals(after["profile_id"])
    exited = pc.and_(pc.not_equal(before_members["status"], "exited"), pc.equal(after_members["status"], "exited"))
    assert pc.sum(exited).as_py() == result.exited_memberships > 0
    again = mutate_population(db, None, fraction=0.02)
    assert again.generation == 2 and again.changed_ids != result.changed_ids


def test_mutate_without_population_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no population seeded"):
        mutate_population(tmp_path / "empty.sqlite3", None, fraction=0.1)


def test_audience_files_csv_and_parquet(population, tmp_path):
    db, result, _, memberships = population
    audience_ids = [result.audiences[0]["id"], result.audiences[2]["id"]]
    members = memberships[memberships["audience_id"].isin(audience_ids) & (memberships["status"] != "exited")]
    expected_rows = members["row"].nunique()
    csv_files = write_audience_files(
        db, tmp_path / "csv", "csv", audience_ids, ["realized", "existing"], part_rows=4000
    )
    assert len(csv_files) == -(-expected_rows // 4000) > 1
    with open(csv_files[0], newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    base = [
        "_id",
        "identityMap.Email",  # Adobe's namespace code, the seed's default
        "identityMap.ECID",
        "personalEmail.address",
        "person.name.firstName",
        "person.name.lastName",
        "workAddress.street1",
        "workAddress.city",
        "workAddress.country",
    ]
    membership = [f"segmentMembership.ups.{a}.{f}" for a in audience_ids for f in ("status", "lastQualificationTime")]
    assert reader.fieldnames == base + membership
    for row in rows[:300]:
        statuses = [row[f"segmentMembership.ups.{a}.status"] for a in audience_ids]
        assert any(s in ("realized", "existing") for s in statuses) and "exited" not in statuses
        for a in audience_ids:
            stamp = row[f"segmentMembership.ups.{a}.lastQualificationTime"]
            assert (stamp == "") == (row[f"segmentMembership.ups.{a}.status"] == "") and (
                not stamp or ISO_MS.match(stamp)
            )

    parquet_files = write_audience_files(db, tmp_path / "pq", "parquet", audience_ids, ["realized", "existing"])
    table = pa.concat_tables(pq.read_table(p) for p in parquet_files)
    csv_rows = sum(pacsv.read_csv(p).num_rows for p in csv_files)
    assert table.num_rows == expected_rows == csv_rows
    assert table.schema.field(membership[1]).type == pa.timestamp("ms", tz="UTC")
    with pytest.raises(ValueError, match="unknown audience ids: nope"):
        write_audience_files(db, tmp_path / "x", "csv", ["nope"])


def test_cli_seed_mutate_and_files(tmp_path):
    env = {"PYTHONPATH": f"{ROOT / 'include'}:{ROOT / 'plugins'}"}
    db = str(tmp_path / "aep.sqlite3")

    def cli(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "sandbox.seed", *args]
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)

    def run(*args: str) -> dict:
        done = cli(*args)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    seeded = run("--db", db, "--profiles", "1000", "--audiences", "2", "--seed", "4", "--dirty-rate", "0.01")
    assert seeded["profiles"] == 1000 and [a["name"] for a in seeded["audiences"]] == [
        "Gold Members",
        "Newsletter Subscribers",
    ]
    assert run("mutate", "--db", db, "--fraction", "0.01")["changed_profiles"] == 10
    files = run(
        "files",
        "--db",
        db,
        "--out",
        str(tmp_path / "out"),
        "--format",
        "csv",
        "--audiences",
        seeded["audiences"][0]["id"],
    )
    assert len(files["files"]) == 1 and files["files"][0].endswith(".csv")
    bad = cli("--db", db, "--dirty-rate", "0.5")
    assert bad.returncode == 2 and "dirty_rate" in bad.stderr


def test_cli_export_variants(tmp_path):
    """--email-namespace, --no-ids and --audience-namespaces: kept in the db, served by the audiences and
    used by the file export (the API export reads the same ``export_shape``)."""
    env = {"PYTHONPATH": f"{ROOT / 'include'}:{ROOT / 'plugins'}"}
    db = str(tmp_path / "aep.sqlite3")

    def run(*args: str) -> dict:
        done = subprocess.run([sys.executable, "-m", "sandbox.seed", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    seeded = run("--db", db, "--profiles", "300", "--audiences", "3", "--email-namespace", "email", "--no-ids",
                 "--audience-namespaces", "AEPSegments", "AAMSegments")
    assert [a["namespace"] for a in seeded["audiences"]] == ["AEPSegments", "AAMSegments", "AEPSegments"]
    bodies = [json.loads(r["body"]) for r in open_state(db).query("SELECT body FROM audiences ORDER BY seq")]
    assert [(b["type"], b["originName"]) for b in bodies] == [
        ("SegmentDefinition", "REAL_TIME_CUSTOMER_PROFILE"),
        ("ExternalAudience", "AUDIENCE_MANAGER"),
        ("SegmentDefinition", "REAL_TIME_CUSTOMER_PROFILE"),
    ]
    shape = export_shape(db)
    ids = [a["id"] for a in seeded["audiences"]]
    assert shape == ExportShape("email", False, {ids[0]: "ups", ids[1]: "AAMSegments", ids[2]: "ups"})
    files = run("files", "--db", db, "--out", str(tmp_path / "out"), "--format", "parquet", "--audiences", *ids)
    names = pq.read_schema(files["files"][0]).names
    assert "_id" not in names and names[0] == "identityMap.email"
    assert f"segmentMembership.AAMSegments.{ids[1]}.status" in names
    assert run("mutate", "--db", db, "--fraction", "0.01")["generation"] == 1
    assert export_shape(db) == shape  # a mutation keeps the variant
    defaults = export_shape(str(tmp_path / "empty.sqlite3"))
    assert defaults == ExportShape() and defaults.email_namespace == "Email" and defaults.with_ids


@pytest.mark.slow
def test_million_profiles_seed_in_well_under_a_minute(tmp_path):
    started = time.monotonic()
    result = seed_population(tmp_path / "aep.sqlite3", None, 1_000_000, 3, seed=42, dirty_rate=0.01)
    elapsed = time.monotonic() - started
    assert result.profiles == 1_000_000 and result.dirt["duplicate"] == 10_000
    assert elapsed < 30, f"seeding 1,000,000 profiles took {elapsed:.1f} s"
