"""Contract tests of the ingest's calls: every request FlowServiceClient makes and every answer the AEP
sandbox's dataflow routes give, validated against Adobe's vendored OpenAPI files (flow-service.yaml,
catalog.yaml, data-prep.yaml in include/openapi/aep/) with the contract harness of tests/contracts/."""

from __future__ import annotations

import time

import pytest
import yaml
from audience_sync import ingest
from audience_sync.clients.aep import AepClient
from audience_sync.hooks.aep import AepHook
from audience_sync.hooks.base import ApiError
from contracts.test_aep_openapi_contract import GATEWAY, SPECS, _string_keys, recorded, validate  # noqa: F401
from openapi_core import Config, OpenAPI

# base path → spec (each spec's server is https://platform.adobe.io/<base path>)
INGEST_BASES = {
    "/data/foundation/flowservice": "flow-service.yaml",
    "/data/foundation/catalog": "catalog.yaml",
    "/data/foundation/conversion": "data-prep.yaml",
}
SCHEMA = "https://ns.adobe.com/sandboxtenant/schemas/hubspot-contacts"
CONTACTS = ingest.IngestObject("Hubspot.Contacts", SCHEMA, None, "HubSpot contacts", "Updated_At")
PAIRS = (("Properties_Email_Value", "personalEmail.address"),)


@pytest.fixture(scope="module")
def specs():
    """Servers pinned to the production gateway, as in tests/contracts (the files give ``//{environment}...``)."""
    loaded = {}
    for base, name in INGEST_BASES.items():
        document = _string_keys(yaml.safe_load((SPECS / name).read_text()))
        document["servers"] = [{"url": f"{GATEWAY}{base}"}]
        if name == "catalog.yaml":
            # The file itself is not valid OpenAPI 3.0 (x-api-key twice under GET /tags/{tagNamespace}, null
            # descriptions in components): the document check is off for it; requests and answers are
            # still validated against its schemas, and the duplicate parameter is dropped.
            dedupe_parameters(document)
            loaded[base] = OpenAPI.from_dict(document, config=Config(spec_validator_cls=None))
        else:
            loaded[base] = OpenAPI.from_dict(document)
    return loaded


def dedupe_parameters(document: dict) -> None:
    """Drop repeated parameters of an operation (OpenAPI requires them unique)."""
    for operations in document["paths"].values():
        for operation in operations.values():
            if isinstance(operation, dict) and isinstance(operation.get("parameters"), list):
                unique = []
                for parameter in operation["parameters"]:
                    if parameter not in unique:
                        unique.append(parameter)
                operation["parameters"] = unique


def table_preview_is_the_tutorials_shape(problem: str) -> bool:
    """flow-service.yaml gives one answer schema for explore, the ROOT listing's array; a TABLE answer is the
    object of the explore tutorial ({format, schema.columns, data}), which the client and the unit tests check."""
    return problem.startswith("response GET /data/foundation/flowservice/connections/") and "/explore" in problem


