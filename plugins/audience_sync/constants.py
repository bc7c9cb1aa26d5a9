"""Values several layers share, defined once (no Airflow, no I/O)."""

from __future__ import annotations

from enum import StrEnum

from audience_sync.errors import ConfigurationError

# AEP segmentation membership statuses, in the order people read them (aep.md, "segmentMembership"):
# also the options of each HubSpot audience property.
AUDIENCE_STATUSES = ("realized", "existing", "exited")
ACTIVE_AUDIENCE_STATUSES = ("realized", "existing")
EXITED = "exited"

# HubSpot "Upsert contacts" / "Update contacts": at most 100 inputs per batch request.
MAX_BATCH = 100


def checked_batch_size(value: object) -> int:
    """The one check of HubSpot's batch limit (config, params and the upsert all pass through it). A whole
    number or its text (a templated param); anything else (a bool, a fraction, a word) is refused too."""
    text = str(value).strip()
    whole = not isinstance(value, bool) and isinstance(value, (int, str)) and text.isascii() and text.isdigit()
    if not whole or not 1 <= int(text) <= MAX_BATCH:
        raise ConfigurationError(f"batch_size must be between 1 and {MAX_BATCH}, got {value!r} (HubSpot's batch limit)")
    return int(text)


class ExportJobStatus(StrEnum):
    """Statuses of a Segmentation export job (segmentation.yaml, ``ExportJobResponse.status``: NEW,
    PROCESSING, SUCCEEDED, FAILED; the job schema of the same spec adds QUEUED, CANCELLING and
    CANCELLED, which ``DELETE /export/jobs/{id}`` leads to)."""

    NEW = "NEW"
    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"

    @classmethod
    def parse(cls, value: object) -> ExportJobStatus | None:
        """The status AEP reported, or None when it is blank or not one we know (the caller stops waiting)."""
        try:
            return cls(str(value or "").strip().upper())
        except ValueError:
            return None

    @property
    def is_active(self) -> bool:
        """Still running: keep waiting."""
        return self in (ExportJobStatus.NEW, ExportJobStatus.QUEUED, ExportJobStatus.PROCESSING)

    @property
    def is_terminal(self) -> bool:
        return not self.is_active
