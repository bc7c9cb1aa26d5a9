"""The scheduled run's configuration file and the audience property naming rule."""

from __future__ import annotations

import pytest
from audience_sync.config import (
    PROJECT_ROOT,
    ConfigError,
    check_input_size,
    expired_run_folders,
    load_sync_config,
    resolve_within_roots,
)
from audience_sync.errors import ConfigurationError, InputError
from audience_sync.incremental import read_registry, write_registry
from audience_sync.naming import (
    PropertyNameCollision,
    audience_property_name,
    audience_property_names,
    merge_registry,
)


def test_shipped_config_loads():
    config = load_sync_config()
    assert config.audiences and config.batch_size <= 100
    assert (config.max_exit_fraction, config.max_reject_fraction, config.retention_days) == (0.10, 0.05, 30)
    assert config.max_input_bytes == 10 * 2**30 and "person.birthDate" in config.blocked_fields
    base = "s3://aws_default@bucket/sync"
    assert config.roots(base) == [str(PROJECT_ROOT / "include"), base]
    assert config.resolve(config.mapping).endswith("include/mappings/default.yaml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("audiences: [a]\nbatchsize: 50\n", "unknown setting(s) batchsize"),
        ("batch_size: 250\n", "batch_size must be between 1 and 100"),
        ("hubspot_pool_slots: 0\n", "hubspot_pool_slots must be at least 1"),
        ("audiences: [a\n", "cannot read the sync configuration"),
        ("batch_size: 50\nbatch_size: 60\n", "found duplicate key 'batch_size'"),
        ("max_exit_fraction: 1.5\n", "max_exit_fraction must be a fraction between 0 and 1"),
        ("max_reject_fraction: nope\n", "max_reject_fraction must be a fraction"),
        ("retention_days: 0\n", "retention_days must be a positive integer"),
        ("max_input_bytes: 1.5\n", "max_input_bytes must be a positive integer"),
        ("blocked_fields: person.gender\n", "blocked_fields must be a list"),
        ("allowed_roots: [include, '']\n", "allowed_roots must be a list"),
        ("- a\n", "expected a mapping of settings"),
    ],
)
def test_bad_config_names_the_file_and_the_problem(tmp_path, text, message):
    path = tmp_path / "sync.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_sync_config(path)
    assert message in str(error.value) and str(path) in str(error.value)


def test_config_file_from_environment(tmp_path, monkeypatch):
    path = tmp_path / "other.yaml"
    path.write_text("audiences: [Only One]\nschedule: null\n")
    monkeypatch.setenv("AUDIENCE_SYNC_CONFIG", str(path))
    config = load_sync_config()
    assert config.audiences == ["Only One"] and config.schedule is None


@pytest.mark.parametrize(
    ("name", "prefix", "expected"),
    [
        ("Gold Members (EU)", "aep_", "aep_gold_members_eu"),
        ("city", "aep_", "aep_city"),
        ("Café Crème — Q3", "aep_", "aep_cafe_creme_q3"),
        ("2026 buyers", "", "a_2026_buyers"),
        ("x" * 300, "aep_", "aep_" + "x" * 96),
    ],
)
def test_property_names(name, prefix, expected):
    assert audience_property_name(name, prefix) == expected


def test_name_without_letters_or_digits_is_refused():
    with pytest.raises(ConfigurationError, match="no letters or digits"):
        audience_property_name("***")


def test_two_audiences_with_one_property_name_are_refused():
    with pytest.raises(PropertyNameCollision) as error:
        audience_property_names([{"id": "1", "name": "Gold Members"}, {"id": "2", "name": "gold-members"}])
    assert "Gold Members" in str(error.value) and "gold-members" in str(error.value) and "aep_gold_members" in str(error.value)


def test_registry_keeps_the_first_name_when_an_audience_is_renamed(tmp_path):
    path = str(tmp_path / "audience_properties.json")
    assert read_registry(path) == {}
    first = audience_property_names([{"id": "1", "name": "Gold Members"}], "aep_", read_registry(path))
    write_registry(path, merge_registry(read_registry(path), first))
    renamed = audience_property_names(
        [{"id": "1", "name": "Platinum Members"}, {"id": "2", "name": "Churn"}], "aep_", read_registry(path)
    )
    assert renamed == {"1": "aep_gold_members", "2": "aep_churn"}
    write_registry(path, merge_registry(read_registry(path), renamed))
    assert read_registry(path) == {"1": "aep_gold_members", "2": "aep_churn"}
    # a new audience taking a registered name collides, even when the owner is not in this run
    with pytest.raises(PropertyNameCollision) as error:
        audience_property_names([{"id": "3", "name": "Gold Members"}], "aep_", read_registry(path))
    assert "aep_gold_members" in str(error.value) and "(1)" in str(error.value) and "(3)" in str(error.value)


def test_unreadable_registry_is_an_input_error(tmp_path):
    path = tmp_path / "audience_properties.json"
    path.write_text("{not json")
    with pytest.raises(InputError, match="registry"):
        read_registry(str(path))
    path.write_text('["aep_gold"]')
    with pytest.raises(InputError, match="JSON object"):
        read_registry(str(path))


ROOTS = [str(PROJECT_ROOT / "include"), "/srv/sync-data", "s3://aws_default@bucket/exports"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("include/mappings/default.yaml", str(PROJECT_ROOT / "include/mappings/default.yaml")),
        ("/srv/sync-data/exports/*.csv", "/srv/sync-data/exports/*.csv"),
        ("s3://aws_default@bucket/exports/2026/part-*.parquet", "s3://aws_default@bucket/exports/2026/part-*.parquet"),
    ],
)
def test_paths_inside_the_allowed_roots(value, expected):
    assert resolve_within_roots(value, ROOTS) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("include/../dags/x.yaml", "contains '..'"),
        ("/srv/sync-data/../../etc/passwd", "contains '..'"),
        ("s3://aws_default@bucket/exports/../secret", "contains '..'"),
        ("/etc/passwd", "outside the allowed roots"),
        ("/srv/sync-data-other/x.csv", "outside the allowed roots"),
        ("dags/hubspot_audience_sync.py", "outside the allowed roots"),
        ("s3://aws_default@bucket/exports-evil/x.csv", "outside the allowed roots"),
        ("gs://bucket/exports/x.csv", "outside the allowed roots"),
        ("  ", "empty path"),
    ],
)
def test_paths_outside_the_allowed_roots_are_refused(value, message):
    with pytest.raises(ConfigurationError, match=message):
        resolve_within_roots(value, ROOTS)


def test_a_symlink_out_of_a_root_is_refused(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "escape").symlink_to("/etc")
    with pytest.raises(ConfigurationError, match="outside the allowed roots"):
        resolve_within_roots(str(root / "escape" / "passwd"), [str(root)])


def test_input_size_cap(tmp_path):
    check_input_size("part-00000.parquet", 100, 100)
    with pytest.raises(InputError) as error:
        check_input_size("part-00000.parquet", 101, 100)
    assert "part-00000.parquet is 101 bytes" in str(error.value) and "max_input_bytes" in str(error.value)


def test_expired_run_folders():
    now = 1_000 * 86_400.0
    day = 86_400
    folders = [("new", now - day), ("old", now - 31 * day), ("older", now - 90 * day), ("edge", now - 30 * day)]
    assert expired_run_folders(folders, now, 30) == ["older", "old"]
    assert expired_run_folders([], now, 30) == []
