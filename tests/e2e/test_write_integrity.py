"""No run writes wrong data (issue 13), end to end: ``dag.test()`` against both sandboxes over loopback HTTP,
small populations. Clears, exits that never resurrect deleted or merged contacts, a subset run keeping
the other audiences' history, a cleared old run refused before any write, and the mass-change guard.
"""

from __future__ import annotations

import email
import json
import time

import pendulum
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import requests
import yaml
from e2e_support import ROOT, run_sync, start_world, write_requests
from sandbox import aep_store, credentials

PROFILES = 400
SNAPSHOT = ("state", "hubspot_audience_sync", "snapshot.parquet")


@pytest.fixture
def world(tmp_path, monkeypatch, airflow_db):
    config = yaml.safe_load((ROOT / "include" / "sync_config.yaml").read_text())
    # a manual dag.test() run must fail when the guard trips, not wait for a person (see test_approval_gate)
    config.update(approval_on_mass_change="never", validation_max_wait_seconds=30)
    path = tmp_path / "sync_config.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("AUDIENCE_SYNC_CONFIG", str(path))
    world = start_world(tmp_path, monkeypatch, profiles=PROFILES)
    world.config_path = path
    yield world
    world.stop()


# ------------------------------------------------------------------------------------------- helpers


def population(world):
    data_dir = aep_store.default_data_dir(world.aep.db)
    profiles, memberships = aep_store.load_population(data_dir)
    return data_dir, profiles, memberships


def profile_rows(profiles: pa.Table, emails: set[str]) -> list[int]:
    """Rows of the AEP profiles whose identity email or personal email is one of ``emails``."""
    rows = []
    for i, p in enumerate(profiles.select(["email", "personal_email"]).to_pylist()):
        if (p["email"] or p["personal_email"] or "").strip().lower() in emails:
            rows.append(i)
    return rows


def leave_every_audience(world, emails: set[str]) -> None:
    data_dir, profiles, memberships = population(world)
    rows = pa.array(profile_rows(profiles, emails), pa.int32())
    aep_store.save_population(data_dir, profiles, memberships.filter(pc.invert(pc.is_in(memberships["row"], rows))))


def members(world, status_property: str) -> list[str]:
    """Emails HubSpot holds as active members of an audience property, sorted."""
    return sorted(e for e, p in world.contacts().items() if p.get(status_property) in ("realized", "existing"))


