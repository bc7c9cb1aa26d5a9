"""The audience property-name registry that map_contacts reads and ensure_audience_properties writes, on
local and object storage (Airflow's ``memory://`` filesystem stands in for a bucket)."""

from __future__ import annotations

import json
import uuid

import pytest
from audience_sync import storage
from audience_sync.errors import InputError
from audience_sync.naming import audience_property_names
from audience_sync.operators.sync import read_property_registry, record_property_names


@pytest.mark.parametrize("base", ["local", "memory"])
def test_a_renamed_audience_keeps_the_name_recorded_first(base, monkeypatch):
    if base == "memory":
        from airflow.sdk.io import attach
        from fsspec.implementations.memory import MemoryFileSystem

        attach("memory", fs=MemoryFileSystem())  # what a provider does for s3:// or gs://
        monkeypatch.setenv("AUDIENCE_SYNC_BASE_PATH", f"memory://registry-{uuid.uuid4().hex}")
    assert read_property_registry("dag") == {}
    first = audience_property_names([{"id": "a1", "name": "Gold Members"}, {"id": "a2", "name": "Churn"}])
    record_property_names("dag", first)
    renamed = [{"id": "a1", "name": "Gold VIP"}, {"id": "a3", "name": "New One"}]  # a2 not in this run
    names = audience_property_names(renamed, registry=read_property_registry("dag"))
    assert names == {"a1": "aep_gold_members", "a3": "aep_new_one"}
    record_property_names("dag", names)
    stored = json.loads((storage.state_folder("dag") / "audience_properties.json").read_text())
    assert stored == {"a1": "aep_gold_members", "a2": "aep_churn", "a3": "aep_new_one"}


def test_an_unreadable_registry_fails_naming_it_and_the_way_out():
    (storage.state_folder("dag") / "audience_properties.json").write_text("{not json")
    with pytest.raises(InputError, match=r"audience_properties.json is unreadable .* delete it"):
        read_property_registry("dag")
