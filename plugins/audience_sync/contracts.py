"""What each task of the sync hands to the next, as typed records (no Airflow, no I/O).

XCom carries JSON, so every record turns into a plain dict (``to_xcom``) and back (``from_xcom``).
Operators return ``to_xcom()`` and read their inputs with ``from_xcom``: a field renamed on one side
fails at once with the record's name instead of reaching the report as a silent gap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from audience_sync.errors import InputError

T = TypeVar("T", bound="Contract")
Counts = dict[str, int]
StatusCounts = dict[str, dict[str, int]]  # audience property → status → contacts


def _plain(value: Any) -> Any:
    """Records and tuples (kept for immutability) → dicts and lists, recursively: JSON as it is."""
    if isinstance(value, Contract):
        return value.to_xcom()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class Contract:
    """``to_xcom``/``from_xcom`` for the frozen dataclasses below. A field with a default may be absent
    (a producer that does not send it yet); any other missing field is an error naming it."""

    def to_xcom(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_xcom(cls: type[T], data: Mapping[str, Any] | T) -> T:
        if isinstance(data, cls):
            return data
        if not isinstance(data, Mapping):
            raise InputError(f"{cls.__name__}: expected a dict from XCom, got {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in data and not _has_default(cls, n)]
        if missing:
            raise InputError(f"{cls.__name__} from XCom lacks {', '.join(missing)}")
        return cls(**cls._convert({n: data[n] for n in names if n in data}))

    @classmethod
    def _convert(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Nested records and tuples from their JSON form; overridden where a field needs it."""
        return values


def _has_default(cls: type, name: str) -> bool:
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


@dataclass(frozen=True)
class Audience(Contract):
    """An AEP audience as the run knows it; ``property`` is its HubSpot property once the map step named it."""

    id: str
    name: str
    namespace: str | None = None
    property: str | None = None

    def to_xcom(self) -> dict[str, Any]:
        """Unset optional fields are left out: ``{id, name}`` until the map step names the property."""
        return {k: v for k, v in super().to_xcom().items() if v is not None or k in ("id", "name")}


def _audiences(values: Any) -> tuple[Audience, ...]:
    return tuple(Audience.from_xcom(a) for a in values or ())


@dataclass(frozen=True)
class ConnectResult(Contract):
    """The ``connect`` task (SHARED_CONTRACTS item 4). ``skipped``: why no Flow Service connection was made."""

    connection_id: str | None
    etag: str | None
    created: bool
    dry_run: bool
    skipped: str | None = None


@dataclass(frozen=True)
class ExportResult(Contract):
    """``export_audiences``: the export's Parquet parts (export schema), their rows, the audiences, the job."""

    paths: tuple[str, ...]
    rows: int
    audiences: tuple[Audience, ...]
    job_id: str | int | None = None

    @classmethod
    def _convert(cls, values: dict[str, Any]) -> dict[str, Any]:
        return {**values, "paths": tuple(values["paths"]), "audiences": _audiences(values["audiences"])}


@dataclass(frozen=True)
class MapResult(Contract):
    """``map_contacts``: valid profiles mapped to HubSpot properties, the rejects, and what the properties
    step needs (audiences with their property names, the mapping's target properties)."""

    mapped_paths: tuple[str, ...]
    rejects_path: str
    counts: dict[str, Any]  # exported, valid, deduplicated, rejected, rejected_by_category
    duration_s: float
    audiences: tuple[Audience, ...]
    target_properties: tuple[str, ...]
    keep_on_missing: tuple[str, ...] = ()  # mapped properties never cleared (mapping ``on_missing: keep``)

    @classmethod
    def _convert(cls, values: dict[str, Any]) -> dict[str, Any]:
        return {
            **values,
            "mapped_paths": tuple(values["mapped_paths"]),
            "audiences": _audiences(values["audiences"]),
            "target_properties": tuple(values["target_properties"]),
            "keep_on_missing": tuple(values.get("keep_on_missing") or ()),
        }

    @property
    def audience_properties(self) -> list[str]:
        return [a.property for a in self.audiences if a.property]


