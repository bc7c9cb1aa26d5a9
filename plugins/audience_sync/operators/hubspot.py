"""Thin Airflow operators over the HubSpot client: audience properties, upserts, count validation."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator

from audience_sync import storage
from audience_sync.clients.hubspot import HubSpotClient
from audience_sync.constants import MAX_BATCH, checked_batch_size
from audience_sync.contracts import UpsertSummary, ValidationResult, ValidationRow
from audience_sync.errors import PermanentError
from audience_sync.hooks.hubspot import HubSpotHook
from audience_sync.naming import DEFAULT_PREFIX, audience_property_names
from audience_sync.operators.sync import record_property_names
from audience_sync.properties import DEFAULT_GROUP, DEFAULT_GROUP_LABEL, PropertySetupError, reconcile
from audience_sync.upsert import requests_needed, upsert_file
from audience_sync.validation import all_ok, compare_counts, format_table

__all__ = [
    "CountMismatch",
    "EnsureAudiencePropertiesOperator",
    "PropertySetupError",
    "UpsertContactsOperator",
    "ValidateContactCountsOperator",
]


class CountMismatch(PermanentError, AssertionError):
    """HubSpot's contact counts differ from the run's expectation beyond the tolerance, after the bounded
    wait for HubSpot's search index: a task retry would only wait again (the run fails at once)."""


def _loaded(value: Any) -> Any:
    """A templated list rendered without native objects arrives as JSON text."""
    return json.loads(value) if isinstance(value, str) else value


class _HubSpotOperator(BaseOperator):
    """The ``hook`` and ``client`` every HubSpot operator uses (built once, after templates are rendered)."""

    hubspot_conn_id: str

    @cached_property
    def hook(self) -> HubSpotHook:
        return HubSpotHook(self.hubspot_conn_id)

    @cached_property
    def client(self) -> HubSpotClient:
        return HubSpotClient(self.hook)


class EnsureAudiencePropertiesOperator(_HubSpotOperator):
    """Make sure HubSpot holds the mapping's target properties and one enumeration property per audience.

    Checks every target property first and fails, naming the missing ones, before any write; then writes
    what :func:`audience_sync.properties.reconcile` says is missing (group, properties, options, labels).
    Run as a DAG's task, it then records the names in the DAG's property registry
    (``operators.sync.record_property_names``): an audience renamed in AEP keeps its property.

    :param audiences: ``[{id, name, property?}]`` of the run (a list, or its JSON text); ``property`` is
        the name map_contacts gave the audience, else one is derived from the audience's name.
    :param target_properties: the HubSpot properties the mapping writes.
    :param prefix: the audience property name prefix (``naming.audience_property_names``).
    :param group_name: the property group of the audience properties.
    :param group_label: the group's label when it is created.
    :param hubspot_conn_id: the Airflow connection to HubSpot.
    :return: ``{audience_id: property_name}``.
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
        pinned = {a["id"]: a["property"] for a in audiences if a.get("property")}  # named by map_contacts
        names = audience_property_names(audiences, self.prefix, pinned)  # a name collision raises here
        labels = {a["id"]: a["name"] for a in audiences}
        changes = reconcile(
            self.client.list_properties(),
            [g["name"] for g in self.client.list_groups()],
            {name: labels[audience_id] for audience_id, name in names.items()},
            _loaded(self.target_properties),
            self.group_name,
        )
        if changes.create_group:
            self.client.create_group(self.group_name, self.group_label)
            self.log.info("created HubSpot property group %s", self.group_name)
        for payload in changes.create:
            self.client.create_property(payload)
            self.log.info("created HubSpot property %s", payload["name"])
        for name, patch in changes.update:
            self.client.update_property(name, patch)
            self.log.info("updated HubSpot property %s: %s", name, ", ".join(sorted(patch)))
        if context.get("dag") is not None:  # as a DAG's task: later runs keep these names (README)
            record_property_names(context["dag"].dag_id, names)
        return names

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: HubSpot's contact properties (the audience ones and the mapping's targets) written."""
        from audience_sync import lineage  # the provider calls this; the module imports OpenLineage lazily
        return lineage.properties_lineage(
            lineage.hubspot_namespace(self.hook.connection.host, self.hook.connection.port),
            task_instance.xcom_pull(task_ids=self.task_id),
            _loaded(self.target_properties),
        ).operator_lineage()