def test_every_ingest_call_and_sandbox_answer_follows_adobes_specs(aep, client, recorded, specs):  # noqa: F811
    aep.set_faults(extra={"flow_run_seconds": 0.2})
    params = {"clientId": "c", "clientSecret": "s", "accessToken": "a", "refreshToken": "r"}
    base = AepClient(AepHook()).create_connection(
        {
            "name": "contract",
            "auth": {"specName": "Basic Authentication", "params": params},
            "connectionSpec": {"id": ingest.HUBSPOT_CONNECTION_SPEC_ID, "version": "1.0"},
        }
    )["id"]
    recorded.clear()
    assert len(ingest.explore_tables(client.explore_root(base))) == 3
    client.explore_table(base, CONTACTS.path)
    source = client.create_source_connection(ingest.source_connection_body("src", base, CONTACTS))["id"]
    assert client.list_source_connections(f"baseConnectionId=={base}")[0]["id"] == source
    dataset = ingest.dataset_id_from_created(client.create_dataset(ingest.dataset_body(CONTACTS)))
    assert client.find_datasets(CONTACTS.dataset_name)[0]["id"] == dataset
    assert client.get_dataset(dataset)["name"] == CONTACTS.dataset_name
    assert client.get_dataset("0000nosuchdataset") is None
    target = client.create_target_connection(ingest.target_connection_body("tgt", CONTACTS, dataset))["id"]
    assert client.list_target_connections(f"connectionSpec.id=={ingest.DATA_LAKE_CONNECTION_SPEC_ID}")
    mapping = client.create_mapping_set(ingest.mapping_set_body("map", CONTACTS, PAIRS))["id"]
    assert client.find_mapping_sets("map")[0]["id"] == mapping and client.get_mapping_set(mapping)["mappings"]
    assert client.get_flow_spec(ingest.CRM_FLOW_SPEC_ID)["name"] == "CRMToAEP"
    config = ingest.IngestConfig(objects=(CONTACTS,), mappings={}, frequency="once")
    body = ingest.flow_body("flow", CONTACTS, source, target, mapping, 0, ingest.schedule_params(config, time.time()))
    flow = client.create_flow(body)["id"]
    assert client.list_flows(f"flowSpec.id=={ingest.CRM_FLOW_SPEC_ID}")[0]["id"] == flow
    assert client.get_flow(flow)["scheduleParams"]["frequency"] == "once"
    client.create_run(flow, int(time.time() * 1000))
    time.sleep(0.3)
    assert len(client.list_runs(flow)) == 2
    with pytest.raises(ApiError):
        client.create_source_connection({**ingest.source_connection_body("bad", base, CONTACTS), "params": {}})

    problems, seen = validate(specs, recorded)
    gaps = [p for p in problems if table_preview_is_the_tutorials_shape(p)]
    assert [p for p in problems if p not in gaps] == []
    assert len(gaps) == 1  # only the TABLE answer: the ROOT listing validated
    operations = {key.split("?")[0] for key in seen}
    assert {
        f"POST /data/foundation/flowservice/{kind}"
        for kind in ("sourceConnections", "targetConnections", "flows", "runs")
    } <= operations
    assert {
        "POST /data/foundation/catalog/dataSets",
        "POST /data/foundation/conversion/mappingSets",
        "GET /data/foundation/flowservice/runs",
        f"GET /data/foundation/catalog/dataSets/{dataset}",
    } <= operations


def test_the_validator_catches_a_flow_body_off_the_spec(specs):
    """Not vacuous for the ingest specs: the tutorial's numeric interval (the spec types it as a string) and a
    dataset create answered with an object instead of Catalog's array are both reported."""
    import requests
    from contracts.test_aep_openapi_contract import Call

    headers = {
        "Authorization": "Bearer t",
        "x-api-key": "k",
        "x-gw-ims-org-id": "o",
        "x-sandbox-name": "prod",
        "Content-Type": "application/json",
    }
    body = ingest.flow_body("f", CONTACTS, "s", "t", "m", 0, {"startTime": 1, "frequency": "hour", "interval": 1})
    flow = requests.Request(
        "POST", f"{GATEWAY}/data/foundation/flowservice/flows", json=body, headers=headers
    ).prepare()
    dataset = requests.Request(
        "POST", f"{GATEWAY}/data/foundation/catalog/dataSets", json={"name": "d"}, headers=headers
    ).prepare()
    problems, _ = validate(
        specs,
        [
            Call(flow, 201, "application/json", {}, b'{"id": "f", "etag": "e"}'),
            Call(dataset, 201, "application/json", {}, b'{"id": "d"}'),
        ],
    )
    assert any(p.startswith("request POST /data/foundation/flowservice/flows") for p in problems), problems
    assert any(p.startswith("response POST /data/foundation/catalog/dataSets") for p in problems), problems
