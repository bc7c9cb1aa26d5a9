"""The ingest's pure module: config and mapping files, request bodies, verification and run summaries."""

from __future__ import annotations

import pytest
import yaml
from audience_sync import ingest
from audience_sync.errors import ConfigurationError, PermanentError

CONTACTS = ingest.IngestObject(
    "Hubspot.Contacts", "https://ns.adobe.com/t/schemas/c", None, "HubSpot contacts", "Updated_At"
)


def write_config(tmp_path, mapping_rows=None, **overrides):
    mapping = tmp_path / "map.yaml"
    mapping.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "objects": {
                    "Hubspot.Contacts": mapping_rows
                    or [{"source": "Properties_Email_Value", "destination": "personalEmail.address"}]
                },
            }
        )
    )
    config = {
        "mapping_file": str(mapping),
        "objects": [{"path": "Hubspot.Contacts", "schema_id": CONTACTS.schema_id, "delta_column": "Updated_At"}],
        **overrides,
    }
    path = tmp_path / "ingest.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_shipped_config_and_mapping_load():
    config = ingest.load_ingest_config()
    assert [o.path for o in config.objects] == ["Hubspot.Contacts", "Hubspot.Companies"]
    assert ("Properties_Email_Value", "personalEmail.address") in config.mappings["Hubspot.Contacts"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"flow": {"frequency": "minute", "interval": 5}}, "at least 15"),
        ({"flow": {"frequency": "monthly"}}, "flow.frequency"),
        ({"runs": {"mode": "trigger"}}, "one-time"),
        ({"runs": {"mode": "sometimes"}}, "runs.mode"),
        ({"colour": "blue"}, "unknown setting(s) colour"),
        ({"objects": []}, "at least one HubSpot table"),
        ({"objects": [{"path": "Hubspot.Contacts"}]}, "schema_id is required"),
        ({"objects": [{"path": "Hubspot.Deals", "schema_id": "s", "delta_column": "d"}]}, "no rows for Hubspot.Deals"),
    ],
)
def test_bad_settings_are_named(tmp_path, overrides, message):
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ingest.load_ingest_config(write_config(tmp_path, **overrides))


def test_a_setting_given_twice_is_refused_not_overwritten(tmp_path):
    path = write_config(tmp_path)
    path.write_text(path.read_text() + "name_prefix: one\nname_prefix: two\n")
    with pytest.raises(ConfigurationError, match=r"(?s)cannot read the ingest configuration .*duplicate key .name_prefix."):
        ingest.load_ingest_config(path)


def test_bad_mapping_rows_are_named(tmp_path):
    twice = [{"source": "A", "destination": "x.y"}, {"source": "B", "destination": "x.y"}]
    with pytest.raises(ConfigurationError, match=r"objects.Hubspot.Contacts\[1\]: XDM field 'x.y' is mapped twice"):
        ingest.load_ingest_config(write_config(tmp_path, mapping_rows=twice))
    with pytest.raises(ConfigurationError, match="exactly the keys source and destination"):
        ingest.load_ingest_config(write_config(tmp_path, mapping_rows=[{"source": "A"}]))


def test_mapping_set_name_changes_with_its_rows(tmp_path):
    one = ingest.load_ingest_config(write_config(tmp_path))
    two = ingest.load_ingest_config(write_config(tmp_path, mapping_rows=[{"source": "Id", "destination": "_t.id"}]))
    assert one.mapping_name(one.objects[0]) != two.mapping_name(two.objects[0])
    assert one.mapping_name(one.objects[0]).startswith("HubSpot to AEP (Airflow): Contacts mapping ")


