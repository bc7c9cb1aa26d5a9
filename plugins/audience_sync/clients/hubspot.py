"""HubSpot CRM calls the sync needs: contact properties and groups, batch upsert/update/read, search
counts, daily API usage. Wire shapes follow the 2026-03 reference pages on developers.hubspot.com (same
bodies under the legacy ``/crm/v3`` paths); the hook picks the path version.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from audience_sync.errors import PermanentError
from audience_sync.hooks.base import ApiError
from audience_sync.hooks.hubspot import HubSpotHook

log = logging.getLogger(__name__)

# Error codes that condemn every input carrying the named property, whatever its value.
PROPERTY_LEVEL_CODES = frozenset({"PROPERTY_DOESNT_EXIST", "READ_ONLY_VALUE", "PROPERTY_NOT_FOUND"})
# Value-level codes whose message starts with the refused value ("x was not one of the allowed options",
# "Email address x is invalid"): every input holding that value for that property fails the same check.
VALUE_LEVEL_CODES = frozenset({"INVALID_OPTION", "INVALID_EMAIL"})
NOT_FOUND = "OBJECT_NOT_FOUND"


@dataclass(frozen=True)
class Written:
    hubspot_id: str | None
    new: bool


@dataclass(frozen=True)
class Reject:
    category: str
    reason: str
    field: str | None = None
    code: str | None = None  # HubSpot's error code (INVALID_OPTION...), when its answer gave one


@dataclass
class UpsertAnswer:
    """Per input index: what HubSpot wrote, what it refused, and which contacts it does not have (updates)."""

    written: dict[int, Written]
    rejected: dict[int, Reject]
    gone: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class EmailLookup:
    """What a read by email found (lowercased): each returned contact's primary email, and the requested
    emails the answer names as not found."""

    primaries: frozenset[str]
    not_found: frozenset[str]


class BatchRejected(ApiError):
    """HubSpot refused a whole batch (400, or 404 for an update naming unknown contacts). ``blamed``: the
    inputs its error names (by trace id, id, an unknown property, or a refused value it starts with).
    ``suspects``: inputs whose value the error text quotes, a clue, not a verdict. ``gone``: inputs it names
    as not found; ``not_found``: the error says contacts do not exist, even when it names none."""

    def __init__(
        self,
        error: ApiError,
        blamed: dict[int, Reject],
        suspects: set[int],
        reject: Reject,
        gone: set[int] = frozenset(),
        not_found: bool = False,
    ) -> None:
        super().__init__(error.service, error.status, error.category, error.message, error.request_id, error.body)
        self.blamed = blamed
        self.suspects = suspects
        self.reject = reject  # what to record when a single input is refused and nothing names it
        self.gone = set(gone)
        self.not_found = not_found


class DailyBudgetExceeded(PermanentError):
    """Starting would run the account out of its daily API calls halfway through."""


class HubSpotClient:
    def __init__(self, hook: HubSpotHook, trace_ids: bool = True) -> None:
        self.hook = hook
        self.trace_ids = trace_ids  # off only to exercise the isolation of a whole-batch 400

    # --- properties and groups ("Properties" API, /crm/properties/<v>/contacts) ----------------------
    def list_properties(self) -> list[dict[str, Any]]:
        return self.hook.request_json("GET", self.hook.path("crm/properties", "contacts"))["results"]

    def get_property(self, name: str) -> dict[str, Any] | None:
        return self.hook.request_json("GET", self.hook.path("crm/properties", f"contacts/{name}"), ok_statuses=(404,))

    def create_property(self, definition: dict[str, Any]) -> dict[str, Any]:
        return self.hook.request_json("POST", self.hook.path("crm/properties", "contacts"), json=definition)

    def update_property(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        return self.hook.request_json("PATCH", self.hook.path("crm/properties", f"contacts/{name}"), json=changes)

    def list_groups(self) -> list[dict[str, Any]]:
        return self.hook.request_json("GET", self.hook.path("crm/properties", "contacts/groups"))["results"]

    def create_group(self, name: str, label: str, display_order: int = -1) -> dict[str, Any]:
        body = {"name": name, "label": label, "displayOrder": display_order}
        return self.hook.request_json("POST", self.hook.path("crm/properties", "contacts/groups"), json=body)

    # --- contacts -----------------------------------------------------------------------------------
    def batch_upsert(self, records: Sequence[tuple[str, dict[str, str]]]) -> UpsertAnswer:
        """Upsert ``(email, properties)`` records in one call; creates the contacts HubSpot does not have.

        Every input carries its own ``objectWriteTraceId`` so that HubSpot can answer 207 with the good
        inputs written and one error per bad one ("Upsert contacts" reference: inputs[].objectWriteTraceId,
        answer errors[] and numErrors). A whole-batch refusal raises ``BatchRejected``.
        """
        return self._batch_write("contacts/batch/upsert", records, updates=False)

    def batch_update_by_email(self, records: Sequence[tuple[str, dict[str, str]]]) -> UpsertAnswer:
        """Update existing contacts by email; never creates one ("Update contacts": inputs {id, idProperty,
        properties, objectWriteTraceId}, same 100-input limit). Contacts HubSpot does not have (deleted, or an
        address it no longer resolves after a merge) come back in ``gone``, whether HubSpot answers 207 with
        OBJECT_NOT_FOUND errors or refuses the whole batch (``BatchRejected.gone`` / ``not_found``)."""
        return self._batch_write("contacts/batch/update", records, updates=True)

    def _batch_write(
        self, endpoint: str, records: Sequence[tuple[str, dict[str, str]]], updates: bool
    ) -> UpsertAnswer:
        inputs = [{"idProperty": "email", "id": email, "properties": properties} for email, properties in records]
        if self.trace_ids:
            for item in inputs:
                item["objectWriteTraceId"] = uuid.uuid4().hex
        try:
            body = self.hook.request_json("POST", self.hook.path("crm/objects", endpoint), json={"inputs": inputs})
        except ApiError as error:
            if error.status in (400, 404):
                raise batch_rejected(error, inputs, updates) from None
            raise
        return read_upsert_answer(body or {}, inputs, "email")

    def lookup_emails(self, emails: Sequence[str]) -> EmailLookup:
        """``batch/read`` by email with ``properties`` email ("Read a batch of contacts": idProperty, inputs,
        properties; a 207 lists the ids it has no contact for in an OBJECT_NOT_FOUND error's ``context.ids``).
        Results carry no input reference, so they are told apart by their primary ``email`` only."""
        body = {"idProperty": "email", "inputs": [{"id": e} for e in emails], "properties": ["email"]}
        answer = self.hook.request_json("POST", self.hook.path("crm/objects", "contacts/batch/read"), json=body) or {}
        not_found = [e for e in answer.get("errors") or [] if isinstance(e, dict) and is_not_found(e)]
        named = attribute_errors(not_found, [{"id": e, "properties": {}} for e in emails])
        return EmailLookup(
            frozenset(
                str((r.get("properties") or {}).get("email") or "").strip().lower() for r in answer.get("results") or []
            ),
            frozenset(emails[i].strip().lower() for i in named),
        )

    def search_count(self, filters: list[dict[str, Any]]) -> int:
        """Contacts matching all ``filters``: one search with ``limit`` 1, reading ``total``
        ("Search the CRM" guide: filterGroups / filters, answer ``total``)."""
        body = {"filterGroups": [{"filters": filters}], "limit": 1, "properties": ["hs_object_id"]}
        answer = self.hook.request_json("POST", self.hook.path("crm/objects", "contacts/search"), json=body)
        return int(answer["total"])

    # --- account -------------------------------------------------------------------------------------
    def api_usage(self) -> dict[str, Any] | None:
        """"Retrieve private app daily API usage": results[] of {name, usageLimit, currentUsage, resetsAt}.
        A bare list (the shape of HubSpot's older daily-limit endpoint) is accepted too. None when the token
        may not read it (401/403: the endpoint's spec asks for a scope private apps seldom hold)."""
        answer = self.hook.optional_json(
            self.hook.path("account-info", "api-usage/daily/private-apps"), "the daily API budget pre-check"
        )
        if answer is None:
            return None
        results = answer.get("results", []) if isinstance(answer, dict) else answer
        daily = [r for r in results if "daily" in str(r.get("name", ""))] or results
        if not daily:
            raise ApiError(self.hook.service, 200, "NO_USAGE", "the API usage endpoint returned no results")
        return daily[0]

    def check_daily_budget(self, requests_needed: int) -> dict[str, Any] | None:
        """Raise before any write when the day's remaining calls cannot cover ``requests_needed``.

        OAuth apps have no daily limit (changelog "Rate limit headers will now appear for OAuth
        authenticated calls"), so they are not checked.
        """
        if self.hook.uses_oauth:
            log.info("OAuth app: HubSpot applies no daily API limit; budget check skipped")
            return None
        usage = self.api_usage()
        if usage is None:
            return None
        remaining = int(usage["usageLimit"]) - int(usage["currentUsage"])
        log.info(
            "HubSpot daily API budget: %d of %d calls left (resets %s); this run needs about %d",
            remaining, usage["usageLimit"], usage.get("resetsAt"), requests_needed,
        )
        if remaining < requests_needed:
            raise DailyBudgetExceeded(
                f"HubSpot daily API limit: {remaining} of {usage['usageLimit']} calls left today (resets "
                f"{usage.get('resetsAt', 'at midnight, account time zone')}), but this sync needs about "
                f"{requests_needed}. Nothing was written; rerun after the reset or raise the limit."
            )
        return usage


# --- pure helpers over HubSpot answers ----------------------------------------------------------------
def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple, set)):
        return [str(v) for v in value]
    return [str(value)]


def error_details(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Sub-errors of an error body: ``errors[]``, plus the list HubSpot embeds in validation messages
    ("Property values were not valid: [{...}]")."""
    details = [e for e in body.get("errors") or [] if isinstance(e, dict)]
    message = str(body.get("message") or "")
    embedded = re.search(r"(\[\s*\{.*\}\s*\])\s*$", message, re.DOTALL)
    if embedded:
        try:
            details += [e for e in json.loads(embedded.group(1)) if isinstance(e, dict)]
        except ValueError:
            pass
    return details


def _field_of(entry: dict[str, Any]) -> str | None:
    """The property an error concerns: ``context.propertyName``, a validation entry's ``name``, or a sub-error's."""
    context = entry.get("context") if isinstance(entry.get("context"), dict) else {}
    names = _as_list(context.get("propertyName") or context.get("propertyNames") or context.get("properties"))
    if names:
        return names[0]
    if entry.get("name"):
        return str(entry["name"])
    for detail in error_details(entry):
        field = _field_of(detail)
        if field:
            return field
    return None


def _code_of(entry: dict[str, Any]) -> str | None:
    code = entry.get("code") or entry.get("error") or entry.get("subCategory")
    if not code:
        for detail in entry.get("errors") or []:
            if isinstance(detail, dict) and (detail.get("code") or detail.get("subCategory")):
                return str(detail.get("code") or detail.get("subCategory"))
    return str(code) if code and not isinstance(code, dict) else None


def attribute_errors(entries: Sequence[dict[str, Any]], inputs: Sequence[dict[str, Any]]) -> dict[int, Reject]:
    """Which inputs each error names: by ``context.objectWriteTraceId``, by ``context.ids`` (the record
    ids, here emails), or, for property-level codes (unknown or read-only property), every input that
    carries the property. Inputs no error names are not blamed."""
    by_trace = {item.get("objectWriteTraceId"): i for i, item in enumerate(inputs)}
    by_id: dict[str, list[int]] = {}
    for i, item in enumerate(inputs):
        by_id.setdefault(str(item["id"]).strip().lower(), []).append(i)
    blamed: dict[int, Reject] = {}
    for entry in entries:
        context = entry.get("context") if isinstance(entry.get("context"), dict) else {}
        reject = describe(entry, "VALIDATION_ERROR")
        field, code = reject.field, _code_of(entry)
        targets = [by_trace[t] for t in _as_list(context.get("objectWriteTraceId")) if t in by_trace]
        if not targets:
            for record_id in _as_list(context.get("ids") or context.get("id") or context.get("email")):
                targets += by_id.get(record_id.strip().lower(), [])
        if not targets and field and code in PROPERTY_LEVEL_CODES:
            targets = [i for i, item in enumerate(inputs) if item["properties"].get(field) is not None]
        for index in targets:
            blamed.setdefault(index, reject)
    return blamed


def describe(entry: dict[str, Any], default_category: str) -> Reject:
    """Category, readable reason and property of one error entry: its sub-errors' codes and messages when
    it has them (HubSpot's "Property values were not valid: [...]" is unreadable as a reason)."""
    details = error_details(entry)
    parts = [
        f"{_code_of(d)}: {d.get('message')}" if _code_of(d) else str(d.get("message"))
        for d in details
        if d.get("message")
    ]
    code = _code_of(entry)
    reason = "; ".join(dict.fromkeys(parts)) or str(entry.get("message") or "rejected by HubSpot")
    if code and code not in reason:
        reason = f"{code}: {reason}"
    return Reject(str(entry.get("category") or code or default_category), reason, _field_of(entry), code)


def is_not_found(entry: dict[str, Any]) -> bool:
    """An error entry saying the objects do not exist (category or code OBJECT_NOT_FOUND)."""
    return NOT_FOUND in (entry.get("category"), _code_of(entry))


def batch_rejected(error: ApiError, inputs: Sequence[dict[str, Any]], updates: bool) -> BatchRejected:
    """What a whole-batch refusal tells about its inputs: an update's OBJECT_NOT_FOUND names missing contacts
    (by ``context.ids`` or by quoting them, or none); validation answers name culprits, property carriers or
    values. Only an answer categorised OBJECT_NOT_FOUND counts as not found, never a bare 404 (a wrong path)."""
    details = [{"category": error.category, **d} for d in error_details(error.body)]
    entries = [*details, error.body]  # the most specific entries first
    not_found = updates and any(is_not_found(e) for e in entries)
    gone: set[int] = set()
    if not_found:
        gone = set(attribute_errors([e for e in entries if is_not_found(e) or e is error.body], inputs))
        if not gone:
            message = f" {error.body.get('message') or error.message} "
            quoted = [re.compile(rf"[\s\[\"',]{re.escape(item['id'])}[\s\]\"',]") for item in inputs]
            gone = {i for i, pattern in enumerate(quoted) if pattern.search(message)}
    blamed = {i: r for i, r in attribute_errors(entries, inputs).items() if i not in gone}
    blamed.update({i: r for i, r in refused_values(details, inputs).items() if i not in gone})
    return BatchRejected(
        error,
        blamed,
        quoted_values(details, inputs) - gone,
        describe(error.body, error.category or "VALIDATION_ERROR"),
        gone,
        not_found,
    )


def refused_values(details: Sequence[dict[str, Any]], inputs: Sequence[dict[str, Any]]) -> dict[int, Reject]:
    """Inputs holding the very value a value-level error is about: its message starts with the value
    (INVALID_OPTION) or reads "Email address <value> is invalid" (INVALID_EMAIL). The same check refuses
    every input with that value, so these are verdicts, not clues."""
    blamed: dict[int, Reject] = {}
    for detail in details:
        field_name, code = _field_of(detail), _code_of(detail)
        message = str(detail.get("message") or "").strip()
        if code not in VALUE_LEVEL_CODES or not field_name or not message:
            continue
        for i, item in enumerate(inputs):
            value = item["id"] if field_name == item.get("idProperty") else item["properties"].get(field_name)
            if value and (message.startswith(f"{value} ") or message == f"Email address {value} is invalid"):
                blamed.setdefault(i, describe(detail, "VALIDATION_ERROR"))
    return blamed


def quoted_values(details: Sequence[dict[str, Any]], inputs: Sequence[dict[str, Any]]) -> set[int]:
    """Inputs whose value of the property an error names is quoted in its message, as in HubSpot's
    "x was not one of the allowed options" or "Email address x is invalid"."""
    suspects = set()
    for detail in details:
        field = _field_of(detail)
        message = f" {detail.get('message') or ''} "
        if not field:
            continue
        for i, item in enumerate(inputs):
            value = item["id"] if field == item.get("idProperty") else item["properties"].get(field)
            if value and f" {value} " in message:
                suspects.add(i)
    return suspects


def read_upsert_answer(body: dict[str, Any], inputs: Sequence[dict[str, Any]], id_property: str) -> UpsertAnswer:
    """Map a 200/201/207 answer back to inputs: errors by trace id (or id), results by trace id or by
    the id property's value. Inputs that match nothing are accounted for, never dropped."""
    errors = [e for e in body.get("errors") or [] if isinstance(e, dict)]
    gone = set(attribute_errors([e for e in errors if is_not_found(e)], inputs))
    refused = attribute_errors([e for e in errors if not is_not_found(e)], inputs)
    rejected = {i: r for i, r in refused.items() if i not in gone}
    by_trace = {item["objectWriteTraceId"]: i for i, item in enumerate(inputs) if "objectWriteTraceId" in item}
    by_id = {str(item["id"]).strip().lower(): i for i, item in enumerate(inputs)}
    written: dict[int, Written] = {}
    unmatched = []
    for result in body.get("results") or []:
        index = by_trace.get(result.get("objectWriteTraceId"))
        if index is None:
            value = (result.get("properties") or {}).get(id_property)
            index = by_id.get(str(value).strip().lower()) if value else None
        entry = Written(str(result["id"]) if result.get("id") is not None else None, bool(result.get("new", False)))
        if index is None or index in written:
            unmatched.append(entry)
        else:
            written[index] = entry
    rest = [i for i in range(len(inputs)) if i not in written and i not in rejected and i not in gone]
    if len(unmatched) == len(rest):
        # Results we could not match (no trace id, no email echoed): the rest were written, ids unknown.
        written.update({i: Written(None, entry.new) for i, entry in zip(rest, unmatched)})
    else:
        unexplained = body.get("numErrors") or 0
        for i in rest:
            rejected[i] = Reject(
                "UNCONFIRMED",
                f"HubSpot's answer neither confirmed nor rejected this input ({len(unmatched)} unmatched results, "
                f"{unexplained} errors reported)",
            )
    return UpsertAnswer(written, rejected, gone)
