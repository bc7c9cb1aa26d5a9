"""Thin Airflow operators over the HubSpot client, the upsert engine and the count validation."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from audience_sync import storage
from audience_sync.clients.hubspot import MAX_BATCH, HubSpotClient
from audience_sync.hooks.hubspot import HubSpotHook
from audience_sync.naming import DEFAULT_PREFIX, audience_property_names
from audience_sync.upsert import upsert_file
from audience_sync.validation import all_ok, compare_counts, format_table

AUDIENCE_STATUSES = ("realized", "existing", "exited")  # AEP segmentation statuses (aep.md)
DEFAULT_GROUP = "adobe_experience_platform_audiences"
DEFAULT_GROUP_LABEL = "Adobe Experience Platform audiences"


class PropertySetupError(ValueError):
    """HubSpot's properties do not fit the mapping or the audiences; raised before anything is written."""


class CountMismatch(AssertionError):
    """HubSpot's contact counts differ from the run's expectation beyond the tolerance."""


def _loaded(value: Any) -> Any:
    """Templated values may arrive as JSON text."""
    return json.loads(value) if isinstance(value, str) else value


def audience_options() -> list[dict[str, Any]]:
    return [{"label": s.title(), "value": s, "displayOrder": i, "hidden": False} for i, s in enumerate(AUDIENCE_STATUSES)]