def test_bodies_follow_the_tutorial_and_the_spec():
    assert ingest.source_connection_body("s", "base", CONTACTS)["data"] == {"format": "tabular"}
    assert (
        ingest.target_connection_body("t", CONTACTS, "ds")["connectionSpec"]["id"]
        == ingest.DATA_LAKE_CONNECTION_SPEC_ID
    )
    config = ingest.IngestConfig(objects=(CONTACTS,), mappings={}, frequency="minute", interval=15)
    assert ingest.schedule_params(config, 1_700_000_000.7) == {
        "startTime": 1_700_000_000,
        "frequency": "minute",
        "interval": "15",
        "backfill": True,
    }
    once = ingest.IngestConfig(objects=(CONTACTS,), mappings={}, frequency="once", start_time=5)
    assert ingest.schedule_params(once, 0) == {"startTime": 5, "frequency": "once", "backfill": True}
    flow = ingest.flow_body("f", CONTACTS, "s", "t", "m", 0, {})
    assert [t["name"] for t in flow["transformations"]] == ["Copy", "Mapping"]
    assert flow["transformations"][0]["params"]["deltaColumn"]["name"] == "Updated_At"


def test_catalog_answer_gives_the_dataset_id():
    assert ingest.dataset_id_from_created(["@/dataSets/5f0c0e1e2a3b"]) == "5f0c0e1e2a3b"
    with pytest.raises(PermanentError, match="names no dataset"):
        ingest.dataset_id_from_created([])


def test_flow_differences_name_each_difference():
    wanted = ingest.flow_body("f", CONTACTS, "s", "t", "m", 0, {})
    assert ingest.flow_differences({**wanted, "state": "enabled"}, wanted) == []
    other = {
        **wanted,
        "sourceConnectionIds": ["x"],
        "state": "disabled",
        "transformations": [{"name": "Mapping", "params": {"mappingId": "old"}}],
    }
    problems = ingest.flow_differences(other, wanted)
    assert any("sourceConnectionIds" in p for p in problems) and any("'old'" in p for p in problems)
    assert any("disabled" in p for p in problems)


def test_preview_log_line_has_no_values():
    table = {"schema": {"columns": [{"name": "Email", "type": "string"}]}, "data": [{"Email": "a@b.example"}]}
    preview = ingest.TablePreview(
        "Hubspot.Contacts", ingest.table_columns(table), len(ingest.preview_rows(table)), None
    )
    assert preview.log_line() == "Hubspot.Contacts: 1 column(s), 1 preview row(s): Email (string)"
    assert ingest.ExploreResult.from_xcom(ingest.ExploreResult("b", ["p"], [preview]).to_xcom()).columns(
        "Hubspot.Contacts"
    ) == {"Email"}


def run(run_id, status, started, read=0, written=0, failed=0, errors=None):
    return {
        "id": run_id,
        "flowId": "f",
        "metrics": {
            "durationSummary": {"startedAtUTC": started},
            "recordSummary": {"inputRecordCount": read, "outputRecordCount": written, "failedRecordCount": failed},
            "statusSummary": {"status": status, **({"errors": errors} if errors else {})},
        },
    }


def test_run_summaries_and_only_the_latest_failure_counts():
    old_failure = run("r1", "failed", 1, errors=[{"code": "C-1", "message": "boom"}])
    latest = run("r2", "success", 2, 10, 9, 1)
    report = ingest.RunsReport([ingest.summarise_run(r) for r in ingest.latest_first([old_failure, latest])])
    assert [r.run_id for r in report.runs] == ["r2", "r1"]
    assert report.failures() == []
    assert report.totals() == {"runs": 2, "records_read": 10, "records_ingested": 9, "records_failed": 1}
    assert ingest.RunsReport.from_xcom(report.to_xcom()) == report
    failing = ingest.RunsReport([ingest.summarise_run(old_failure)])
    assert "C-1: boom" in failing.failures()[0].describe()


def test_errors_are_read_from_activities_too_and_statuses_are_checked():
    spelled = {
        "id": "r",
        "metrics": {"statusSummary": {"status": "failed"}},
        "activites": [{"statusSummary": {"errors": [{"code": "A", "message": "from an activity"}]}}],
    }
    assert ingest.run_errors(spelled) == [{"code": "A", "message": "from an activity"}]
    assert ingest.is_active({"id": "r"}) and ingest.is_active(run("r", "inProgress", 1))
    assert not ingest.is_active(run("r", "partialSuccess", 1))
    with pytest.raises(PermanentError, match="unknown status 'paused'"):
        ingest.check_run_status(run("r", "paused", 1))
