"""The bad-input corpus (tests/data/bad_inputs/, listed in tests/data/README.md): every case ends in
a clear error of one of the product's error types naming the file, field or audience and the reason,
or in rejects that each carry a category and a reason; never in a partial write without a report.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from audience_sync import file_exports, incremental, mapping
from audience_sync.clients.aep import AepClient, UnknownAudienceError
from audience_sync.config import ConfigError, check_input_size, load_sync_config, resolve_within_roots
from audience_sync.errors import ConfigurationError, InputError, PermanentError
from audience_sync.hooks.aep import AepHook
from audience_sync.naming import PropertyNameCollision, audience_property_names
from audience_sync.operators.hubspot import EnsureAudiencePropertiesOperator, PropertySetupError
from audience_sync.upsert import upsert_file
from e2e_support import ROOT, load_dag, write_requests
from reliability_checks import assert_rejects_explained

CORPUS = Path(__file__).resolve().parents[1] / "data" / "bad_inputs"
DEFAULT_MAPPING = ROOT / "include" / "mappings" / "default.yaml"
AUDIENCES = {"aud-gold": "aep_gold_members"}


def assert_clear(error: BaseException, *names: str) -> None:
    """A product error (a PermanentError or ValueError subclass, not a bare built-in) whose message
    names the cause."""
    assert isinstance(error, (PermanentError, ValueError)) and type(error) is not ValueError, type(error)
    message = str(error)
    assert message and "Traceback" not in message
    for name in names:
        assert name in message, f"{name!r} not in {message!r}"


def map_file(name: str, tmp_path: Path, mapping_path: Path = DEFAULT_MAPPING, audiences=AUDIENCES) -> mapping.MapResult:
    """A file-based export as the DAG treats it: converted to the export schema, then mapped."""
    source = CORPUS / name
    with source.open("rb") as handle:
        table = file_exports.read_export_file(handle, str(source))
    tmp_path.mkdir(parents=True, exist_ok=True)
    part = tmp_path / "part-00000.parquet"
    pq.write_table(table, part)
    return mapping.map_export([str(part)], mapping.load_mapping(mapping_path), audiences, out_dir=str(tmp_path / "map"))


# name → (error type, fragments the message must hold)
FILE_ERRORS = {
    "export_wrong_types.parquet": (file_exports.ExportFileError, ["do not match the export schema"]),
    "export_corrupt.parquet": (file_exports.ExportFileError, ["not a readable Parquet file"]),
    "export_truncated.parquet": (file_exports.ExportFileError, ["not a readable Parquet file"]),
    "export_zero_bytes.csv": (file_exports.ExportFileError, ["not a readable CSV file"]),
    "export_invalid_utf8.csv": (file_exports.ExportFileError, ["invalid UTF-8", "line 3, column 22"]),
    "export_bad_timestamp.csv": (
        file_exports.ExportFileError,
        ["row 2", "lastQualificationTime", "'yesterday at noon' is not an ISO 8601 timestamp"],
    ),
    "export_bad_boolean.csv": (file_exports.ExportFileError, ["identityMap.email.primary", "'maybe' is not a boolean"]),
    "export_unsupported_type.json": (file_exports.ExportFileError, ["unsupported file type"]),
}


@pytest.mark.parametrize("name", sorted(FILE_ERRORS))
def test_unreadable_export_file_fails_naming_file_and_cause(name, tmp_path):
    kind, fragments = FILE_ERRORS[name]
    with pytest.raises(kind) as error:
        map_file(name, tmp_path)
    assert_clear(error.value, name, *fragments)
    assert not (tmp_path / "map").exists()  # nothing mapped, so nothing can be sent


# name → rejects expected by category
FILE_REJECTS = {
    "export_no_email.csv": {"MISSING_EMAIL": 1},
    "export_value_too_long.csv": {"VALUE_TOO_LONG": 1},
    "export_bad_emails.csv": {"MISSING_EMAIL": 1, "INVALID_EMAIL": 1, "DUPLICATE_EMAIL": 1},
}


@pytest.mark.parametrize("name", sorted(FILE_REJECTS))
def test_bad_records_are_rejected_with_reasons(name, tmp_path):
    result = map_file(name, tmp_path)
    assert result.counts["rejected_by_category"] == FILE_REJECTS[name]
    assert assert_rejects_explained(tmp_path / "map") == sum(FILE_REJECTS[name].values())
    mapped = sum(pq.read_metadata(p).num_rows for p in result.mapped_paths)
    assert mapped == result.counts["valid"] == result.counts["exported"] - result.counts["rejected"]


@pytest.mark.parametrize(
    ("name", "ids"),
    [("export_no_id.csv", {"email:ada@example.com"}), ("export_row_without_id.csv", {"p1", "email:bob@example.com"})],
)
def test_profiles_without_id_are_mapped_under_their_primary_identity(name, ids, tmp_path):
    """Nothing documents that an export carries ``_id`` (issue 12): the profile id falls back to the identity."""
    result = map_file(name, tmp_path)
    assert result.counts["valid"] == result.counts["exported"] == len(ids)
    assert {i for p in result.mapped_paths for i in pq.read_table(p)["_profile_id"].to_pylist()} == ids


def test_value_over_the_length_limit_is_rejected_naming_the_property(tmp_path):
    result = map_file("export_value_too_long.csv", tmp_path)
    (reject,) = pq.read_table(result.rejects_path).to_pylist()
    assert reject["record_id"] == "p2" and "lastname" in reject["reason"] and "65537" in reject["reason"]


def test_empty_export_maps_to_nothing_and_says_so(tmp_path):
    result = map_file("export_empty.csv", tmp_path)
    assert result.counts["exported"] == 0 and result.counts["valid"] == 0
    assert sum(pq.read_metadata(p).num_rows for p in result.mapped_paths) == 0


MAPPING_ERRORS = {
    "mapping_malformed.yaml": (mapping.MappingError, ["not valid YAML", "line 4"]),
    "mapping_not_a_mapping.yaml": (mapping.MappingError, ["'fields' list"]),
    "mapping_blocked_field.yaml": (mapping.GovernanceError, ["person.birthDate", "date_of_birth"]),
    "mapping_duplicate_target.yaml": (mapping.MappingError, ["'firstname' is already written by row 2"]),
    "mapping_no_email.yaml": (mapping.MappingError, ["no row with target 'email'"]),
    "mapping_optional_email.yaml": (mapping.MappingError, ["email row cannot be optional"]),
    "mapping_bad_version.yaml": (mapping.MappingError, ["version 2 is not supported"]),
    "mapping_bad_target_name.yaml": (mapping.MappingError, ["'First Name' is not a HubSpot property name"]),
    "mapping_duplicate_keys.yaml": (mapping.MappingError, ["found duplicate key 'governance'", "line 8"]),
}


@pytest.mark.parametrize("name", sorted(MAPPING_ERRORS))
def test_bad_mapping_file_fails_naming_file_and_cause(name):
    kind, fragments = MAPPING_ERRORS[name]
    with pytest.raises(kind) as error:
        mapping.load_mapping(CORPUS / name)
    assert_clear(error.value, name, *fragments)


@pytest.mark.parametrize(
    ("name", "fragments"),
    [
        ("mapping_missing_xdm_path.yaml", ["person.name.middleName", "missing from the export"]),
        ("mapping_audience_target.yaml", ["aep_gold_members", "mapping_audience_target.yaml"]),
    ],
)
def test_mapping_that_does_not_fit_the_export_fails_before_writing(name, fragments, tmp_path):
    with pytest.raises(mapping.MappingError) as error:
        map_file("export_bad_emails.csv", tmp_path, CORPUS / name)
    assert_clear(error.value, *fragments)
    assert not list((tmp_path / "map").rglob("*.parquet"))


@pytest.mark.parametrize(
    ("name", "fragments"),
    [
        ("config_batch_size_too_big.yaml", ["batch_size must be between 1 and 100"]),
        ("config_unknown_setting.yaml", ["unknown setting(s) batch_sise"]),
        ("config_duplicate_keys.yaml", ["found duplicate key 'max_exit_fraction'", "first at line 1"]),
    ],
)
def test_bad_sync_configuration_fails_naming_the_setting(name, fragments):
    with pytest.raises(ConfigError) as error:
        load_sync_config(CORPUS / name)
    assert_clear(error.value, name, *fragments)


def test_audiences_whose_names_sanitise_alike_are_refused():
    with pytest.raises(PropertyNameCollision) as error:
        audience_property_names([{"id": "a1", "name": "Gold Members"}, {"id": "a2", "name": "gold-members!"}])
    assert_clear(error.value, "'Gold Members' (a1)", "'gold-members!' (a2)", "aep_gold_members")


def test_audience_name_without_letters_is_refused():
    with pytest.raises(ValueError, match=r"'!!!' has no letters or digits"):
        audience_property_names([{"id": "a1", "name": "!!!"}])


@pytest.mark.parametrize("batch_size", [0, 101])
def test_batch_size_out_of_range_is_refused_before_any_call(batch_size, tmp_path):
    with pytest.raises(ValueError, match=f"batch_size must be between 1 and 100, got {batch_size}"):
        upsert_file(None, str(tmp_path / "chunk-0000.parquet"), tmp_path / "out", batch_size=batch_size)


@pytest.mark.parametrize(("param", "value"), [("batch_size", 500), ("batch_size", 0), ("audiences", [])])
def test_bad_run_params_are_refused_by_the_dag(param, value):
    from airflow.sdk.exceptions import ParamValidationError

    params = load_dag().params
    with pytest.raises(ParamValidationError) as error:
        params[param] = value
    assert param in str(error.value) or str(value) in str(error.value)


# --- issue 13: guards before any write --------------------------------------------------------------
def snapshot_from(name: str, tmp_path: Path, audiences=AUDIENCES) -> str:
    """The snapshot a previous good run of the ``name`` export would have left."""
    result = map_file(name, tmp_path / "before", audiences=audiences)
    planned = incremental.plan(result.mapped_paths, None, list(audiences.values()), False, str(tmp_path / "p0"))
    return planned.next_snapshot_path


def test_empty_export_against_a_non_empty_snapshot_is_blocked(tmp_path):
    previous = snapshot_from("export_bad_emails.csv", tmp_path)
    result = map_file("export_empty.csv", tmp_path)
    planned = incremental.plan(result.mapped_paths, previous, list(AUDIENCES.values()), False, str(tmp_path / "p"))
    with pytest.raises(incremental.MassChangeBlocked) as error:
        incremental.check_mass_change(planned.counts, result.counts, 0.10, 0.05)
    assert_clear(error.value, "the export is empty", "1 contacts", "allow_mass_change", "nothing was written")


def test_identity_namespace_rejecting_every_profile_is_blocked(tmp_path):
    result = map_file("export_wrong_identity_namespace.csv", tmp_path)
    assert result.counts["rejected_by_category"] == {"MISSING_EMAIL": 2} and result.counts["valid"] == 0
    planned = incremental.plan(result.mapped_paths, None, list(AUDIENCES.values()), False, str(tmp_path / "p"))
    with pytest.raises(incremental.MassChangeBlocked) as error:
        incremental.check_mass_change(planned.counts, result.counts, 0.10, 0.05)
    assert_clear(error.value, "2 of 2 exported profiles were rejected", "100.0%", "max_reject_fraction")


def test_oversized_input_file_is_refused_before_reading():
    path = CORPUS / "export_value_too_long.csv"
    with pytest.raises(InputError) as error:
        check_input_size(str(path), path.stat().st_size, 64 * 1024)
    size = f"{path.stat().st_size:,} bytes"
    assert_clear(error.value, "export_value_too_long.csv", size, "65,536 bytes", "max_input_bytes")


@pytest.mark.parametrize(
    "value",
    [str(CORPUS / "mapping_no_email.yaml"), "include/../tests/data/bad_inputs/mapping_no_email.yaml", "/etc/passwd"],
)
def test_mapping_or_source_paths_outside_the_allowed_roots_are_refused(value):
    roots = load_sync_config().roots("s3://aws_default@bucket/sync")
    with pytest.raises(ConfigurationError) as error:
        resolve_within_roots(value, roots)
    assert_clear(error.value, value)


def test_corrupt_snapshot_fails_with_a_clear_error(tmp_path):
    result = map_file("export_bad_emails.csv", tmp_path)
    snapshot = str(CORPUS / "snapshot_corrupt.parquet")
    with pytest.raises(InputError) as error:
        incremental.plan(result.mapped_paths, snapshot, list(AUDIENCES.values()), False, str(tmp_path / "p"))
    assert_clear(error.value, "snapshot_corrupt.parquet", "not a readable Parquet file", "full_refresh")


SPLIT = {"aud-gold": "aep_gold_members", "aud-churn": "aep_churn_risk"}


def map_split(tmp_path: Path) -> mapping.MapResult:
    parts = []
    for number, name in enumerate(["export_split_profile_gold.csv", "export_split_profile_churn.csv"]):
        with (CORPUS / name).open("rb") as handle:
            table = file_exports.read_export_file(handle, name)
        parts.append(tmp_path / f"part-{number:05d}.parquet")
        pq.write_table(table, parts[-1])
    rules = mapping.load_mapping(DEFAULT_MAPPING)
    return mapping.map_export([str(p) for p in parts], rules, SPLIT, str(tmp_path / "map"))


def test_profile_split_across_per_audience_files_keeps_both_memberships(tmp_path):
    """One profile (same _id and email) in two per-audience files: one contact with both statuses, the
    other row merged (counted, never a reject and never dropped silently)."""
    result = map_split(tmp_path)
    (row,) = pq.read_table(result.mapped_paths[0]).to_pylist()
    assert (row["aep_gold_members"], row["aep_churn_risk"]) == ("realized", "realized")
    assert (row["email"], row["firstname"], row["_profile_id"]) == ("ada@example.com", "Ada", "p1")
    assert result.counts["merged"] == 1 and result.counts["rejected"] == 0 and result.counts["valid"] == 1
    assert pq.read_table(result.rejects_path).num_rows == 0


def test_contacts_deleted_or_merged_in_hubspot_leave_the_snapshot(tmp_path):
    previous = snapshot_from("export_bad_emails.csv", tmp_path)
    result = map_file("export_empty.csv", tmp_path)
    planned = incremental.plan(result.mapped_paths, previous, list(AUDIENCES.values()), False, str(tmp_path / "p"))
    (sent,) = [pq.read_table(p).to_pylist() for p in planned.send_paths]
    assert [(r["email"], r["_write"]) for r in sent] == [("ada@example.com", "update")]  # never a create
    candidate, counts = incremental.build_candidate(
        planned.next_snapshot_path, [], ["ada@example.com"], previous, False, str(tmp_path / "candidate.parquet")
    )
    assert counts["gone_in_hubspot"] == 1
    assert incremental.expected_counts(candidate, list(AUDIENCES.values())) == {"aep_gold_members": {}}


# --- against the sandboxes ------------------------------------------------------------------------
def test_unknown_and_zero_audiences_fail_naming_them(aep_conn):
    client = AepClient(AepHook())
    with pytest.raises(UnknownAudienceError) as unknown:
        client.resolve_audiences(["No Such Audience"])
    assert_clear(unknown.value, "No Such Audience")
    with pytest.raises(UnknownAudienceError) as none:
        client.resolve_audiences([])
    assert_clear(none.value, "no audience given")


def writes(hubspot) -> list[dict]:
    return write_requests(hubspot.admin("GET", "requests")["requests"])


def test_mapping_to_a_missing_property_leaves_hubspot_untouched(hubspot_conn):
    targets = mapping.load_mapping(CORPUS / "mapping_unknown_property.yaml").target_properties
    operator = EnsureAudiencePropertiesOperator(
        task_id="ensure", audiences=[{"id": "aud-gold", "name": "Gold Members"}], target_properties=targets
    )
    with pytest.raises(PropertySetupError) as error:
        operator.execute({})
    assert_clear(error.value, "favourite_colour", "do not exist", "nothing was written")
    assert writes(hubspot_conn) == []


def test_audience_property_name_taken_by_another_property_leaves_hubspot_untouched(hubspot_conn):
    from audience_sync.clients.hubspot import HubSpotClient
    from audience_sync.hooks.hubspot import HubSpotHook

    HubSpotClient(HubSpotHook()).create_property(
        {
            "name": "aep_gold_members",
            "label": "Gold",
            "type": "string",
            "fieldType": "text",
            "groupName": "contactinformation",
        }
    )
    before = len(writes(hubspot_conn))
    operator = EnsureAudiencePropertiesOperator(
        task_id="ensure", audiences=[{"id": "aud-gold", "name": "Gold Members"}], target_properties=["email"]
    )
    with pytest.raises(PropertySetupError) as error:
        operator.execute({})
    assert_clear(error.value, "aep_gold_members", "contactinformation", "nothing was written")
    assert len(writes(hubspot_conn)) == before
