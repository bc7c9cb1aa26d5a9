"""The scheduled run's configuration file and the audience property naming rule."""

from __future__ import annotations

import pytest
from audience_sync.config import ConfigError, load_sync_config
from audience_sync.naming import PropertyNameCollision, audience_property_name, audience_property_names


def test_shipped_config_loads():
    config = load_sync_config()
    assert config.audiences and config.batch_size <= 100
    assert config.resolve(config.mapping).endswith("include/mappings/default.yaml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("audiences: [a]\nbatchsize: 50\n", "unknown setting(s) batchsize"),
        ("batch_size: 250\n", "batch_size must be between 1 and 100"),
        ("hubspot_pool_slots: 0\n", "hubspot_pool_slots must be at least 1"),
        ("audiences: [a\n", "cannot read the sync configuration"),
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
    with pytest.raises(ValueError, match="no letters or digits"):
        audience_property_name("***")


def test_two_audiences_with_one_property_name_are_refused():
    with pytest.raises(PropertyNameCollision) as error:
        audience_property_names([{"id": "1", "name": "Gold Members"}, {"id": "2", "name": "gold-members"}])
    assert "Gold Members" in str(error.value) and "gold-members" in str(error.value) and "aep_gold_members" in str(error.value)