class UpsertContactsOperator(_HubSpotOperator):
    """Upsert one Parquet chunk of the plan (see ``audience_sync.upsert``) after checking the daily API budget.

    :param input_path: the chunk (``plan/send/part-*.parquet``); the task is mapped over the plan's chunks.
    :param output_dir: where the results, rejects and checkpoint files go.
    :param batch_size: contacts per batch request, 1 to ``MAX_BATCH``; templated because a run's params may
        set it (native rendering gives an int), checked once by ``constants.checked_batch_size``.
    :param threads: batches in flight at once.
    :param rate_share: this task's part of the account's rate limit, e.g. 1/N when the pool runs N upserts
        at once; templated because N depends on how many chunks the run has.
    :param hubspot_conn_id: the Airflow connection to HubSpot.
    :param progress_every_s: seconds between progress log lines.
    :return: the chunk's :class:`~audience_sync.contracts.UpsertSummary`, as a dict.
    """

    template_fields: Sequence[str] = ("input_path", "output_dir", "batch_size", "rate_share", "hubspot_conn_id")

    def __init__(
        self,
        *,
        input_path: Any,
        output_dir: Any,
        batch_size: int = MAX_BATCH,
        threads: int = 1,
        rate_share: float | str | None = None,
        hubspot_conn_id: str = HubSpotHook.default_conn_name,
        progress_every_s: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.input_path = input_path
        self.output_dir = output_dir
        self.batch_size = batch_size
        self.threads = int(threads)
        self.rate_share = rate_share
        self.hubspot_conn_id = hubspot_conn_id
        self.progress_every_s = float(progress_every_s)

    @cached_property
    def hook(self) -> HubSpotHook:
        return HubSpotHook(self.hubspot_conn_id, rate_share=None if self.rate_share is None else float(self.rate_share))

    def execute(self, context: Any) -> dict[str, Any]:
        batch_size = checked_batch_size(self.batch_size)
        self.client.check_daily_budget(requests_needed(self.input_path, batch_size))
        summary = upsert_file(self.client, self.input_path, self.output_dir, batch_size, self.threads, self.progress_every_s)
        return UpsertSummary.from_xcom(summary).to_xcom()

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the send chunk read; HubSpot's contacts and the chunk's rejects file written."""
        from audience_sync import lineage  # the provider calls this; the module imports OpenLineage lazily
        return lineage.upsert_lineage(
            self.input_path,
            task_instance.xcom_pull(task_ids=self.task_id),
            lineage.hubspot_namespace(self.hook.connection.host, self.hook.connection.port),
        ).operator_lineage()


class ValidateContactCountsOperator(_HubSpotOperator):
    """Count contacts per audience property and status through HubSpot search and compare with ``expected``.

    HubSpot's search index lags writes by seconds ("Search the CRM"), so counts are polled until they
    match or ``max_wait_s`` runs out; then a mismatch beyond ``tolerance`` fails with a table.

    :param expected: ``{property: {status: count}}``, or the path of a JSON file holding it.
    :param tolerance: the difference per row still accepted.
    :param max_wait_s: how long to wait for the search index.
    :param poll_s: seconds between two counts.
    :param hubspot_conn_id: the Airflow connection to HubSpot.
    :return: a :class:`~audience_sync.contracts.ValidationResult`, as a dict.
    """

    template_fields: Sequence[str] = ("expected", "hubspot_conn_id")

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
        self.tolerance = int(tolerance)
        self.max_wait_s = float(max_wait_s)
        self.poll_s = float(poll_s)
        self.hubspot_conn_id = hubspot_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        expected = self.expected
        if isinstance(expected, str):
            expected = storage.read_json(expected) if not expected.lstrip().startswith("{") else json.loads(expected)
        deadline = time.monotonic() + self.max_wait_s
        while True:
            found = {
                prop: {
                    status: self.client.search_count([{"propertyName": prop, "operator": "EQ", "value": status}])
                    for status in statuses
                }
                for prop, statuses in expected.items()
            }
            rows = compare_counts(expected, found, self.tolerance)
            if all_ok(rows):
                self.log.info("HubSpot contact counts match:\n%s", format_table(rows))
                return ValidationResult(tuple(ValidationRow(**r) for r in rows)).to_xcom()
            if time.monotonic() + self.poll_s > deadline:
                raise CountMismatch(
                    f"HubSpot contact counts differ from the run's expectation by more than {self.tolerance} after "
                    f"waiting {self.max_wait_s} s for the search index:\n{format_table(rows)}\nThe snapshot was not "
                    "advanced. If contacts were changed in HubSpot outside the sync, a run with full_refresh "
                    "reconciles the snapshot with what HubSpot holds."
                )
            self.log.info("HubSpot counts not there yet (search index lag); polling again in %s s", self.poll_s)
            time.sleep(self.poll_s)
