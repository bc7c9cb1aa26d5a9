"""FlowServiceClient against the AEP sandbox over loopback HTTP: explore, the dataflow chain, runs and their
metrics, Adobe's error bodies, and the answer variants the docs leave open (sandbox run-time settings)."""

from __future__ import annotations

import time

import pytest
from audience_sync import ingest
from audience_sync.errors import ConfigurationError
from audience_sync.hooks.base import ApiError
from audience_sync.operators.ingest import EnsureDataflowsOperator

SCHEMA = "https://ns.adobe.com/sandboxtenant/schemas/hubspot-contacts"
CONTACTS = ingest.IngestObject("Hubspot.Contacts", SCHEMA, None, "HubSpot contacts", "Updated_At")
PAIRS = (("Properties_Email_Value", "personalEmail.address"), ("Properties_Firstname_Value", "person.name.firstName"))


def make_chain(client, base_connection, frequency="hour", interval=1):
    source = client.create_source_connection(ingest.source_connection_body("src", base_connection, CONTACTS))["id"]
    dataset = ingest.dataset_id_from_created(client.create_dataset(ingest.dataset_body(CONTACTS)))
    target = client.create_target_connection(ingest.target_connection_body("tgt", CONTACTS, dataset))["id"]
    mapping = client.create_mapping_set(ingest.mapping_set_body("map", CONTACTS, PAIRS))["id"]
    config = ingest.IngestConfig(
        objects=(CONTACTS,), mappings={CONTACTS.path: PAIRS}, frequency=frequency, interval=interval
    )
    body = ingest.flow_body("flow", CONTACTS, source, target, mapping, 0, ingest.schedule_params(config, time.time()))
    return {
        "source": source,
        "dataset": dataset,
        "target": target,
        "mapping": mapping,
        "flow": client.create_flow(body)["id"],
        "body": body,
    }


