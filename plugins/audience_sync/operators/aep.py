"""Operators for the AEP side: the Flow Service connection to HubSpot, and the audience export."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook, BaseOperator, ObjectStoragePath, ResumableJobMixin
from airflow.sdk.log import mask_secret

from audience_sync import file_exports, source_files, storage
from audience_sync.clients.aep import HUBSPOT_CONNECTION_SPEC_ID, AepClient, parquet_footer
from audience_sync.config import FLOW_SERVICE_MODES, load_sync_config, resolve_within_roots
from audience_sync.constants import ExportJobStatus
from audience_sync.contracts import Audience, ExportResult
from audience_sync.errors import ConfigurationError, PermanentError, TransientError
from audience_sync.hooks.aep import AepHook
from audience_sync.hooks.hubspot import HubSpotHook
from audience_sync.templating import rendered_bool, rendered_list, rendered_optional
from audience_sync.triggers.aep_export import AepExportJobTrigger, wait_outcome

DEFAULT_CONNECTION_NAME = "HubSpot connection (Airflow audience sync)"
# The HubSpot OAuth app in the Airflow connection's extras → Flow Service auth params (seeds 000-003). The
# fourth param, accessToken, is never read from the connection: connect refreshes one through HubSpot.
HUBSPOT_OAUTH_EXTRAS = {
    "client_id": "clientId",
    "client_secret": "clientSecret",
    "refresh_token": "refreshToken",
}


class AepExportFailed(TransientError):
    """The export job ended FAILED; the message carries the job's ``errors[]``. A task retry submits a
    fresh job (AEP's segmentation jobs fail for passing reasons too), which writes nothing to HubSpot."""


class AepExportAbandoned(PermanentError):
    """The export job was cancelled, or reported a status AEP does not document: waiting cannot end it."""


def hubspot_flow_credentials(hubspot_conn_id: str) -> dict[str, str] | None:
    """The Flow Service auth params of the HubSpot connection's OAuth app, with an access token refreshed
    just now through HubSpot's token endpoint (an ``access_token`` extra may be stale). ``None`` when the
    connection holds no OAuth app (a private-app token or service key only); a partial app is an error."""
    hook = HubSpotHook(hubspot_conn_id)
    extras = hook.extras
    present = [name for name in HUBSPOT_OAUTH_EXTRAS if extras.get(name)]
    if not present:
        return None
    missing = [name for name in HUBSPOT_OAUTH_EXTRAS if name not in present]
    if missing:
        raise ConfigurationError(
            f"Airflow connection {hubspot_conn_id!r} lacks extra(s) {', '.join(missing)}: the Flow Service "
            "HubSpot connection needs the OAuth app's client_id, client_secret and refresh_token"
        )
    for name in ("client_secret", "refresh_token"):
        mask_secret(extras[name])
    params = {param: extras[name] for name, param in HUBSPOT_OAUTH_EXTRAS.items()}
    return {**params, "accessToken": hook.oauth_access_token()}


def hubspot_connection_payload(name: str, description: str, auth_params: dict[str, str]) -> dict[str, Any]:
    """The ``POST /connections`` body of Adobe's HubSpot source tutorial (seeds 000-003)."""
    if not name or not name.strip():
        raise ConfigurationError("the Flow Service connection needs a non-empty name")
    missing = [param for param in (*HUBSPOT_OAUTH_EXTRAS.values(), "accessToken") if not auth_params.get(param)]
    if missing:
        raise ConfigurationError(f"HubSpot auth params missing: {', '.join(missing)}")
    return {
        "name": name,
        "description": description,
        "auth": {"specName": "Basic Authentication", "params": dict(auth_params)},
        "connectionSpec": {"id": HUBSPOT_CONNECTION_SPEC_ID, "version": "1.0"},
    }


def _is_enabled(resource: dict[str, Any]) -> bool:
    """Flow Service resources carry ``state`` (enabled, disabled, draft); absent means enabled."""
    return str(resource.get("state") or "enabled").lower() == "enabled"


class EnsureHubSpotConnectionOperator(BaseOperator):
    """Idempotently makes sure AEP has one enabled Flow Service base connection to HubSpot with this name.

    The HubSpot source takes an OAuth app only. ``flow_service_connection`` (default: the sync config's):
    ``auto`` makes the connection when ``hubspot_conn_id`` holds an OAuth app and otherwise skips it,
    ``required`` fails without one, ``off`` skips it without calling AEP. A skip never fails the sync.

    Returns ``{connection_id, etag, created, dry_run, skipped}`` (``skipped``: why no connection was made,
    else None); never a credential.
    """

    template_fields: Sequence[str] = ("name", "description", "dry_run", "flow_service_connection")

    def __init__(
        self,
        *,
        name: str = DEFAULT_CONNECTION_NAME,
        description: str = "HubSpot source connection managed by the Airflow audience sync",
        aep_conn_id: str = AepHook.default_conn_name,
        hubspot_conn_id: str = "hubspot_default",
        dry_run: bool = False,
        flow_service_connection: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.name = name
        self.description = description
        self.aep_conn_id = aep_conn_id
        self.hubspot_conn_id = hubspot_conn_id
        self.dry_run = dry_run
        self.flow_service_connection = flow_service_connection

    def execute(self, context) -> dict[str, Any]:
        dry_run = rendered_bool(self.dry_run)
        mode = self._mode()
        if mode == "off":
            return self._skipped("flow_service_connection is 'off' in the sync config", dry_run)
        credentials = hubspot_flow_credentials(self.hubspot_conn_id)
        if credentials is None:
            reason = (
                f"Airflow connection {self.hubspot_conn_id!r} holds no HubSpot OAuth app (extras client_id, "
                "client_secret, refresh_token), and AEP's Flow Service HubSpot source accepts nothing else "
                "(a private-app token or service key cannot make it)"
            )
            if mode == "required":
                raise ConfigurationError(f"{reason}; flow_service_connection is 'required'")
            return self._skipped(reason, dry_run)
        self.log.info("HubSpot OAuth access token refreshed for the Flow Service connection")
        payload = hubspot_connection_payload(self.name, self.description, credentials)
        client = AepClient(AepHook(self.aep_conn_id))
        existing = self._existing(client)
        if existing is not None:
            if not _is_enabled(existing):
                raise ConfigurationError(
                    f"AEP connection {existing['id']} named {self.name!r} exists but is {existing.get('state')!r}, "
                    "not enabled; enable or delete it in AEP, then rerun"
                )
            self.log.info("AEP HubSpot connection %s already exists; nothing to do", existing["id"])
            return self._result(existing["id"], existing.get("etag"), False, dry_run)
        spec = client.get_connection_spec(HUBSPOT_CONNECTION_SPEC_ID)
        if not _is_enabled(spec):
            raise PermanentError(f"AEP connection spec {HUBSPOT_CONNECTION_SPEC_ID} (HubSpot) is {spec.get('state')!r}")
        if dry_run:
            self.log.info("Dry run: credentials, connection spec and payload are valid; would create %r", self.name)
            return self._result(None, None, False, True)
        created = client.create_connection(payload)
        self.log.info("Created AEP HubSpot connection %s", created["id"])
        return self._result(created["id"], created.get("etag"), True, False)

    def _mode(self) -> str:
        mode = rendered_optional(self.flow_service_connection) or load_sync_config().flow_service_connection
        if mode not in FLOW_SERVICE_MODES:
            raise ConfigurationError(
                f"flow_service_connection must be one of {', '.join(FLOW_SERVICE_MODES)}, not {mode!r}"
            )
        return mode

    def _skipped(self, reason: str, dry_run: bool) -> dict[str, Any]:
        self.log.warning("AEP Flow Service HubSpot connection skipped: %s", reason)
        return self._result(None, None, False, dry_run, skipped=reason)

    @staticmethod
    def _result(
        connection_id: str | None, etag: str | None, created: bool, dry_run: bool, skipped: str | None = None
    ) -> dict[str, Any]:
        return {"connection_id": connection_id, "etag": etag, "created": created, "dry_run": dry_run,
                "skipped": skipped}

    def _existing(self, client: AepClient) -> dict[str, Any] | None:
        connections = client.list_connections(f"connectionSpec.id=={HUBSPOT_CONNECTION_SPEC_ID}")
        named = [c for c in connections if c.get("name") == self.name]
        if len(named) > 1:
            ids = ", ".join(c["id"] for c in named)
            raise ConfigurationError(f"{len(named)} AEP HubSpot connections are named {self.name!r} ({ids}); keep one")
        return named[0] if named else None


class ExportAudiencesOperator(ResumableJobMixin, BaseOperator):
    """Exports audiences from AEP into Parquet files of the export schema in ``output_dir``.

    API path: one export job for all audiences (statuses realized, existing, exited), waited for in the
    triggerer (``deferrable=True``) or by polling, then every Parquet part downloaded through Data Access.
    The job id is kept in the task state store (``ResumableJobMixin``), so a retry reconnects to the job
    instead of starting another, and on the operator (``job_id``), so ``on_kill`` cancels it. A cancelled
    job, or a status AEP does not document, ends the wait at once with :class:`AepExportAbandoned`.
    File path (``source_files``): :mod:`audience_sync.source_files` converts CSV/Parquet exports instead.

    :param audiences: AEP audience ids or names (a list, or its text when rendered without native objects).
    :param output_dir: the run's export folder (local or object storage).
    :param export_dataset_id: the dataset the job writes to; empty = the connection's extra.
    :param merge_policy_id: the job's merge policy; empty = the connection's extra.
    :param aep_conn_id: the Airflow connection to AEP.
    :param source_files: read a file-based export (path, folder, glob or URL) instead of running a job.
    :param poll_interval: seconds between two status checks.
    :param job_timeout: how long the job may run.
    :param deferrable: wait in the triggerer rather than in the worker.
    :return: an :class:`~audience_sync.contracts.ExportResult`, as a dict.
    """

    template_fields: Sequence[str] = ("audiences", "output_dir", "source_files", "export_dataset_id", "merge_policy_id")
    external_id_key = "aep_export_job_id"

    def __init__(
        self,
        *,
        audiences: str | list[str],
        output_dir: str | ObjectStoragePath,
        export_dataset_id: str | None = None,
        merge_policy_id: str | None = None,
        aep_conn_id: str = AepHook.default_conn_name,
        source_files: str | None = None,
        poll_interval: float = 10.0,
        job_timeout: timedelta | float = timedelta(hours=3),
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.audiences = audiences
        self.output_dir = output_dir
        self.export_dataset_id = export_dataset_id
        self.merge_policy_id = merge_policy_id
        self.aep_conn_id = aep_conn_id
        self.source_files = source_files
        self.poll_interval = float(poll_interval)
        self.job_timeout = job_timeout if isinstance(job_timeout, timedelta) else timedelta(seconds=job_timeout)
        self.deferrable = bool(deferrable)
        self.job_id: str | int | None = None  # the running export job, for on_kill
        self._resolved: list[dict[str, str]] = []
        self._results: dict[Any, dict[str, Any]] = {}

    @cached_property
    def hook(self) -> AepHook:
        return AepHook(self.aep_conn_id)

    @cached_property
    def client(self) -> AepClient:
        return AepClient(self.hook)

    # --- entry points -----------------------------------------------------------------------------
    def execute(self, context) -> dict[str, Any]:
        source = self._source()  # a path outside the allowed roots fails before any call
        self._resolved = self.client.resolve_audiences(rendered_list(self.audiences))
        self.log.info("Exporting %d audience(s): %s", len(self._resolved), ", ".join(a["name"] for a in self._resolved))
        if source:
            return self._convert_files(source)
        return self.execute_resumable(context)

    def execute_complete(
        self, context, event: dict[str, Any], audiences: list[dict[str, str]] | None = None
    ) -> dict[str, Any]:
        """Resumed by the trigger's event. ``dag.test()`` (3.3.2) drops the defer kwargs and passes only the
        event, so the audiences are resolved again when they are missing."""
        self._resolved = audiences if audiences is not None else self.client.resolve_audiences(
            rendered_list(self.audiences)
        )
        self.job_id = event.get("job_id")
        self._raise_for(event)
        return self.get_job_result(event["job_id"], context)

    def on_kill(self) -> None:
        """Cancel the export job this task started or reconnected to (``DELETE /export/jobs/{id}``)."""
        if self.job_id is None:
            return
        try:
            answer = self.client.cancel_export_job(self.job_id)
            self.log.info("Cancelled AEP export job %s: %s", self.job_id, answer.get("message", "no message"))
        except Exception as error:  # noqa: BLE001 - the task is being killed: report, never mask the kill
            self.log.warning("Could not cancel AEP export job %s: %s", self.job_id, error)

    # --- ResumableJobMixin ------------------------------------------------------------------------
    def submit_job(self, context) -> Any:
        settings = self.hook.settings
        dataset_id = rendered_optional(self.export_dataset_id) or settings.export_dataset_id
        merge_policy_id = rendered_optional(self.merge_policy_id) or settings.merge_policy_id
        if not dataset_id or not merge_policy_id:
            raise ConfigurationError(
                "an AEP export needs export_dataset_id and merge_policy_id: pass them to the task or set them "
                f"as extras of the Airflow connection {self.aep_conn_id!r}"
            )
        body = AepClient.export_job_body(self._resolved, dataset_id, merge_policy_id)  # each in its namespace
        job = self.client.create_export_job(body)
        self.job_id = job["id"]
        self.log.info("Started AEP export job %s (status %s)", job["id"], job.get("status"))
        return job["id"]

    def get_job_status(self, external_id: Any, context) -> str:
        return str(self.client.get_export_job(external_id).get("status") or "")

    def is_job_active(self, status: str) -> bool:
        parsed = ExportJobStatus.parse(status)
        return parsed is not None and parsed.is_active

    def is_job_succeeded(self, status: str) -> bool:
        return ExportJobStatus.parse(status) is ExportJobStatus.SUCCEEDED

    def poll_until_complete(self, external_id: Any, context) -> dict[str, Any]:
        """Defers to the trigger, or polls here when ``deferrable=False``; returns the result because the
        mixin returns this method's value when it reconnects to a running job. Both ways end on the same
        outcomes (``triggers.aep_export.wait_outcome``)."""
        self.job_id = external_id
        if self.deferrable:
            self.defer(
                trigger=AepExportJobTrigger(external_id, self.aep_conn_id, self.poll_interval),
                method_name="execute_complete",
                kwargs={"audiences": self._resolved},
                timeout=self.job_timeout,
            )
        deadline = time.monotonic() + self.job_timeout.total_seconds()
        while (outcome := wait_outcome(external_id, job := self.client.get_export_job(external_id))) is None:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"AEP export job {external_id} still {job.get('status')} after {self.job_timeout}")
            self.log.info("AEP export job %s is %s; next check in %.0f s", external_id, job.get("status"), self.poll_interval)
            time.sleep(self.poll_interval)
        self._raise_for(outcome)
        return self.get_job_result(external_id, context)

    def get_job_result(self, external_id: Any, context) -> dict[str, Any]:
        if external_id not in self._results:
            job = self.client.get_export_job(external_id)
            outcome = wait_outcome(external_id, job) or {"status": "error", "message": (
                f"AEP export job {external_id} is {job.get('status')}, not SUCCEEDED"
            )}
            self._raise_for(outcome)
            self._results[external_id] = self._download(job)
        self.job_id = None  # done: nothing left to cancel
        return self._results[external_id]

    # --- work -------------------------------------------------------------------------------------
    def _raise_for(self, outcome: dict[str, Any]) -> None:
        """A wait outcome other than SUCCEEDED as the task's error."""
        if outcome.get("status") == "FAILED":
            errors = outcome.get("errors") or []
            described = "; ".join(f"{e.get('code', '?')}: {e.get('msg') or e.get('message') or e}" for e in errors)
            raise AepExportFailed(f"AEP export job {outcome.get('job_id')} FAILED: {described or 'no errors reported'}")
        if outcome.get("status") == "error":
            raise AepExportAbandoned(f"waiting for AEP export job {outcome.get('job_id')} failed: {outcome.get('message')}")

    def _output(self) -> ObjectStoragePath:
        """The run's staging folder, emptied of parts an earlier attempt left behind."""
        folder = storage.as_path(self.output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("part-*.parquet"):
            stale.unlink()
        return folder

    def _download(self, job: dict[str, Any]) -> dict[str, Any]:
        """Every part of the job's batch (``AepClient.download_export``: nested directories followed, each
        part's reported size capped by ``max_input_bytes``, rows checked against the job's profile counter,
        so an export that lost parts fails here, before anything is mapped or written), then parts in
        another Parquet flavour (e.g. another timestamp unit) rewritten in the export schema."""
        started = time.monotonic()
        download = self.client.download_export(job, self._output(), load_sync_config().max_input_bytes)
        for path in download.paths:
            if not parquet_footer(path)[0].equals(file_exports.EXPORT_SCHEMA):
                storage.write_parquet(file_exports.to_export_schema(storage.read_table(path), path), path)
        elapsed = max(time.monotonic() - started, 1e-9)
        self.log.info(
            "AEP export job %s: %d profiles in %d part(s), %.1f MB in %.1f s (%.0f rows/s)",
            job["id"], download.rows, len(download.paths), download.bytes / 1e6, elapsed, download.rows / elapsed,
        )
        return self._result(download.paths, download.rows, job["id"])

    def _source(self) -> str | None:
        """The ``source_files`` param inside the configured roots (``allowed_roots``), or None for an API export."""
        source = rendered_optional(self.source_files)
        if not source:
            return None
        return resolve_within_roots(source, load_sync_config().roots(str(storage.base_path())))

    def _convert_files(self, source: str) -> dict[str, Any]:
        """A requested audience without a single member in the files fails the task: the files were
        exported for other audiences, and treating it as empty would mark all its members exited."""
        converted = source_files.convert(source, self._output(), load_sync_config().max_input_bytes)
        self.log.info("Converted %d file-based export file(s) into %d profiles", len(converted.paths), converted.rows)
        file_exports.check_audiences_found(set(converted.audience_ids), self._resolved)
        return self._result(list(converted.paths), converted.rows, None)

    def _result(self, paths: list[str], rows: int, job_id: Any) -> dict[str, Any]:
        audiences = tuple(Audience(a["id"], a["name"], a.get("namespace")) for a in self._resolved)
        return ExportResult(tuple(paths), rows, audiences, job_id).to_xcom()

    def get_openlineage_facets_on_complete(self, task_instance) -> Any:
        """OpenLineage: the AEP audiences and export dataset (or source files) read, the export folder written."""
        from audience_sync import lineage  # the provider calls this; the module imports OpenLineage lazily
        return lineage.export_lineage(
            task_instance.xcom_pull(task_ids=self.task_id), self.hook.settings, str(self.output_dir),
            rendered_optional(self.export_dataset_id), rendered_optional(self.source_files),
        ).operator_lineage()
