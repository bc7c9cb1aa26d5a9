"""File-based audience exports (CSV and Parquet, as the sandbox's `seed files` writes them) → the export schema."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sandbox import aep_store, seed

from audience_sync import file_exports
from audience_sync.errors import InputError, PermanentError

# identityMap's authenticatedState / primary are not in flat files: compare everything else.
COMPARED = ["_id", "personalEmail", "person", "workAddress", "segmentMembership"]


def identity_ids(table: pa.Table) -> list:
    return [
        sorted((ns, [i["id"] for i in ids]) for ns, ids in (row or [])) for row in table["identityMap"].to_pylist()
    ]


def convert(paths) -> pa.Table:
    tables = []
    for path in paths:
        with open(path, "rb") as handle:
            tables.append(file_exports.read_export_file(handle, str(path)))
    return pa.concat_tables(tables)


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    folder = tmp_path_factory.mktemp("aep_files")
    db = folder / "aep.sqlite3"
    result = seed.seed_population(db, profiles=3000, audiences=3, seed=7, dirty_rate=0.01)
    ids = [a["id"] for a in result.audiences]
    files = {
        fmt: seed.write_audience_files(db, folder / fmt, fmt, ids, part_rows=1000) for fmt in ("csv", "parquet")
    }
    profiles, memberships = aep_store.load_population(aep_store.default_data_dir(db))
    api_shape = aep_store.build_export_table(profiles, memberships, ids, list(aep_store.MEMBERSHIP_STATUSES))
    return files, api_shape


def test_csv_and_parquet_files_give_the_api_export_rows(population):
    files, api_shape = population
    assert len(files["csv"]) > 1 and len(files["parquet"]) > 1
    from_csv, from_parquet = convert(files["csv"]), convert(files["parquet"])
    assert from_csv.schema.equals(file_exports.EXPORT_SCHEMA)
    assert from_parquet.schema.equals(file_exports.EXPORT_SCHEMA)
    assert from_csv.num_rows == from_parquet.num_rows == api_shape.num_rows
    assert from_csv.equals(from_parquet)
    assert from_csv.select(COMPARED).equals(api_shape.select(COMPARED))
    assert identity_ids(from_csv) == identity_ids(api_shape)


def test_audience_ids_lists_the_audiences_with_members(population):
    files, api_shape = population
    ids = file_exports.audience_ids(api_shape)
    assert len(ids) == 3
    assert file_exports.audience_ids(api_shape.slice(0, 0)) == set()
    first = api_shape.slice(5, 1)["segmentMembership"].to_pylist()[0]
    assert file_exports.audience_ids(api_shape.slice(5, 1)) == {key for _, inner in first for key, _ in inner}


def test_invalid_utf8_names_file_line_and_byte(tmp_path):
    path = tmp_path / "audience-export-00000.csv"
    path.write_bytes(b"_id,personalEmail.address\np1,a@example.com\np2,b\xff@example.com\n")
    with pytest.raises(file_exports.ExportFileError) as error, open(path, "rb") as handle:
        file_exports.read_export_file(handle, str(path))
    message = str(error.value)
    assert str(path) in message and "line 3" in message and "byte 47" in message and "column 5" in message


def test_unreadable_parquet_and_bad_timestamp_are_named(tmp_path):
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(file_exports.ExportFileError, match="broken.parquet: not a readable Parquet file"):
        file_exports.read_export_file(io.BytesIO(broken.read_bytes()), str(broken))
    csv = b"_id,segmentMembership.ups.a1.status,segmentMembership.ups.a1.lastQualificationTime\np1,realized,yesterday\n"
    expected = r"x\.csv: row 1 column .*lastQualificationTime.*'yesterday'"
    with pytest.raises(file_exports.ExportFileError, match=expected):
        file_exports.read_export_file(io.BytesIO(csv), "x.csv")


def test_nested_parquet_is_cast_to_the_contract(population, tmp_path):
    """A nested export written with other timestamp units still comes out in exactly the contract's types."""
    _, api_shape = population
    micro = pa.map_(pa.string(), pa.map_(pa.string(), pa.struct(
        [("status", pa.string()), ("lastQualificationTime", pa.timestamp("us", tz="UTC"))])))
    other = api_shape.set_column(5, "segmentMembership", api_shape["segmentMembership"].cast(micro))
    path = tmp_path / "nested.parquet"
    pq.write_table(other, path)
    with open(path, "rb") as handle:
        table = file_exports.read_export_file(handle, str(path))
    assert table.schema.equals(file_exports.EXPORT_SCHEMA)
    assert table.equals(api_shape)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_files_without_id_in_other_namespaces(tmp_path, fmt):
    """Files without ``_id``, the email identity under ``email`` and an Audience Manager audience under ``AAM``
    convert to the API export of the same variant, ``_id`` left null."""
    db = tmp_path / "aep.sqlite3"
    result = seed.seed_population(db, profiles=600, audiences=2, seed=5, dirty_rate=0.01, email_namespace="email",
                                  export_ids=False, audience_namespaces=["AEPSegments", "AAM"])
    ids = [a["id"] for a in result.audiences]
    files = seed.write_audience_files(db, tmp_path / fmt, fmt, ids)
    if fmt == "parquet":
        header = pq.read_schema(files[0]).names
    else:
        header = files[0].read_text().splitlines()[0].replace('"', "").split(",")
    assert "_id" not in header and "identityMap.email" in header
    assert f"segmentMembership.AAM.{ids[1]}.status" in header and f"segmentMembership.ups.{ids[0]}.status" in header
    table = convert(files)
    shape = aep_store.export_shape(db)
    profiles, memberships = aep_store.load_population(aep_store.default_data_dir(db))
    api_shape = aep_store.build_export_table(profiles, memberships, ids, list(aep_store.MEMBERSHIP_STATUSES), shape)
    assert "_id" not in api_shape.column_names and table["_id"].null_count == table.num_rows
    assert table.select(COMPARED[1:]).equals(api_shape.select(COMPARED[1:]))
    assert identity_ids(table) == identity_ids(api_shape)
    assert {ns for row in table["segmentMembership"].to_pylist() for ns, _ in row or []} == {"ups", "AAM"}
    assert file_exports.audience_ids(table) == set(ids)


def test_a_requested_audience_without_members_is_an_error():
    audiences = [{"id": "a1", "name": "Gold"}, {"id": "a2", "name": "Churn Risk"}, {"id": "a3", "name": "VIP"}]
    file_exports.check_audiences_found({"a1", "a2", "a3"}, audiences)
    with pytest.raises(InputError, match=r"'Churn Risk' \(a2\), 'VIP' \(a3\) have no member") as error:
        file_exports.check_audiences_found({"a1", "other"}, audiences)
    assert isinstance(error.value, PermanentError)
    with pytest.raises(InputError, match="'Gold'"):
        file_exports.check_audiences_found(set(), audiences[:1])  # an empty export names every audience


def test_file_errors_are_input_errors():
    assert issubclass(file_exports.ExportFileError, InputError)