def wait_for_runs(client, flow_id, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = client.list_runs(flow_id)
        if runs and not any(ingest.is_active(r) for r in runs):
            return runs
        time.sleep(0.2)
    raise AssertionError(f"runs of {flow_id} still active after {timeout} s")


def test_explore_lists_tables_and_previews_columns_and_rows(client, base_connection):
    tables = ingest.explore_tables(client.explore_root(base_connection))
    assert {t["path"] for t in tables} == {"Hubspot.Contacts", "Hubspot.Companies", "Hubspot.Deals"}
    table = client.explore_table(base_connection, "Hubspot.Contacts")
    columns = ingest.table_columns(table)
    assert {"name": "Properties_Email_Value", "type": "string"} in columns
    rows = ingest.preview_rows(table)
    assert len(rows) == 8 and set(rows[0]) == {c["name"] for c in columns}
    assert "data" not in client.explore_table(base_connection, "Hubspot.Contacts", preview=False)


def test_explore_variants_wrapped_root_and_rows_as_lists(aep, client, base_connection):
    aep.set_faults(extra={"explore_wrapped": True, "preview_as_lists": True})
    root = client.explore_root(base_connection)
    assert isinstance(root, dict) and len(ingest.explore_tables(root)) == 3
    table = client.explore_table(base_connection, "Hubspot.Companies")
    assert isinstance(table["data"][0], list)
    assert ingest.preview_rows(table)[0]["Properties_Name_Value"] == "Company 0"


def test_flow_spec_in_the_specs_object_form_and_the_docs_array_form(aep, client):
    assert client.get_flow_spec(ingest.CRM_FLOW_SPEC_ID)["transformationSpecs"]["name"] == "Mapping"
    aep.set_faults(extra={"flow_spec_transformations_as_list": True})
    spec = client.get_flow_spec(ingest.CRM_FLOW_SPEC_ID)
    assert spec["id"] == ingest.CRM_FLOW_SPEC_ID and [t["name"] for t in spec["transformationSpecs"]] == [
        "Copy",
        "Mapping",
    ]


def test_explore_errors_name_the_problem(client, base_connection):
    with pytest.raises(ApiError) as error:
        client.explore_table(base_connection, "Hubspot.Nothing")
    assert error.value.status == 404 and "Hubspot.Nothing" in str(error.value)
    with pytest.raises(ApiError) as error:
        client.explore_root("no-such-connection")
    assert error.value.status == 404


def test_whole_chain_then_a_run_with_metrics(client, base_connection):
    chain = make_chain(client, base_connection)
    found = client.list_source_connections(f"baseConnectionId=={base_connection}")
    assert [s["id"] for s in found] == [chain["source"]] and found[0]["params"]["path"] == "Hubspot.Contacts"
    assert client.get_dataset(chain["dataset"])["schemaRef"]["id"] == SCHEMA
    assert [d["id"] for d in client.find_datasets("HubSpot contacts")] == [chain["dataset"]]
    targets = client.list_target_connections(f"connectionSpec.id=={ingest.DATA_LAKE_CONNECTION_SPEC_ID}")
    assert targets[0]["params"]["dataSetId"] == chain["dataset"]
    assert ingest.mapping_pairs(client.find_mapping_sets("map")[0]) == set(PAIRS)
    flow = client.get_flow(chain["flow"])
    assert ingest.flow_differences(flow, chain["body"]) == []
    assert flow["scheduleParams"]["interval"] == "1"
    first = client.list_runs(chain["flow"])
    assert len(first) == 1 and ingest.is_active(first[0])
    run = ingest.summarise_run(wait_for_runs(client, chain["flow"])[0])
    assert (run.status, run.records_read, run.records_ingested, run.records_failed) == ("success", 120, 118, 2)
    assert not run.failed and run.errors == []


def test_a_failed_run_carries_adobes_error_details(aep, client, base_connection):
    aep.set_faults(extra={"flow_run_seconds": 0.2, "fail_runs": 1})
    chain = make_chain(client, base_connection)
    run = ingest.summarise_run(wait_for_runs(client, chain["flow"])[0])
    assert run.failed and run.errors[0]["code"] == "CONNECTOR-1001-500"
    report = ingest.RunsReport([run])
    assert report.failures() == [run] and "401 Unauthorized" in run.describe()


def test_on_demand_runs_only_for_one_time_flows(aep, client, base_connection):
    aep.set_faults(extra={"flow_run_seconds": 0.2})
    hourly = make_chain(client, base_connection)
    with pytest.raises(ApiError) as error:
        client.create_run(hourly["flow"], int(time.time() * 1000))
    assert error.value.status == 400 and "one-time" in str(error.value)
    once = make_chain(client, base_connection, frequency="once")
    wait_for_runs(client, once["flow"])
    started = client.create_run(once["flow"], int(time.time() * 1000))
    runs = wait_for_runs(client, once["flow"])
    assert started["id"] in {r["id"] for r in runs} and len(runs) == 2


def test_refused_bodies_answer_adobes_error_format(client, base_connection):
    bad_source = ingest.source_connection_body("src", base_connection, CONTACTS)
    bad_source["params"]["path"] = "Hubspot.Nothing"
    with pytest.raises(ApiError) as error:
        client.create_source_connection(bad_source)
    assert error.value.status == 400 and error.value.category == "Bad Request" and "params.path" in error.value.message
    with pytest.raises(ApiError) as error:
        client.create_dataset({"name": "x", "schemaRef": {"id": "not-a-schema"}})
    assert error.value.status == 400 and "schemaRef.id" in error.value.message
    assert client.get_dataset("0000nosuchdataset") is None
    chain = make_chain(client, base_connection)
    every_minute = {
        **chain["body"],
        "name": "fast",
        "scheduleParams": {"startTime": 1, "frequency": "minute", "interval": 5},
    }
    with pytest.raises(ApiError) as error:
        client.create_flow(every_minute)
    assert "at least 15" in error.value.message


def test_the_tutorials_numeric_interval_and_mapping_field_names_are_taken(client, base_connection):
    chain = make_chain(client, base_connection)
    tutorial_mapping = {
        "version": 0,
        "xdmSchema": SCHEMA,
        "xdmVersion": "1.0",
        "id": None,
        "mappings": [
            {
                "destinationXdmPath": "personalEmail.address",
                "sourceAttribute": "Properties_Email_Value",
                "identity": False,
                "version": 0,
            }
        ],
    }
    mapping = client.create_mapping_set(tutorial_mapping)["id"]
    assert ingest.mapping_pairs(client.get_mapping_set(mapping)) == {
        ("Properties_Email_Value", "personalEmail.address")
    }
    body = {
        **chain["body"],
        "name": "numeric",
        "scheduleParams": {"startTime": 2_000_000_000, "frequency": "day", "interval": 2},
    }
    flow = client.get_flow(client.create_flow(body)["id"])
    assert flow["scheduleParams"]["interval"] == "2"
    assert client.list_runs(flow["id"]) == []  # its start time is in the future


def test_an_existing_resource_that_differs_stops_the_chain(client, base_connection):
    """A dataset of the configured name on another schema is never reused nor duplicated."""
    client.create_dataset(
        {
            "name": CONTACTS.dataset_name,
            "schemaRef": {"id": "https://ns.adobe.com/sandboxtenant/schemas/other", "contentType": "x"},
        }
    )
    operator = EnsureDataflowsOperator(task_id="ensure", base_connection_id=base_connection)
    operator.config = ingest.IngestConfig(objects=(CONTACTS,), mappings={CONTACTS.path: PAIRS})
    with pytest.raises(ConfigurationError, match="its schema is"):
        operator._chain(base_connection, CONTACTS, {"Properties_Email_Value", "Properties_Firstname_Value"})
    with pytest.raises(ConfigurationError, match="Properties_Firstname_Value"):
        operator._chain(base_connection, CONTACTS, {"Properties_Email_Value"})


def test_sandbox_reset_forgets_the_dataflows(aep, client, base_connection):
    chain = make_chain(client, base_connection)
    aep.reset()
    assert client.list_flows(f"flowSpec.id=={ingest.CRM_FLOW_SPEC_ID}") == []
    assert client.get_dataset(chain["dataset"]) is None


def test_the_trigger_waits_until_the_runs_end(aep, client, base_connection):
    import asyncio

    from audience_sync.triggers.flow_runs import FlowRunsTrigger

    chain = make_chain(client, base_connection)
    trigger = FlowRunsTrigger([chain["flow"]], {chain["flow"]: time.time() - 1}, poll_interval=0.1)
    assert trigger.serialize()[0] == "audience_sync.triggers.flow_runs.FlowRunsTrigger"
    event = asyncio.run(trigger.run().__anext__())
    assert event.payload == {"status": "done"}
    assert not any(ingest.is_active(r) for r in client.list_runs(chain["flow"]))
    gone = FlowRunsTrigger(["no-such-flow"], {"no-such-flow": time.time() + 3600}, poll_interval=0.1)
    assert asyncio.run(gone.run().__anext__()).payload == {"status": "done"}  # not due yet: nothing to wait for


def test_explore_fails_naming_the_tables_when_a_configured_one_is_missing(client, base_connection, tmp_path):
    from audience_sync.operators.ingest import ExploreHubSpotOperator

    operator = ExploreHubSpotOperator(task_id="explore", base_connection_id=base_connection, output_dir=str(tmp_path))
    missing = ingest.IngestObject("Hubspot.Tickets", SCHEMA, None, "t", "Updated_At")
    operator.config = ingest.IngestConfig(objects=(missing,), mappings={missing.path: PAIRS})
    with pytest.raises(ConfigurationError, match="available: Hubspot.Contacts, Hubspot.Companies, Hubspot.Deals"):
        operator.execute({})
    with pytest.raises(ConfigurationError, match="no connection id"):
        ExploreHubSpotOperator(task_id="e", base_connection_id="None", output_dir=str(tmp_path)).execute({})


def test_lists_page_with_continuation_tokens(client, base_connection):
    ids = [
        client.create_source_connection(ingest.source_connection_body(f"s{n}", base_connection, CONTACTS))["id"]
        for n in range(5)
    ]
    pages = client.hook.request_json("GET", "data/foundation/flowservice/sourceConnections", params={"limit": 2})
    assert len(pages["items"]) == 2 and "continuationToken=" in pages["_links"]["next"]["href"]
    found = client.hook.paginate(
        "data/foundation/flowservice/sourceConnections",
        ("items",),
        {"limit": 2, "property": f"baseConnectionId=={base_connection}"},
    )
    assert [s["id"] for s in found] == ids
