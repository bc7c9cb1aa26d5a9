"""HubSpot's official Python SDKs, unchanged, work against the sandbox: the paths and shapes match theirs."""

from __future__ import annotations

import pytest
from sandbox import credentials
from sandbox_process import start_sandbox

pytestmark = pytest.mark.sdk

TOKEN = credentials.HUBSPOT_PRIVATE_APP_TOKEN
PEOPLE = {"Ada@Example.com": "Lovelace", "grace@example.com": "Hopper", "alan@example.com": "Turing"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = start_sandbox("hubspot", tmp_path_factory.mktemp("hubspot-sdk"), "--index-delay", "0")
    yield process
    process.stop()


@pytest.fixture
def url(server):
    server.reset()
    return server.url


def test_hubspot_api_client_v3(url):
    """``hubspot-api-client`` (v3 paths): properties, groups, batch upsert/read, list, get by email, search."""
    from hubspot import HubSpot
    from hubspot.crm.contacts import (
        BatchInputSimplePublicObjectBatchInputUpsert,
        BatchReadInputSimplePublicObjectId,
        Filter,
        FilterGroup,
        PublicObjectSearchRequest,
        SimplePublicObjectBatchInputUpsert,
        SimplePublicObjectId,
    )
    from hubspot.crm.properties import ApiException, OptionInput, PropertyCreate, PropertyGroupCreate, PropertyUpdate

    client = HubSpot(access_token=TOKEN, host=url)
    props = client.crm.properties

    group = props.groups_api.create("contacts", PropertyGroupCreate(name="aep_audiences", label="AEP audiences"))
    assert group.name == "aep_audiences"
    assert "aep_audiences" in {g.name for g in props.groups_api.get_all("contacts").results}
    created = props.core_api.create(
        "contacts",
        PropertyCreate(
            name="aep_vip",
            label="AEP VIP",
            type="enumeration",
            field_type="booleancheckbox",
            group_name="aep_audiences",
            options=[
                OptionInput(label="Yes", value="true", display_order=0, hidden=False),
                OptionInput(label="No", value="false", display_order=1, hidden=False),
            ],
        ),
    )
    assert created.name == "aep_vip" and created.type == "enumeration"
    with pytest.raises(ApiException) as conflict:
        props.core_api.create(
            "contacts",
            PropertyCreate(name="aep_vip", label="x", type="string", field_type="text", group_name="aep_audiences"),
        )
    assert conflict.value.status == 409
    patched = props.core_api.update(
        "contacts",
        "aep_vip",
        PropertyUpdate(options=[OptionInput(label="Yes", value="true", display_order=0, hidden=False)]),
    )
    assert [o.value for o in patched.options] == ["true"]
    assert props.core_api.get_by_name("contacts", "aep_vip").label == "AEP VIP"
    assert {"email", "firstname", "aep_vip"} <= {p.name for p in props.core_api.get_all("contacts").results}

    contacts = client.crm.contacts
    upserted = contacts.batch_api.upsert(
        BatchInputSimplePublicObjectBatchInputUpsert(
            inputs=[
                SimplePublicObjectBatchInputUpsert(
                    id_property="email", id=email, properties={"lastname": name, "aep_vip": "true"}
                )
                for email, name in PEOPLE.items()
            ]
        )
    )
    assert upserted.status == "COMPLETE" and len(upserted.results) == 3 and all(r.new for r in upserted.results)

    read = contacts.batch_api.read(
        BatchReadInputSimplePublicObjectId(
            id_property="email",
            inputs=[SimplePublicObjectId(id="ada@example.com")],
            properties=["lastname"],
            properties_with_history=[],
        )
    )
    assert [r.properties["lastname"] for r in read.results] == ["Lovelace"]

    first = contacts.basic_api.get_page(limit=2, properties=["email"])
    second = contacts.basic_api.get_page(limit=2, after=first.paging.next.after, properties=["email"])
    assert len(first.results) == 2 and len(second.results) == 1 and second.paging is None
    assert len(contacts.get_all(properties=["email"])) == 3

    by_email = contacts.basic_api.get_by_id("GRACE@example.com", id_property="email", properties=["lastname"])
    assert by_email.properties["lastname"] == "Hopper"

    found = contacts.search_api.do_search(
        PublicObjectSearchRequest(
            filter_groups=[FilterGroup(filters=[Filter(property_name="aep_vip", operator="EQ", value="true")])],
            properties=["email", "lastname"],
            limit=2,
        )
    )
    assert found.total == 3 and len(found.results) == 2 and found.paging.next.after == "2"


def test_hubspot_sdk_2026_03(url, monkeypatch):
    """``hubspot-sdk`` (2026-03 paths): the same operations through HubSpot's new SDK."""
    from hubspot_sdk import HubSpot, NotFoundError

    client = HubSpot(access_token=TOKEN, base_url=url, max_retries=0)
    props = client.crm.properties

    group = props.groups.create("contacts", name="aep_audiences", label="AEP audiences", display_order=1)
    assert group.name == "aep_audiences"
    assert "aep_audiences" in {g.name for g in props.groups.list("contacts").results}
    created = props.create(
        "contacts",
        name="aep_vip",
        label="AEP VIP",
        type="enumeration",
        field_type="booleancheckbox",
        group_name="aep_audiences",
        options=[
            {"label": "Yes", "value": "true", "display_order": 0, "hidden": False},
            {"label": "No", "value": "false", "display_order": 1, "hidden": False},
        ],
    )
    assert created.name == "aep_vip"
    patched = props.update("aep_vip", object_type="contacts", label="AEP VIP audience")
    assert patched.label == "AEP VIP audience"
    assert props.get("aep_vip", object_type="contacts").label == "AEP VIP audience"
    with pytest.raises(NotFoundError):
        props.get("no_such_property", object_type="contacts")
    assert {"email", "lastname", "aep_vip"} <= {p.name for p in props.list("contacts").results}

    contacts = client.crm.objects.contacts
    upserted = contacts.batch.upsert(
        inputs=[
            {"id_property": "email", "id": email, "properties": {"lastname": name, "aep_vip": "true"}}
            for email, name in PEOPLE.items()
        ]
    )
    assert upserted.status == "COMPLETE" and sorted(r.properties["email"] for r in upserted.results) == sorted(
        e.lower() for e in PEOPLE
    )
    again = contacts.batch.upsert(
        inputs=[{"id_property": "email", "id": "ada@example.com", "properties": {"firstname": "Ada"}}]
    )
    assert again.results[0].new is False

    read = contacts.batch.get(
        inputs=[{"id": "alan@example.com"}], properties=["lastname"], properties_with_history=[], id_property="email"
    )
    assert [r.properties["lastname"] for r in read.results] == ["Turing"]

    pages = contacts.list(limit=2, properties=["email"])
    assert len(pages.results) == 2 and pages.has_next_page()
    assert sorted(c.properties["email"] for c in pages.iter_pages() for c in c.results) == sorted(
        e.lower() for e in PEOPLE
    )

    by_email = contacts.get("ADA@example.com", id_property="email", properties=["firstname", "lastname"])
    assert (by_email.properties["firstname"], by_email.properties["lastname"]) == ("Ada", "Lovelace")

    found = contacts.search(
        after="",
        filter_groups=[{"filters": [{"property_name": "lastname", "operator": "IN", "values": ["hopper", "turing"]}]}],
        limit=10,
        properties=["email"],
        sorts=["email"],
    )
    assert found.total == 2 and [r.properties["email"] for r in found.results] == [
        "alan@example.com",
        "grace@example.com",
    ]


def test_hubspot_api_client_v3_update_archive_merge(url):
    """``hubspot-api-client``: batch update by email, archive, GDPR delete and merge, as the SDK sends them."""
    from hubspot import HubSpot
    from hubspot.crm.contacts import (
        ApiException,
        BatchInputSimplePublicObjectBatchInput,
        BatchInputSimplePublicObjectBatchInputUpsert,
        PublicGdprDeleteInput,
        PublicMergeInput,
        SimplePublicObjectBatchInput,
        SimplePublicObjectBatchInputUpsert,
    )

    contacts = HubSpot(access_token=TOKEN, host=url).crm.contacts
    created = contacts.batch_api.upsert(
        BatchInputSimplePublicObjectBatchInputUpsert(
            inputs=[
                SimplePublicObjectBatchInputUpsert(id_property="email", id=email, properties={"lastname": name})
                for email, name in PEOPLE.items()
            ]
        )
    )
    ids = {r.properties["email"]: r.id for r in created.results}

    updated = contacts.batch_api.update(
        BatchInputSimplePublicObjectBatchInput(
            inputs=[
                SimplePublicObjectBatchInput(
                    id="grace@example.com",
                    id_property="email",
                    object_write_trace_id="t1",
                    properties={"firstname": "Grace"},
                )
            ]
        )
    )
    assert updated.status == "COMPLETE" and [r.id for r in updated.results] == [ids["grace@example.com"]]

    contacts.basic_api.archive(ids["alan@example.com"])
    with pytest.raises(ApiException) as gone:
        contacts.basic_api.get_by_id(ids["alan@example.com"])
    assert gone.value.status == 404
    contacts.basic_api.purge(PublicGdprDeleteInput(object_id="ada@example.com", id_property="email"))
    assert [c.properties["email"] for c in contacts.get_all(properties=["email"])] == ["grace@example.com"]

    other = contacts.batch_api.upsert(
        BatchInputSimplePublicObjectBatchInputUpsert(
            inputs=[SimplePublicObjectBatchInputUpsert(id_property="email", id="g.hopper@example.com", properties={})]
        )
    ).results[0]
    merged = contacts.basic_api.merge(
        PublicMergeInput(primary_object_id=ids["grace@example.com"], object_id_to_merge=other.id)
    )
    assert merged.properties["email"] == "grace@example.com" and merged.id not in (ids["grace@example.com"], other.id)
    assert contacts.basic_api.get_by_id(other.id).id == merged.id


def test_hubspot_sdk_2026_03_update_archive_merge(url):
    """``hubspot-sdk`` (2026-03 paths): the same calls through HubSpot's new SDK."""
    from hubspot_sdk import HubSpot, NotFoundError

    contacts = HubSpot(access_token=TOKEN, base_url=url, max_retries=0).crm.objects.contacts
    created = contacts.batch.upsert(
        inputs=[
            {"id_property": "email", "id": email, "properties": {"lastname": name}} for email, name in PEOPLE.items()
        ]
    )
    ids = {r.properties["email"]: r.id for r in created.results}

    updated = contacts.batch.update(
        inputs=[
            {"id": email, "id_property": "email", "object_write_trace_id": trace, "properties": {"firstname": "A"}}
            for email, trace in (("alan@example.com", "t1"), ("nobody@example.com", "t2"))
        ]
    )
    assert [r.id for r in updated.results] == [ids["alan@example.com"]]
    answer = updated.to_dict()  # the SDK types this call's answer without errors[]: they stay as sent
    assert answer["errors"][0]["category"] == "OBJECT_NOT_FOUND" and answer["numErrors"] == 1

    contacts.delete(ids["alan@example.com"])
    with pytest.raises(NotFoundError):
        contacts.get(ids["alan@example.com"])
    contacts.gdpr_delete(object_id="grace@example.com", id_property="email")

    other = contacts.batch.upsert(inputs=[{"id_property": "email", "id": "countess@example.com", "properties": {}}])
    other = other.results[0]
    merged = contacts.merge(primary_object_id=ids["ada@example.com"], object_id_to_merge=other.id)
    assert merged.properties["email"] == "ada@example.com" and merged.id not in (ids["ada@example.com"], other.id)
    found = contacts.get(other.id, properties=["hs_additional_emails"])
    assert found.id == merged.id and found.properties["hs_additional_emails"] == "countess@example.com"