@dataclass(frozen=True)
class PlanResult(Contract):
    """``plan_sync``: what this run sends, and the snapshot it would commit once HubSpot confirmed it.
    ``snapshot_version``: the content hash of the snapshot planned on ("" = none), which the commit checks;
    ``guard``: the mass-change guard's numbers (``incremental.check_mass_change``)."""

    send_paths: tuple[str, ...]
    next_snapshot_path: str
    previous_snapshot_path: str | None
    counts: Counts  # new, changed, exited, unchanged, held, absent, to_send, previous, exiting, ...
    sent_by_audience: StatusCounts
    duration_s: float
    dry_run: bool
    full_refresh: bool
    snapshot_version: str = ""
    guard: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def _convert(cls, values: dict[str, Any]) -> dict[str, Any]:
        return {**values, "send_paths": tuple(values["send_paths"])}


@dataclass(frozen=True)
class UpsertSummary(Contract):
    """One ``upsert_contacts`` task (SHARED_CONTRACTS item 3). ``gone``, ``rejected_by_category`` and
    ``gone_path`` default to nothing until upsert.py produces them."""

    records: int
    sent: int
    created: int
    updated: int
    rejected: int
    requests: int
    results_path: str
    rejects_path: str
    started_at: float
    finished_at: float
    gone: int = 0
    rejected_by_category: Counts = field(default_factory=dict)
    gone_path: str | None = None

    @staticmethod
    def total(summaries: list[UpsertSummary]) -> dict[str, Any]:
        """Counts summed over the mapped upserts, rejects by category, and their wall time first start →
        last end."""
        totals: dict[str, Any] = {"chunks": len(summaries), "rejected_by_category": {}}
        for name in ("records", "sent", "created", "updated", "gone", "rejected", "requests"):
            totals[name] = sum(getattr(s, name) for s in summaries)
        for summary in summaries:
            for category, n in summary.rejected_by_category.items():
                totals["rejected_by_category"][category] = totals["rejected_by_category"].get(category, 0) + n
        if summaries:
            wall = max(s.finished_at for s in summaries) - min(s.started_at for s in summaries)
            totals["wall_seconds"] = round(wall, 3)
        return totals


@dataclass(frozen=True)
class SnapshotCandidate(Contract):
    """``build_snapshot_candidate``: the snapshot to commit (the plan's, minus upsert rejects) and the
    contact counts HubSpot should hold after the run."""

    snapshot_candidate_path: str
    expected_counts_path: str
    upsert_rejected: int
    gone_in_hubspot: int
    planned_snapshot_version: str  # the commit refuses a snapshot that moved since


@dataclass(frozen=True)
class ValidationRow(Contract):
    property: str
    status: str
    expected: int
    found: int | None
    difference: int | None
    ok: bool


@dataclass(frozen=True)
class ValidationResult(Contract):
    """``validate_counts``: per audience property and status, what HubSpot's search found."""

    rows: tuple[ValidationRow, ...]

    @classmethod
    def _convert(cls, values: dict[str, Any]) -> dict[str, Any]:
        return {"rows": tuple(ValidationRow.from_xcom(r) for r in values["rows"])}

    def table(self, column: str) -> StatusCounts:
        """``expected`` or ``found`` as property → status → count."""
        nested: StatusCounts = {}
        for row in self.rows:
            nested.setdefault(row.property, {})[row.status] = getattr(row, column)
        return nested


@dataclass(frozen=True)
class CommitResult(Contract):
    """``commit_snapshot``: where the snapshot now is, and its version record (sha256, generation, run_id)."""

    snapshot_path: str
    version: dict[str, Any]


@dataclass(frozen=True)
class ReportResult(Contract):
    """``run_report``: the report's two files (``report`` is the JSON one, as scripts read it)."""

    report: str
    report_md: str