def hubspot_api(world, method: str, path: str, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {credentials.HUBSPOT_PRIVATE_APP_TOKEN}"}
    return requests.request(
        method, f"{world.hubspot.url}/crm/objects/2026-03/contacts{path}", headers=headers, timeout=10, **kwargs
    )


def contact_ids(world) -> dict[str, str]:
    return {c["properties"]["email"]: c["id"] for c in world.hubspot.admin("GET", "contacts")["contacts"]}


def snapshot_bytes(world) -> bytes:
    return world.base.joinpath(*SNAPSHOT).read_bytes()


def task_states(run_id: str) -> dict[str, tuple[str, int]]:
    """task id → (state, try number) of the run's task instances (mapped ones: the first)."""
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(TaskInstance).filter(TaskInstance.run_id == run_id).all()
        return {ti.task_id: (str(ti.state), ti.try_number) for ti in sorted(rows, key=lambda t: t.map_index)[::-1]}


def audience_property(world, name: str) -> str:
    from audience_sync.naming import audience_property_names

    audience = next(a for a in world.audiences if a["name"] == name)
    return audience_property_names(world.audiences)[audience["id"]]


# --------------------------------------------------------------------------------------------- tests


def test_a_value_removed_in_aep_is_cleared_and_full_refresh_resends_the_clear(world):
    assert run_sync(world)["state"] == "success"
    contacts = world.contacts()
    email = next(e for e, p in sorted(contacts.items()) if p.get("firstname"))
    data_dir, profiles, memberships = population(world)
    rows = set(profile_rows(profiles, {email}))
    first = [None if i in rows else v for i, v in enumerate(profiles["first_name"].to_pylist())]
    column = profiles.schema.get_field_index("first_name")
    profiles = profiles.set_column(column, "first_name", pa.array(first, pa.string()))
    aep_store.save_population(data_dir, profiles, memberships)

    since = time.time()
    second = run_sync(world)
    assert second["state"] == "success"
    assert not world.contacts()[email].get("firstname")  # HubSpot clears a property set to ""
    assert second["report"]["contacts"]["to_send"] == 1

    # Someone types a name in HubSpot; a full refresh resends every contact, the clear included.
    contact_id = contact_ids(world)[email]
    assert hubspot_api(world, "PATCH", f"/{contact_id}", json={"properties": {"firstname": "Typed"}}).ok
    third = run_sync(world, full_refresh=True)
    assert third["state"] == "success"
    assert not world.contacts()[email].get("firstname")
    assert third["report"]["contacts"]["to_send"] >= len(contacts)
    assert write_requests(world.hubspot_requests(since))


@pytest.mark.parametrize("how", ["deleted", "merged"])
def test_a_leaver_gone_from_hubspot_is_never_recreated_and_counts_as_gone(world, how):
    """It left every audience in AEP, and HubSpot deleted it (DELETE, e.g. a GDPR request) or merged it into
    another contact: its exit is an update that finds nothing, it leaves the snapshot, validation passes."""
    assert run_sync(world)["state"] == "success"
    contacts, ids = world.contacts(), contact_ids(world)
    statuses = {e: {k: v for k, v in p.items() if k.startswith("aep_")} for e, p in contacts.items()}
    active = sorted(e for e, s in statuses.items() if any(v in ("realized", "existing") for v in s.values()))
    # a pair with the same statuses: HubSpot's merge keeps a value of either contact, so any other pair would
    # change the kept contact's statuses by the merge itself (a drift outside the sync; see docs/integrity.md)
    leaver, keeper = next((a, b) for a in active for b in active if a != b and statuses[a] == statuses[b])
    if how == "deleted":
        assert hubspot_api(world, "DELETE", f"/{ids[leaver]}").status_code == 204
    else:
        pair = {"primaryObjectId": ids[keeper], "objectIdToMerge": ids[leaver]}
        merged = hubspot_api(world, "POST", "/merge", json=pair)
        assert merged.status_code == 200
        keeper_before = {k: v for k, v in world.contacts()[keeper].items() if k.startswith("aep_")}
    leave_every_audience(world, {leaver})

    second = run_sync(world)
    assert second["state"] == "success"  # validation counts only what HubSpot can hold
    after = world.contacts()
    assert leaver not in after  # never re-created
    assert second["report"]["contacts"]["gone"] == 1
    if how == "merged":  # the exit did not land on the contact the leaver was merged into
        assert {k: v for k, v in after[keeper].items() if k.startswith("aep_")} == keeper_before

    third = run_sync(world)  # the gone contact left the snapshot: nothing to send about it again
    assert third["state"] == "success" and third["report"]["contacts"]["to_send"] == 0


def test_a_subset_run_keeps_the_other_audiences_history(world):
    assert run_sync(world)["state"] == "success"
    first, other = world.audiences[0], world.audiences[1]
    other_property = audience_property(world, other["name"])
    leaver = members(world, other_property)[0]

    subset = run_sync(world, audiences=[first["name"]])  # a manual run with one audience
    assert subset["state"] == "success"

    leave_every_audience(world, {leaver})
    full = run_sync(world)
    assert full["state"] == "success"
    assert world.contacts()[leaver][other_property] == "exited"  # the other audience's exit was still sent


def test_clearing_an_old_run_after_a_newer_commit_is_refused_before_any_write(world):
    from audience_sync.contracts import SnapshotCandidate
    from audience_sync.incremental import SnapshotMoved
    from audience_sync.operators.sync import CommitSnapshotOperator

    old_date = pendulum.datetime(2026, 11, 1, 2, tz="UTC")
    old = run_sync(world, logical_date=old_date)
    assert old["state"] == "success"
    leave_every_audience(world, set(sorted(world.contacts())[:3]))  # something changes, a newer run sends it
    newer = run_sync(world)
    assert newer["state"] == "success" and newer["report"]["contacts"]["to_send"] == 3
    committed = snapshot_bytes(world)

    # Clearing only commit_snapshot of the old run: its old candidate never overwrites the newer snapshot.
    folder = old["folder"]
    stale = SnapshotCandidate(
        str(folder / "plan" / "snapshot-candidate.parquet"), str(folder / "expected_counts.json"), 0, 0, ""
    )
    context = {"dag": type("Dag", (), {"dag_id": "hubspot_audience_sync"})(), "run_id": old["run_id"]}
    with pytest.raises(SnapshotMoved, match="Trigger a new run"):
        CommitSnapshotOperator(task_id="commit_snapshot", candidate=stale.to_xcom()).execute(context)
    assert snapshot_bytes(world) == committed

    # Clearing the whole old run: plan_sync refuses at once, before any write, saying what to do.
    since = time.time()
    again = run_sync(world, logical_date=old_date)
    assert again["run_id"] == old["run_id"] and again["state"] == "failed"
    states = task_states(again["run_id"])
    assert states["plan_sync"] == ("failed", 1)  # a PermanentError: no retry
    assert states["upsert_contacts"][0] in ("upstream_failed", "skipped")
    assert write_requests(world.hubspot_requests(since)) == []
    assert snapshot_bytes(world) == committed


def test_the_guard_stops_a_mass_exit_before_any_write_a_dry_run_shows_it_and_one_run_may_pass(world):
    assert run_sync(world)["state"] == "success"
    contacts = world.contacts()
    leavers = set(sorted(contacts)[: len(contacts) // 4])  # a quarter would exit: over max_exit_fraction (10%)
    leave_every_audience(world, leavers)

    since = time.time()
    blocked = run_sync(world)
    assert blocked["state"] == "failed"
    assert task_states(blocked["run_id"])["plan_sync"] == ("failed", 1)  # fails in seconds, no retries
    assert write_requests(world.hubspot_requests(since)) == []
    dry = run_sync(world, dry_run=True)
    assert dry["state"] == "success"
    guard = dry["report"]["mass_change_guard"]
    # every leaver still active in an audience exits (a few had only exited statuses already)
    assert 0.9 * len(leavers) < guard["exiting"] <= len(leavers) and guard["snapshot_contacts"] == len(contacts)
    assert guard["exit_fraction"] > guard["max_exit_fraction"]
    assert "would exit" in guard["blocked_because"][0]
    assert write_requests(world.hubspot_requests(since)) == []

    allowed = run_sync(world, allow_mass_change=True)
    assert allowed["state"] == "success"
    assert allowed["report"]["mass_change_guard"]["allowed"] is True
    after = world.contacts()
    assert all(v == "exited" for e in leavers for k, v in after[e].items() if k.startswith("aep_") and v)


class Inbox:
    def __init__(self):
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content)
        html = next(part for part in message.walk() if part.get_content_type() == "text/html")
        self.messages.append(html.get_payload(decode=True).decode())
        return "250 OK"


def test_the_guard_stops_an_empty_export_against_a_non_empty_snapshot_with_one_alert(world, monkeypatch):
    from aiosmtpd.controller import Controller
    from sandbox_process import free_port

    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    smtp = {"conn_type": "smtp", "host": "127.0.0.1", "port": port,
            "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "airflow@example.com"}}
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_ALERTS", json.dumps(smtp))
    config = yaml.safe_load(world.config_path.read_text())
    alerts = {"smtp": {"conn_id": "smtp_alerts", "to": ["data-team@example.com"]}}
    world.config_path.write_text(yaml.safe_dump({**config, "alerts": alerts}))
    try:
        assert run_sync(world)["state"] == "success"
        assert inbox.messages == []
        data_dir, profiles, memberships = population(world)
        aep_store.save_population(data_dir, profiles, memberships.slice(0, 0))  # no audience has members
        since = time.time()
        blocked = run_sync(world)
        assert blocked["state"] == "failed"
        assert write_requests(world.hubspot_requests(since)) == []
        assert len(inbox.messages) == 1  # one alert for the run
        assert "stopped by the mass-change guard at task plan_sync" in inbox.messages[0]
        assert "the export is empty while the snapshot holds" in inbox.messages[0]
        assert "allow_mass_change" in inbox.messages[0]
    finally:
        controller.stop()


def respond_to_approval(option: str, timeout: float = 60.0) -> dict:
    """A person answers the run's approval request, through the HITL API's handler (the code behind
    PATCH /api/v2/.../hitlDetails that the "Required actions" page calls), on the shared metadata DB.
    Returns what the request showed: its subject and body."""
    from types import SimpleNamespace

    from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
    from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
    from airflow.models import TaskInstance
    from airflow.models.hitl import HITLDetail
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with create_session() as session:
            waiting = (
                session.query(TaskInstance)
                .filter(TaskInstance.task_id == "approve_mass_change")
                .filter(TaskInstance.state == TaskInstanceState.AWAITING_INPUT)
                .first()
            )
            if waiting is not None:
                detail = session.query(HITLDetail).filter(HITLDetail.ti_id == waiting.id).one()
                shown = {"subject": detail.subject, "body": detail.body, "options": list(detail.options)}
                update_hitl_detail(
                    dag_id=waiting.dag_id,
                    dag_run_id=waiting.run_id,
                    task_id=waiting.task_id,
                    update_hitl_detail_payload=UpdateHITLDetailPayload(chosen_options=[option]),
                    user=SimpleNamespace(get_id=lambda: "approver", get_name=lambda: "Approver"),
                    session=session,
                )
                return shown
        time.sleep(0.5)
    raise AssertionError("no approval request appeared")


@pytest.mark.parametrize("answer", ["Approve", "Reject"])
def test_a_guard_stopped_manual_run_waits_for_a_persons_approval(world, answer):
    import threading

    config = yaml.safe_load(world.config_path.read_text())
    world.config_path.write_text(yaml.safe_dump({**config, "approval_on_mass_change": "manual"}))
    assert run_sync(world)["state"] == "success"
    contacts = world.contacts()
    leavers = set(sorted(contacts)[: len(contacts) // 4])
    leave_every_audience(world, leavers)
    committed = snapshot_bytes(world)

    since = time.time()
    shown: dict = {}
    # dag.test() stays in the main thread (task timeouts use signals); the person answers from another
    person = threading.Thread(target=lambda: shown.update(respond_to_approval(answer)), daemon=True)
    person.start()
    outcome = run_sync(world)
    person.join(timeout=5)
    assert shown["options"] == ["Approve", "Reject"]
    assert f"of the snapshot's {len(contacts)} contacts would exit" in shown["body"] and "| exiting |" in shown["body"]
    assert "@" not in shown["body"]
    assert outcome["state"] == "success"
    after = world.contacts()
    active = [e for e in leavers if any(v in ("realized", "existing") for v in after[e].values())]
    if answer == "Approve":
        assert active == [] and snapshot_bytes(world) != committed
    else:  # nothing written, the snapshot did not move: the next run meets the same guard
        assert after == contacts and write_requests(world.hubspot_requests(since)) == []
        assert snapshot_bytes(world) == committed
