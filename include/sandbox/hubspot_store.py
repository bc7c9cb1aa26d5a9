"""SQLite state of the HubSpot sandbox: contact property definitions, contacts and a lagging search index.

Wire rules are cited beside the code that enforces them; the HTTP layer is ``sandbox.hubspot``.
Contacts keep their properties as one JSON column (one row per contact keeps a 100-input upsert to a
handful of statements); the search index is a separate ``search_values`` table with one row per
(contact, property) so that a count by one property is an index range scan.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sandbox.common import StateDB

SCHEMA = """
CREATE TABLE IF NOT EXISTS property_groups (name TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS properties (name TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS contacts (
    id INTEGER PRIMARY KEY,
    email TEXT UNIQUE,
    properties TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
-- writes wait here until they are due for indexing (index_delay_seconds after the write)
CREATE TABLE IF NOT EXISTS index_queue (
    seq INTEGER PRIMARY KEY,
    contact_id INTEGER NOT NULL,
    due REAL NOT NULL,
    properties TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS index_queue_due ON index_queue (due);
CREATE INDEX IF NOT EXISTS index_queue_contact ON index_queue (contact_id);
-- what search sees: values as of the last indexing, not as of the last write
CREATE TABLE IF NOT EXISTS search_docs (contact_id INTEGER PRIMARY KEY, created_at TEXT, updated_at TEXT);
CREATE TABLE IF NOT EXISTS search_values (
    contact_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    value TEXT COLLATE NOCASE NOT NULL,
    PRIMARY KEY (contact_id, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS search_values_name_value ON search_values (name, value);
-- merges ("Updated merge functionality for contacts and companies", Developer Changelog): both former ids
-- point to the merged record; the secondary contact's email stays attached to it as an additional email
CREATE TABLE IF NOT EXISTS merged_ids (old_id INTEGER PRIMARY KEY, contact_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS additional_emails (email TEXT PRIMARY KEY, contact_id INTEGER NOT NULL);
-- ids of deleted contacts: never given to a new contact
CREATE TABLE IF NOT EXISTS retired_ids (id INTEGER PRIMARY KEY);
"""

FIRST_CONTACT_ID = 100001
MAX_BATCH_INPUTS = 100  # https://developers.hubspot.com/docs/api-reference/latest/crm/objects/contacts (batch limits)
MAX_LIST_LIMIT = 100  # GET /crm/objects/{v}/contacts: "limit: maximum number of results per page" (100)
MAX_VALUE_LENGTH = 65536  # "a string property holds at most 65,536 characters" (Properties API guide)
# Search limits: "Search the CRM" (developers.hubspot.com/docs/api-reference/2026-03/crm/search-the-crm):
# five filterGroups, six filters per group, 18 filters in total, 200 results per page, 10,000 per query.
MAX_FILTER_GROUPS = 5
MAX_FILTERS_PER_GROUP = 6
MAX_FILTERS_TOTAL = 18
MAX_SEARCH_LIMIT = 200
MAX_SEARCH_RESULTS = 10_000
# "For contacts, a search will return createdate, email, firstname, hs_object_id, lastmodifieddate, and lastname"
DEFAULT_READ_PROPERTIES = ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname")
READ_ONLY = frozenset({"hs_object_id", "lastmodifieddate", "hs_merged_object_ids", "hs_additional_emails"})
SEARCH_OPERATORS = frozenset(
    {"EQ", "NEQ", "IN", "NOT_IN", "HAS_PROPERTY", "NOT_HAS_PROPERTY", "GT", "GTE", "LT", "LTE"}
)

# Valid type ↔ fieldType pairs, "Property type and fieldType values" in the Properties API guide
# (https://developers.hubspot.com/docs/api/crm/properties; enforced since the changelog "Announcing a change
# to how CRM object property creation is validated in v3 endpoints").
FIELD_TYPES = {
    "bool": {"booleancheckbox", "calculation_equation"},
    "enumeration": {"booleancheckbox", "checkbox", "radio", "select", "calculation_equation"},
    "date": {"date"},
    "datetime": {"date"},
    "string": {"file", "text", "textarea", "calculation_equation", "html", "phonenumber"},
    "number": {"number", "calculation_equation"},
    "phone_number": {"phonenumber"},
    "object_coordinates": {"text"},
    "json": {"text"},
}
PROPERTY_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class HubSpotError(Exception):
    """A request-level failure, turned into HubSpot's error body by the HTTP layer."""

    def __init__(
        self, status: int, category: str, message: str, errors: list | None = None, context: dict | None = None
    ):
        super().__init__(message)
        self.status = status
        self.category = category
        self.message = message
        self.errors = errors
        self.context = context

    def body(self, correlation_id: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": "error",
            "message": self.message,
            "correlationId": correlation_id,
            "category": self.category,
        }
        if self.errors:
            body["errors"] = self.errors
        if self.context:
            body["context"] = self.context
        return body


@dataclass
class InputProblem:
    """Why one property value of one batch input cannot be written."""

    code: str  # PROPERTY_DOESNT_EXIST, INVALID_OPTION, INVALID_EMAIL, ...
    name: str  # the property
    message: str


@dataclass
class WriteInput:
    """One validated batch input."""

    key: str  # the id as given (email for upserts, contact id for updates)
    properties: dict[str, str]
    trace_id: str | None = None
    problems: list[InputProblem] = field(default_factory=list)
    status: int = 400
    category: str = "VALIDATION_ERROR"


def iso(ts: float) -> str:
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def problems_error(problems: list[InputProblem]) -> tuple[str, list[dict]]:
    """HubSpot's validation message lists each invalid value: 'Property values were not valid: [...]'."""
    listed = [{"isValid": False, "message": p.message, "error": p.code, "name": p.name} for p in problems]
    errors = [{"message": p.message, "code": p.code, "context": {"propertyName": [p.name]}} for p in problems]
    return "Property values were not valid: " + json.dumps(listed), errors


def _option(label: str, value: str, order: int) -> dict[str, Any]:
    return {"label": label, "value": value, "displayOrder": order, "hidden": False, "description": ""}


def _default_properties() -> list[dict[str, Any]]:
    """HubSpot's default contact properties the project touches ("HubSpot's default contact properties")."""
    text = [
        ("email", "Email", "text"),
        ("firstname", "First Name", "text"),
        ("lastname", "Last Name", "text"),
        ("address", "Street Address", "text"),
        ("city", "City", "text"),
        ("country", "Country/Region", "text"),
        ("state", "State/Region", "text"),
        ("zip", "Postal Code", "text"),
        ("phone", "Phone Number", "phonenumber"),
        ("mobilephone", "Mobile Phone Number", "phonenumber"),
        ("company", "Company Name", "text"),
        ("jobtitle", "Job Title", "text"),
        ("website", "Website URL", "text"),
        ("message", "Message", "textarea"),
    ]
    props = [
        _property_body(name, label, "string", field_type, "contactinformation", [], True)
        for name, label, field_type in text
    ]
    stages = [
        "subscriber",
        "lead",
        "marketingqualifiedlead",
        "salesqualifiedlead",
        "opportunity",
        "customer",
        "evangelist",
        "other",
    ]
    props.append(
        _property_body(
            "lifecyclestage",
            "Lifecycle Stage",
            "enumeration",
            "radio",
            "contactinformation",
            [_option(s.title(), s, i) for i, s in enumerate(stages)],
            True,
        )
    )
    props.append(_property_body("createdate", "Create Date", "datetime", "date", "contactinformation", [], True))
    props.append(
        _property_body("lastmodifieddate", "Last Modified Date", "datetime", "date", "contactinformation", [], True)
    )
    props.append(_property_body("hs_object_id", "Record ID", "number", "number", "contactinformation", [], True))
    # set by merges: "Merged Contact IDs" and the secondary email addresses ("Merge records", knowledge base)
    for name, label in (("hs_merged_object_ids", "Merged Contact IDs"), ("hs_additional_emails", "Additional emails")):
        props.append(_property_body(name, label, "string", "text", "contactinformation", [], True))
    return props


def _property_body(name, label, type_, field_type, group, options, hubspot_defined, **extra) -> dict[str, Any]:
    now = iso(time.time())
    return {
        "name": name,
        "label": label,
        "type": type_,
        "fieldType": field_type,
        "groupName": group,
        "description": extra.get("description", ""),
        "options": options,
        "displayOrder": extra.get("displayOrder", -1),
        "hidden": bool(extra.get("hidden", False)),
        "formField": bool(extra.get("formField", False)),
        "hasUniqueValue": bool(extra.get("hasUniqueValue", False)),
        "calculated": False,
        "externalOptions": False,
        "hubspotDefined": hubspot_defined,
        "archived": False,
        "createdAt": now,
        "updatedAt": now,
        "modificationMetadata": {
            "archivable": not hubspot_defined,
            "readOnlyDefinition": hubspot_defined,
            "readOnlyValue": name in READ_ONLY,
            "readOnlyOptions": False,
        },
    }


def _group_body(name: str, label: str, display_order: int) -> dict[str, Any]:
    return {"name": name, "label": label, "displayOrder": display_order, "archived": False}


def as_value(value: Any) -> str:
    """HubSpot stores every property value as a string; JSON null clears like an empty string."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class ContactStore:
    def __init__(self, path: str) -> None:
        self.db = StateDB(path, SCHEMA)
        self._properties: dict[str, dict[str, Any]] = {}
        self._seed_if_empty()

    # ---- lifecycle -------------------------------------------------------------------------------------

    def reset(self) -> None:
        self.db.reset()
        self._seed_if_empty()

    def _seed_if_empty(self) -> None:
        with self.db as conn:
            if not conn.execute("SELECT 1 FROM property_groups LIMIT 1").fetchone():
                conn.execute(
                    "INSERT INTO property_groups VALUES (?, ?)",
                    ("contactinformation", json.dumps(_group_body("contactinformation", "Contact information", 0))),
                )
                conn.executemany(
                    "INSERT INTO properties VALUES (?, ?)", [(p["name"], json.dumps(p)) for p in _default_properties()]
                )
        self._reload_properties()

    def _reload_properties(self) -> None:
        rows = self.db.query("SELECT body FROM properties ORDER BY name")
        self._properties = {p["name"]: p for p in (json.loads(r["body"]) for r in rows)}

    # ---- property groups and properties ------------------------------------------------------------------

    def list_groups(self) -> list[dict[str, Any]]:
        return [json.loads(r["body"]) for r in self.db.query("SELECT body FROM property_groups ORDER BY name")]

    def get_group(self, name: str) -> dict[str, Any]:
        rows = self.db.query("SELECT body FROM property_groups WHERE name = ?", (name,))
        if not rows:
            raise HubSpotError(404, "OBJECT_NOT_FOUND", f"Unable to find property group {name!r} for object type 0-1")
        return json.loads(rows[0]["body"])

    def create_group(self, body: dict[str, Any]) -> dict[str, Any]:
        name, label = body.get("name"), body.get("label")
        if not isinstance(name, str) or not PROPERTY_NAME.match(name) or not label:
            raise HubSpotError(
                400,
                "VALIDATION_ERROR",
                "A property group needs a name (lowercase letters, digits, underscores) and a label",
            )
        group = _group_body(name, label, int(body.get("displayOrder", -1)))
        with self.db as conn:
            if conn.execute("SELECT 1 FROM property_groups WHERE name = ?", (name,)).fetchone():
                raise HubSpotError(409, "OBJECT_ALREADY_EXISTS", f"Property group named {name!r} already exists.")
            conn.execute("INSERT INTO property_groups VALUES (?, ?)", (name, json.dumps(group)))
        return group

    def list_properties(self) -> list[dict[str, Any]]:
        return list(self._properties.values())

    def get_property(self, name: str) -> dict[str, Any]:
        prop = self._properties.get(name)
        if prop is None:
            raise HubSpotError(
                404, "OBJECT_NOT_FOUND", f"Unable to find property with name {name!r} for object type 0-1"
            )
        return prop

    def create_property(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /crm/properties/{v}/contacts ("Create a property", Properties API reference)."""
        missing = [k for k in ("name", "label", "type", "fieldType", "groupName") if not body.get(k)]
        if missing:
            raise HubSpotError(400, "VALIDATION_ERROR", f"Missing required fields: {missing}")
        name = body["name"]
        if not isinstance(name, str) or not PROPERTY_NAME.match(name):
            raise HubSpotError(
                400,
                "VALIDATION_ERROR",
                f"Property name {name!r} is invalid: use lowercase letters, digits and underscores, starting with a letter",
            )
        prop = _property_body(
            name,
            body["label"],
            body["type"],
            body["fieldType"],
            body["groupName"],
            body.get("options") or [],
            False,
            **{
                k: body[k]
                for k in ("description", "displayOrder", "hidden", "formField", "hasUniqueValue")
                if k in body
            },
        )
        self._check_definition(prop)
        with self.db as conn:
            if conn.execute("SELECT 1 FROM properties WHERE name = ?", (name,)).fetchone():
                raise HubSpotError(409, "OBJECT_ALREADY_EXISTS", f"Property named {name!r} already exists.")
            conn.execute("INSERT INTO properties VALUES (?, ?)", (name, json.dumps(prop)))
        self._reload_properties()
        return prop

    def update_property(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """PATCH /crm/properties/{v}/contacts/{name}: changes label, options, group, ...; never name or type."""
        prop = dict(self.get_property(name))
        for key in (
            "label",
            "description",
            "groupName",
            "fieldType",
            "type",
            "options",
            "displayOrder",
            "hidden",
            "formField",
        ):
            if key in body:
                prop[key] = body[key]
        prop["updatedAt"] = iso(time.time())
        self._check_definition(prop)
        with self.db as conn:
            conn.execute("UPDATE properties SET body = ? WHERE name = ?", (json.dumps(prop), name))
        self._reload_properties()
        return prop

    def _check_definition(self, prop: dict[str, Any]) -> None:
        allowed = FIELD_TYPES.get(prop["type"])
        if allowed is None:
            raise HubSpotError(
                400, "VALIDATION_ERROR", f"Unknown property type {prop['type']!r}; one of {sorted(FIELD_TYPES)}"
            )
        if prop["fieldType"] not in allowed:
            raise HubSpotError(
                400,
                "VALIDATION_ERROR",
                f"fieldType {prop['fieldType']!r} is not valid for type {prop['type']!r}; one of {sorted(allowed)}",
            )
        options = prop["options"]
        if prop["type"] == "enumeration":
            if not isinstance(options, list) or not options:
                raise HubSpotError(400, "VALIDATION_ERROR", f"Enumeration property {prop['name']!r} needs options")
            for option in options:
                if not isinstance(option, dict) or not option.get("label") or option.get("value") in (None, ""):
                    raise HubSpotError(
                        400, "VALIDATION_ERROR", f"Every option of {prop['name']!r} needs a label and a value"
                    )
            values = [str(o["value"]) for o in options]
            if len(set(values)) != len(values):
                raise HubSpotError(400, "VALIDATION_ERROR", f"Options of {prop['name']!r} repeat a value")
            prop["options"] = [
                {
                    "label": o["label"],
                    "value": str(o["value"]),
                    "displayOrder": int(o.get("displayOrder", i)),
                    "hidden": bool(o.get("hidden", False)),
                    "description": o.get("description", ""),
                }
                for i, o in enumerate(options)
            ]
        if not self.db.query("SELECT 1 FROM property_groups WHERE name = ?", (prop["groupName"],)):
            raise HubSpotError(400, "VALIDATION_ERROR", f"Property group {prop['groupName']!r} does not exist")

    # ---- contact values ----------------------------------------------------------------------------------

    def check_values(self, properties: Any) -> tuple[dict[str, str], list[InputProblem]]:
        """Validate one input's property values against the definitions (Contacts API, batch upsert)."""
        if not isinstance(properties, dict):
            return {}, [InputProblem("INVALID_PROPERTIES", "properties", "properties must be an object")]
        values: dict[str, str] = {}
        problems: list[InputProblem] = []
        for name, raw in properties.items():
            value = as_value(raw)
            prop = self._properties.get(name)
            if prop is None:
                problems.append(InputProblem("PROPERTY_DOESNT_EXIST", name, f'Property "{name}" does not exist'))
                continue
            if name in READ_ONLY:
                problems.append(
                    InputProblem("READ_ONLY_VALUE", name, f'"{name}" is a read only property; its value cannot be set.')
                )
                continue
            problem = self._check_value(prop, value)
            if problem:
                problems.append(problem)
            else:
                values[name] = value.lower() if name == "email" else value
        return values, problems

    @staticmethod
    def _check_value(prop: dict[str, Any], value: str) -> InputProblem | None:
        name = prop["name"]
        if value == "":
            return None  # an empty string clears the value
        if len(value) > MAX_VALUE_LENGTH:
            return InputProblem(
                "INVALID_LONG_STRING",
                name,
                f'Property "{name}" value is {len(value)} characters long; the maximum is {MAX_VALUE_LENGTH}',
            )
        if name == "email" and not EMAIL.match(value):
            return InputProblem("INVALID_EMAIL", name, f"Email address {value} is invalid")
        if prop["type"] == "enumeration":
            allowed = {o["value"] for o in prop["options"]}
            chosen = value.split(";") if prop["fieldType"] == "checkbox" else [value]
            bad = [v for v in chosen if v not in allowed]
            if bad:
                return InputProblem(
                    "INVALID_OPTION", name, f"{bad[0]} was not one of the allowed options: {sorted(allowed)}"
                )
        if prop["type"] == "bool" and value not in ("true", "false"):
            return InputProblem(
                "INVALID_BOOLEAN", name, f"{value} is not a valid boolean for {name}: use true or false"
            )
        if prop["type"] == "number":
            try:
                float(value)
            except ValueError:
                return InputProblem("INVALID_FLOAT", name, f"{value} is not a valid number for {name}")
        return None

    # ---- contacts ----------------------------------------------------------------------------------------

    def upsert(self, inputs: list[WriteInput], index_delay: float) -> list[dict[str, Any]]:
        """Write validated inputs keyed by (lowercased) email; one transaction, a few executemany calls."""
        now = time.time()
        with self.db as conn:
            emails = [i.key for i in inputs]
            marks = ",".join("?" * len(emails))
            existing = {r["email"]: r for r in conn.execute(f"SELECT * FROM contacts WHERE email IN ({marks})", emails)}
            # an email merged into another contact cannot make a new contact ("Merge records": create a new
            # contact with a merged email only after removing it from the merged record): it updates that one
            existing.update(
                {
                    r["additional"]: r
                    for r in conn.execute(
                        "SELECT a.email AS additional, c.* FROM additional_emails a "
                        f"JOIN contacts c ON c.id = a.contact_id WHERE a.email IN ({marks})",
                        emails,
                    )
                }
            )
            next_id = self._next_id(conn)
            writes = []
            for item in inputs:
                row = existing.get(item.key)
                if row is None:
                    writes.append(_Write(next_id, {"createdate": iso(now), "email": item.key}, iso(now), True, item))
                    next_id += 1
                else:
                    writes.append(_Write(row["id"], json.loads(row["properties"]), row["created_at"], False, item))
            return self._save(conn, now, index_delay, writes)

    def update(self, inputs: list[WriteInput], index_delay: float) -> list[dict[str, Any]]:
        """batch/update and PATCH: inputs keyed by contact id; unknown ids must have been rejected before."""
        now = time.time()
        with self.db as conn:
            writes = []
            for item in inputs:
                row = conn.execute("SELECT * FROM contacts WHERE id = ?", (int(item.key),)).fetchone()
                writes.append(_Write(row["id"], json.loads(row["properties"]), row["created_at"], None, item))
            return self._save(conn, now, index_delay, writes)

    def create(self, item: WriteInput, index_delay: float) -> dict[str, Any]:
        """POST /crm/objects/{v}/contacts: 409 "Contact already exists. Existing ID: N" (Contacts API guide)."""
        now = time.time()
        with self.db as conn:
            email = item.properties.get("email")
            if email:
                row = conn.execute("SELECT id FROM contacts WHERE email = ?", (email,)).fetchone()
                if row:
                    raise HubSpotError(409, "CONFLICT", f"Contact already exists. Existing ID: {row['id']}")
            write = _Write(self._next_id(conn), {"createdate": iso(now)}, iso(now), None, item)
            return self._save(conn, now, index_delay, [write])[0]

    def _save(self, conn, now: float, index_delay: float, writes: list[_Write]) -> list[dict[str, Any]]:
        """Store merged contacts and queue them for the search index, which sees them index_delay seconds later."""
        self._apply_index(conn, now)
        stamp = iso(now)
        rows, queue, results = [], [], []
        for w in writes:
            _merge(w.properties, w.item.properties)
            w.properties.update(hs_object_id=str(w.contact_id), lastmodifieddate=stamp)
            encoded = json.dumps(w.properties)
            rows.append((w.contact_id, w.properties.get("email"), encoded, w.created, stamp))
            queue.append((w.contact_id, now + index_delay, encoded, w.created, stamp))
            results.append(_result(w.contact_id, w.properties, w.created, stamp, w.new, w.item.trace_id))
        conn.executemany(
            "INSERT INTO contacts VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "email = excluded.email, properties = excluded.properties, updated_at = excluded.updated_at",
            rows,
        )
        conn.executemany(
            "INSERT INTO index_queue (contact_id, due, properties, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
            queue,
        )
        return results

    @staticmethod
    def _next_id(conn) -> int:
        """Ids are never reused, not even the former ids of merged contacts (they still point to the merge)."""
        top = conn.execute(
            "SELECT MAX(COALESCE((SELECT MAX(id) FROM contacts), 0), "
            "COALESCE((SELECT MAX(old_id) FROM merged_ids), 0), COALESCE((SELECT MAX(id) FROM retired_ids), 0))"
        )
        return max(top.fetchone()[0] + 1, FIRST_CONTACT_ID)

    def find(self, keys: Iterable[str], by_email: bool, additional: bool = False) -> dict[str, dict[str, Any]]:
        """Stored contacts by id or by (lowercased) email, keyed as asked. A former id of a merged contact finds
        the merged record (merge changelog: "fetching any records using the original IDs will return the new
        merged record"); with ``additional``, so does an email merged into another contact."""
        keys = list(keys)
        if not keys:
            return {}
        if by_email:
            column, wanted = "email", [k.lower() for k in keys]
            alias = "SELECT a.email AS key, c.* FROM additional_emails a JOIN contacts c ON c.id = a.contact_id "
            alias += "WHERE a.email"
        else:
            column, wanted = "id", [int(k) for k in keys if k.isdigit()]
            alias = "SELECT m.old_id AS key, c.* FROM merged_ids m JOIN contacts c ON c.id = m.contact_id "
            alias += "WHERE m.old_id"
            if not wanted:
                return {}
        marks = ",".join("?" * len(wanted))
        rows = self.db.query(f"SELECT * FROM contacts WHERE {column} IN ({marks})", wanted)
        found = {str(r[column]): dict(r) for r in rows}
        if additional or not by_email:
            for r in self.db.query(f"{alias} IN ({marks})", wanted):
                found.setdefault(str(r["key"]), {k: r[k] for k in r.keys() if k != "key"})
        return {k: found[k.lower() if by_email else k] for k in keys if (k.lower() if by_email else k) in found}

    def delete(self, contact_id: str) -> None:
        """DELETE /crm/objects/{v}/contacts/{id} (archive) and POST .../gdpr-delete: the contact is gone for the
        API; an upsert of its email creates a new contact (reference hubspot.md, "Deleting a contact")."""
        with self.db as conn:
            conn.execute("DELETE FROM merged_ids WHERE contact_id = ?", (int(contact_id),))
            conn.execute("INSERT OR IGNORE INTO retired_ids VALUES (?)", (int(contact_id),))
            self._drop(conn, [int(contact_id)])

    def merge(self, primary_id: str, merged_id: str, index_delay: float) -> dict[str, Any]:
        """POST .../contacts/merge: a new record with a new id replaces both (Developer Changelog "Updated merge
        functionality for contacts and companies"); the primary's values win, the other fills the gaps; the
        primary's email stays ``email``, the other's becomes an additional email ("Merge records")."""
        now = time.time()
        with self.db as conn:
            select = "SELECT * FROM contacts WHERE id = ?"
            rows = [conn.execute(select, (int(i),)).fetchone() for i in (primary_id, merged_id)]
            primary, other = (json.loads(r["properties"]) for r in rows)
            values = {**other, **{k: v for k, v in primary.items() if v != ""}}
            listed = [e for record in (primary, other) for e in record.get("hs_additional_emails", "").split(";")]
            additional = [e for e in dict.fromkeys([*listed, other.get("email", "")]) if e]
            earlier = [i for record in (primary, other) for i in record.get("hs_merged_object_ids", "").split(";")]
            old_ids = [i for i in [*earlier, str(rows[0]["id"]), str(rows[1]["id"])] if i]
            new_id = self._next_id(conn)
            values.update(hs_additional_emails=";".join(additional), hs_merged_object_ids=";".join(old_ids))
            values.update(email=primary.get("email", ""), createdate=rows[0]["created_at"])
            old = (rows[0]["id"], rows[1]["id"])
            self._drop(conn, list(old))
            conn.executemany("INSERT OR REPLACE INTO additional_emails VALUES (?, ?)", [(e, new_id) for e in additional])
            conn.execute("UPDATE merged_ids SET contact_id = ? WHERE contact_id IN (?, ?)", (new_id, *old))
            conn.executemany("INSERT OR REPLACE INTO merged_ids VALUES (?, ?)", [(int(i), new_id) for i in old_ids])
            write = _Write(new_id, {}, rows[0]["created_at"], None, WriteInput(str(new_id), values))
            return self._save(conn, now, index_delay, [write])[0]

    @staticmethod
    def _drop(conn, ids: list[int]) -> None:
        for table, column in (
            ("contacts", "id"), ("search_docs", "contact_id"), ("search_values", "contact_id"),
            ("index_queue", "contact_id"), ("additional_emails", "contact_id"),
        ):
            conn.executemany(f"DELETE FROM {table} WHERE {column} = ?", [(i,) for i in ids])

    def page(self, after: int, limit: int) -> tuple[list[dict[str, Any]], int | None]:
        rows = self.db.query("SELECT * FROM contacts WHERE id > ? ORDER BY id LIMIT ?", (after, limit + 1))
        more = len(rows) > limit
        rows = rows[:limit]
        return [dict(r) for r in rows], (rows[-1]["id"] if more else None)

    def all_contacts(self) -> list[dict[str, Any]]:
        return [
            {
                "id": str(r["id"]),
                "properties": json.loads(r["properties"]),
                "createdAt": r["created_at"],
                "updatedAt": r["updated_at"],
            }
            for r in self.db.query("SELECT * FROM contacts ORDER BY id")
        ]

    # ---- search ------------------------------------------------------------------------------------------

    def _apply_index(self, conn, now: float) -> None:
        """Move writes whose indexing delay has passed into the search tables (latest write per contact wins)."""
        due = conn.execute(
            "SELECT seq, contact_id, properties, created_at, updated_at FROM index_queue WHERE due <= ? ORDER BY seq",
            (now,),
        ).fetchall()
        if not due:
            return
        latest = {row["contact_id"]: row for row in due}
        conn.executemany("DELETE FROM search_values WHERE contact_id = ?", [(cid,) for cid in latest])
        conn.executemany(
            "INSERT OR REPLACE INTO search_docs VALUES (?, ?, ?)",
            [(cid, r["created_at"], r["updated_at"]) for cid, r in latest.items()],
        )
        conn.executemany(
            "INSERT INTO search_values VALUES (?, ?, ?)",
            [(cid, k, v) for cid, r in latest.items() for k, v in json.loads(r["properties"]).items() if v != ""],
        )
        conn.executemany(
            "DELETE FROM index_queue WHERE contact_id = ? AND seq <= ?", [(cid, r["seq"]) for cid, r in latest.items()]
        )

    def search(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /crm/objects/{v}/contacts/search over the (lagging) index ("Search the CRM")."""
        limit = _int_field(body, "limit", 10)
        after = _int_field(body, "after", 0)
        if not 0 < limit <= MAX_SEARCH_LIMIT:
            raise HubSpotError(400, "VALIDATION_ERROR", f"limit must be between 1 and {MAX_SEARCH_LIMIT}, got {limit}")
        if after < 0 or after + limit > MAX_SEARCH_RESULTS:
            raise HubSpotError(
                400,
                "VALIDATION_ERROR",
                f"Paging beyond {MAX_SEARCH_RESULTS} results is not allowed (after={after}, limit={limit})",
            )
        set_sql, args = self._filter_set(body.get("filterGroups") or [])
        order_sql, order_args = self._order(body.get("sorts") or [])
        requested = body.get("properties") or list(DEFAULT_READ_PROPERTIES)
        with self.db as conn:
            self._apply_index(conn, time.time())
            total = conn.execute(f"SELECT COUNT(*) FROM ({set_sql})", args).fetchone()[0]
            ids = [
                r[0]
                for r in conn.execute(
                    f"SELECT s.contact_id FROM ({set_sql}) s {order_sql} LIMIT ? OFFSET ?",
                    [*args, *order_args, limit, after],
                )
            ]
            marks = ",".join("?" * len(ids))
            docs = {r[0]: r for r in conn.execute(f"SELECT * FROM search_docs WHERE contact_id IN ({marks})", ids)}
            values: dict[int, dict[str, str]] = {i: {} for i in ids}
            for r in conn.execute(
                f"SELECT contact_id, name, value FROM search_values WHERE contact_id IN ({marks})", ids
            ):
                values[r[0]][r[1]] = r[2]
        results = [
            {
                "id": str(i),
                "properties": {name: values[i].get(name) for name in requested},
                "createdAt": docs[i]["created_at"],
                "updatedAt": docs[i]["updated_at"],
                "archived": False,
            }
            for i in ids
        ]
        answer: dict[str, Any] = {"total": total, "results": results}
        next_after = after + len(ids)
        if next_after < min(total, MAX_SEARCH_RESULTS) and ids:
            answer["paging"] = {"next": {"after": str(next_after)}}
        return answer

    def _filter_set(self, groups: Any) -> tuple[str, list[Any]]:
        """SQL selecting matching contact ids: filters in a group AND together, groups OR together."""
        if not isinstance(groups, list):
            raise HubSpotError(400, "VALIDATION_ERROR", "filterGroups must be a list")
        if len(groups) > MAX_FILTER_GROUPS:
            raise HubSpotError(
                400, "VALIDATION_ERROR", f"Too many filter groups: {len(groups)} (maximum {MAX_FILTER_GROUPS})"
            )
        total = sum(len(g.get("filters") or []) for g in groups)
        if total > MAX_FILTERS_TOTAL:
            raise HubSpotError(
                400, "VALIDATION_ERROR", f"Too many filters: {total} (maximum {MAX_FILTERS_TOTAL} in total)"
            )
        group_sqls, args = [], []
        for group in groups:
            filters = group.get("filters") or []
            if len(filters) > MAX_FILTERS_PER_GROUP:
                raise HubSpotError(
                    400,
                    "VALIDATION_ERROR",
                    f"Too many filters in a group: {len(filters)} (maximum {MAX_FILTERS_PER_GROUP})",
                )
            parts = []
            for f in filters:
                sql, more = self._filter(f)
                parts.append(sql)
                args.extend(more)
            if parts:
                group_sqls.append(f"SELECT contact_id FROM ({' INTERSECT '.join(parts)})")
        if not group_sqls:
            return "SELECT contact_id FROM search_docs", []
        return " UNION ".join(group_sqls), args

    def _filter(self, f: dict[str, Any]) -> tuple[str, list[Any]]:
        name, operator = f.get("propertyName"), f.get("operator")
        if name not in self._properties:
            raise HubSpotError(400, "VALIDATION_ERROR", f"Unknown property {name!r} in search filter")
        if operator not in SEARCH_OPERATORS:
            raise HubSpotError(400, "VALIDATION_ERROR", f"Unsupported search operator {operator!r}")
        has = "SELECT contact_id FROM search_values WHERE name = ?"
        everyone_but = "SELECT contact_id FROM search_docs WHERE contact_id NOT IN ({})"
        if operator == "HAS_PROPERTY":
            return has, [name]
        if operator == "NOT_HAS_PROPERTY":
            return everyone_but.format(has), [name]
        if operator in ("IN", "NOT_IN"):
            values = [as_value(v) for v in f.get("values") or []]
            if not values:
                raise HubSpotError(400, "VALIDATION_ERROR", f"{operator} filter on {name!r} needs values")
            sql = f"{has} AND value IN ({','.join('?' * len(values))})"
            return (sql if operator == "IN" else everyone_but.format(sql)), [name, *values]
        if "value" not in f:
            raise HubSpotError(400, "VALIDATION_ERROR", f"{operator} filter on {name!r} needs a value")
        value = as_value(f["value"])
        if operator == "EQ":
            return f"{has} AND value = ?", [name, value]
        if operator == "NEQ":  # records without the property also differ from the value
            return everyone_but.format(f"{has} AND value = ?"), [name, value]
        symbol = {"GT": ">", "GTE": ">=", "LT": "<", "LTE": "<="}[operator]
        try:
            return f"{has} AND CAST(value AS REAL) {symbol} ?", [name, float(value)]
        except ValueError:
            return f"{has} AND value {symbol} ?", [name, value]

    def _order(self, sorts: Any) -> tuple[str, list[Any]]:
        if not sorts:
            return "ORDER BY s.contact_id", []
        sort = sorts[0]
        if isinstance(sort, str):  # the legacy form "propertyName" / "-propertyName"
            sort = {
                "propertyName": sort.lstrip("-"),
                "direction": "DESCENDING" if sort.startswith("-") else "ASCENDING",
            }
        name = sort.get("propertyName")
        if name not in self._properties:
            raise HubSpotError(400, "VALIDATION_ERROR", f"Unknown sort property {name!r}")
        direction = "DESC" if sort.get("direction") == "DESCENDING" else "ASC"
        key = "CAST(v.value AS REAL)" if self._properties[name]["type"] == "number" else "v.value"
        join = "LEFT JOIN search_values v ON v.contact_id = s.contact_id AND v.name = ?"
        return f"{join} ORDER BY v.value IS NULL, {key} {direction}, s.contact_id", [name]


@dataclass
class _Write:
    contact_id: int
    properties: dict[str, str]  # as stored before this write; merged in place
    created: str
    new: bool | None  # the ``new`` flag of upsert results; None where the endpoint has none
    item: WriteInput


def _merge(stored: dict[str, str], values: dict[str, str]) -> None:
    for name, value in values.items():
        if value == "":
            stored.pop(name, None)
        else:
            stored[name] = value


def _result(contact_id, properties, created, updated, new: bool | None = None, trace_id: str | None = None) -> dict:
    result: dict[str, Any] = {
        "id": str(contact_id),
        "properties": dict(properties),
        "createdAt": created,
        "updatedAt": updated,
        "archived": False,
    }
    if new is not None:
        result["new"] = new
    if trace_id is not None:
        result["objectWriteTraceId"] = trace_id
    return result


def public_contact(row: dict[str, Any], requested: list[str] | None) -> dict[str, Any]:
    """A stored row as the CRM object read endpoints answer it: requested properties, null when unset."""
    stored = json.loads(row["properties"])
    names = requested or list(DEFAULT_READ_PROPERTIES)
    return {
        "id": str(row["id"]),
        "properties": {name: stored.get(name) for name in names},
        "createdAt": row["created_at"],
        "updatedAt": row["updated_at"],
        "archived": False,
    }


def _int_field(body: dict[str, Any], key: str, default: int) -> int:
    raw = body.get(key, default)
    try:
        return int(raw if raw not in (None, "") else default)
    except (TypeError, ValueError):
        raise HubSpotError(400, "VALIDATION_ERROR", f"{key} must be an integer, got {raw!r}") from None