class EnsureAudiencePropertiesOperator(BaseOperator):
    """Make sure HubSpot holds the mapping's target properties and one enumeration property per audience.

    Checks every target property first and fails, naming the missing ones, before any write. Then,
    idempotently: the property group, and per audience a select property (options realized / existing /
    exited) named by ``naming.audience_property_names``; a missing option is added with a PATCH. A name
    taken by a property that is not ours (another group or not an enumeration) is an error, never
    overwritten. Returns ``{audience_id: property_name}``.
    """

    template_fields: Sequence[str] = ("audiences", "target_properties", "prefix", "group_name", "group_label", "hubspot_conn_id")

    def __init__(
        self,
        *,
        audiences: Any,
        target_properties: Any,
        prefix: str = DEFAULT_PREFIX,
        group_name: str = DEFAULT_GROUP,
        group_label: str = DEFAULT_GROUP_LABEL,
        hubspot_conn_id: str = HubSpotHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.audiences = audiences
        self.target_properties = target_properties
        self.prefix = prefix
        self.group_name = group_name
        self.group_label = group_label
        self.hubspot_conn_id = hubspot_conn_id

    def execute(self, context: Any) -> dict[str, str]:
        audiences = _loaded(self.audiences)
        names = audience_property_names(audiences, self.prefix)  # a name collision raises here
        client = HubSpotClient(HubSpotHook(self.hubspot_conn_id))
        existing = {p["name"]: p for p in client.list_properties()}
        missing = sorted(set(_loaded(self.target_properties)) - set(existing))
        if missing:
            raise PropertySetupError(
                f"the mapping writes HubSpot contact properties that do not exist: {', '.join(missing)}. "
                "Create them in HubSpot (Settings → Properties) or fix the mapping; nothing was written."
            )
        foreign = [
            f"{name} (group {existing[name].get('groupName')!r}, type {existing[name].get('type')!r})"
            for name in names.values()
            if name in existing and not self._is_ours(existing[name])
        ]
        if foreign:
            raise PropertySetupError(
                f"HubSpot properties needed for audiences already exist and are not audience properties of group "
                f"{self.group_name!r}: {', '.join(foreign)}. Rename them in HubSpot or choose another prefix; "
                "nothing was written."
            )
        if self.group_name not in {g["name"] for g in client.list_groups()}:
            client.create_group(self.group_name, self.group_label)
            self.log.info("created HubSpot property group %s", self.group_name)
        labels = {a["id"]: a["name"] for a in audiences}
        for audience_id, name in names.items():
            self._ensure(client, name, labels[audience_id], existing.get(name))
        return names

    def _is_ours(self, prop: dict[str, Any]) -> bool:
        return prop.get("groupName") == self.group_name and prop.get("type") == "enumeration"

    def _ensure(self, client: HubSpotClient, name: str, label: str, prop: dict[str, Any] | None) -> None:
        if prop is None:
            client.create_property(
                {
                    "name": name,
                    "label": label,
                    "type": "enumeration",
                    "fieldType": "select",
                    "groupName": self.group_name,
                    "description": "Audience status from Adobe Experience Platform",
                    "options": audience_options(),
                }
            )
            self.log.info("created HubSpot property %s", name)
            return
        options = list(prop.get("options") or [])
        have = {o.get("value") for o in options}
        added = [o for o in audience_options() if o["value"] not in have]
        changes: dict[str, Any] = {}
        if added:
            changes["options"] = options + [{**o, "displayOrder": len(options) + i} for i, o in enumerate(added)]
        if prop.get("label") != label:
            changes["label"] = label
        if changes:
            client.update_property(name, changes)  # PATCH replaces the option list: send it whole
            self.log.info("updated HubSpot property %s: %s", name, ", ".join(sorted(changes)))


class UpsertContactsOperator(BaseOperator):
    """Upsert one mapped Parquet chunk (see ``audience_sync.upsert``) after checking the daily API budget.

    ``rate_share``: this task's part of the account's rate limit, e.g. 1/N when the pool ``hubspot_api``
    runs N upserts at once. Returns counts and the results / rejects paths.
    """

    template_fields: Sequence[str] = ("input_path", "output_dir", "batch_size", "threads", "rate_share", "hubspot_conn_id")

    def __init__(
        self,
        *,
        input_path: Any,
        output_dir: Any,
        batch_size: int = MAX_BATCH,
        threads: int = 1,
        rate_share: float | None = None,
        hubspot_conn_id: str = HubSpotHook.default_conn_name,
        progress_every_s: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.input_path = input_path
        self.output_dir = output_dir
        self.batch_size = batch_size
        self.threads = threads
        self.rate_share = rate_share
        self.hubspot_conn_id = hubspot_conn_id
        self.progress_every_s = progress_every_s

    def execute(self, context: Any) -> dict[str, Any]:
        hook = HubSpotHook(self.hubspot_conn_id, rate_share=None if self.rate_share is None else float(self.rate_share))
        client = HubSpotClient(hook)
        rows = storage.read_table(self.input_path, columns=["email"]).num_rows
        client.check_daily_budget(math.ceil(rows / int(self.batch_size)))
        return upsert_file(
            client, self.input_path, self.output_dir, int(self.batch_size), int(self.threads), self.progress_every_s
        )


class ValidateContactCountsOperator(BaseOperator):
    """Count contacts per audience property and status through HubSpot search and compare with ``expected``.

    HubSpot's search index lags writes by seconds ("Search the CRM"), so counts are polled until they
    match or ``max_wait_s`` runs out; then a mismatch beyond ``tolerance`` fails with a table.
    ``expected``: ``{property: {status: count}}`` or the path of a JSON file holding it.
    Returns the table rows for the run report.
    """

    template_fields: Sequence[str] = ("expected", "tolerance", "max_wait_s", "poll_s", "hubspot_conn_id")

    def __init__(
        self,
        *,
        expected: Any,
        tolerance: int = 0,
        max_wait_s: float = 120.0,
        poll_s: float = 5.0,
        hubspot_conn_id: str = HubSpotHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.expected = expected
        self.tolerance = tolerance
        self.max_wait_s = max_wait_s
        self.poll_s = poll_s
        self.hubspot_conn_id = hubspot_conn_id

    def execute(self, context: Any) -> list[dict[str, Any]]:
        expected = self.expected
        if isinstance(expected, str):
            expected = storage.read_json(expected) if not expected.lstrip().startswith("{") else json.loads(expected)
        client = HubSpotClient(HubSpotHook(self.hubspot_conn_id))
        deadline = time.monotonic() + float(self.max_wait_s)
        while True:
            found = {
                prop: {
                    status: client.search_count([{"propertyName": prop, "operator": "EQ", "value": status}])
                    for status in statuses
                }
                for prop, statuses in expected.items()
            }
            rows = compare_counts(expected, found, int(self.tolerance))
            if all_ok(rows):
                self.log.info("HubSpot contact counts match:\n%s", format_table(rows))
                return rows
            if time.monotonic() + float(self.poll_s) > deadline:
                raise CountMismatch(
                    f"HubSpot contact counts differ from the run's expectation by more than {self.tolerance} after "
                    f"waiting {self.max_wait_s} s for the search index:\n{format_table(rows)}"
                )
            self.log.info("HubSpot counts not there yet (search index lag); polling again in %s s", self.poll_s)
            time.sleep(float(self.poll_s))
