"""Local stand-in for HubSpot's CRM API (contacts, contact properties, OAuth token, daily usage).

Run: ``python -m sandbox.hubspot --host 127.0.0.1 --port 8081 --db PATH`` (``reset --db PATH`` empties a state
file). Every route is served under the legacy ``v3`` paths and the date-versioned ``2026-03`` and ``2026-09``
paths; ``2026-09`` also enforces validation rules. State lives in SQLite (``sandbox.hubspot_store``).

Run-time settings (POST /_sandbox/faults): the generic ``common.Faults`` fields (``token_ttl_seconds`` is the
lifetime of new OAuth access tokens) plus these keys of ``extra``, each falling back to its start-up flag when
absent: ``rate_limit`` (calls per window), ``interval_ms`` (window length), ``daily_limit``, ``search_rate``
(search calls per second), ``index_delay_seconds`` (how far search lags writes), ``validation_rules`` (property
names a 2026-09 write must leave set on the contact), ``usage_status`` (401 or 403: the daily-usage endpoint refuses
the token with a MISSING_SCOPES body; null answers it), and three answer variants the public docs leave open:
``upsert_errors`` ("207": trace ids give a multi-status answer; "400": a batch holding a bad input is refused
whole, the error naming the bad values, as "partial upserts are not supported when using email as the
idProperty" allows; "400_silent": refused whole, naming nothing), ``update_not_found`` (how batch/update
answers ids it has no contact for: "207" per-input OBJECT_NOT_FOUND errors; "404" / "400" whole-batch
refusals naming the ids; "404_silent" naming nothing) and ``merged_email_lookup`` ("primary": an email merged
into another contact finds that contact, in batch/update and batch/read alike; "not_found": it finds nothing).
The generic ``answers`` fault serves 423 (with or without Retry-After), 503 with any Retry-After, HTML 502/503/200
pages, truncated JSON and cut bodies (``sandbox.common``).
Extra admin endpoint: GET /_sandbox/contacts → ``{"contacts": [{id, properties, createdAt, updatedAt}]}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote

from sandbox import credentials
from sandbox.common import (
    Faults,
    Request,
    Response,
    Router,
    SandboxServer,
    add_fault_arguments,
    faults_from_args,
    serve,
)
from sandbox.hubspot_store import (
    EMAIL,
    MAX_BATCH_INPUTS,
    MAX_LIST_LIMIT,
    ContactStore,
    HubSpotError,
    InputProblem,
    WriteInput,
    iso,
    problems_error,
    public_contact,
)

DATED = "(?P<version>2026-03|2026-09)"
OBJECT = "(?:contacts|0-1)"
# Legacy and date-versioned forms of each base path ("Legacy APIs and Apps: What's Going Unsupported and When";
# https://developers.hubspot.com/docs/api-reference/latest/crm/objects/contacts).
OBJECT_PATHS = (f"/crm/v3/objects/{OBJECT}", f"/crm/objects/{DATED}/{OBJECT}")
PROPERTY_PATHS = (f"/crm/v3/properties/{OBJECT}", f"/crm/properties/{DATED}/{OBJECT}")
USAGE_PATHS = ("/account-info/v3/api-usage/daily/private-apps", f"/account-info/{DATED}/api-usage/daily/private-apps")
TOKEN_PATHS = ("/oauth/v1/token", "/oauth/v3/token", f"/oauth/{DATED}/token")

DEFAULTS: dict[str, Any] = {
    "rate_limit": 190,  # Professional private app: 190 / 10 s ("API usage guidelines and limits")
    "interval_ms": 10_000,
    "daily_limit": 625_000,
    "search_rate": 5,  # "Search the CRM": 5 requests per second per account
    "index_delay_seconds": 2.0,
    "validation_rules": [],
    "upsert_errors": "207",
    "update_not_found": "207",
    "merged_email_lookup": "primary",
    "usage_status": None,
}
VARIANTS = {
    "upsert_errors": ("207", "400", "400_silent"),
    "update_not_found": ("207", "404", "400", "404_silent"),
    "merged_email_lookup": ("primary", "not_found"),
}
# batch/read's documented 207 wording ("Read a batch of contacts"), reused for updates of unknown ids
NOT_FOUND_MESSAGE = "Could not update some CONTACT objects, they may be deleted or not exist. Check that ids are valid."
# "Error handling" (developers.hubspot.com/docs/api-reference/error-handling): a token without the scope a call needs
# gets 403 with category MISSING_SCOPES and the scopes in errors[].context.requiredGranularScopes. The usage
# endpoint's spec lists the ``oauth`` scope, which private apps and service keys seldom hold; some tokens get 401.
MISSING_SCOPES_MESSAGE = (
    "This app hasn't been granted all required scopes to make this call. "
    "Read more about required scopes here: https://developers.hubspot.com/scopes."
)


def correlation_id() -> str:
    return str(uuid.uuid4())


def error_response(error: HubSpotError, headers: dict[str, str] | None = None) -> Response:
    return Response(error.status, error.body(correlation_id()), headers=headers or {})


def fault_response(status: int) -> Response:
    """Injected 5xx, unknown routes and malformed JSON, in HubSpot's error body shape."""
    # 423: "Error handling" lists 423 Locked for high-volume syncing into one account (wait at least 2 s).
    categories = {400: "VALIDATION_ERROR", 404: "OBJECT_NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 423: "LOCKED"}
    messages = {
        400: "Invalid input JSON",
        404: "resource not found",
        405: "method not allowed",
        423: "Locked: too many concurrent writes to this account; retry after at least 2 seconds",
        503: "service unavailable",
    }
    return error_response(
        HubSpotError(status, categories.get(status, "INTERNAL_ERROR"), messages.get(status, "internal error"))
    )


class Limiter:
    """Rolling-window, per-second search and daily counters for the one sandbox account."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.calls: deque[float] = deque()
        self.searches: deque[float] = deque()
        self.day = datetime.now(UTC).date()
        self.daily = 0

    def admit(self, search: bool, settings: Callable[[str], Any], forced: bool) -> tuple[HubSpotError | None, dict]:
        """Count one call, or say which policy refuses it; headers only for non-search calls.

        "API usage guidelines and limits" (developers.hubspot.com/docs/developer-tooling/platform/usage-guidelines):
        ten-secondly rolling and daily limits with X-HubSpot-RateLimit-* headers; search endpoints have their own
        per-second limit and send no such headers.
        """
        limit, interval = int(settings("rate_limit")), float(settings("interval_ms")) / 1000
        daily_limit, search_rate = int(settings("daily_limit")), int(settings("search_rate"))
        now = time.time()
        with self._lock:
            today = datetime.now(UTC).date()
            if today != self.day:
                self.day, self.daily = today, 0
            while self.calls and self.calls[0] <= now - interval:
                self.calls.popleft()
            while self.searches and self.searches[0] <= now - 1:
                self.searches.popleft()
            refusal = None
            if forced:
                refusal = ("ten_secondly_rolling", "TEN_SECONDLY_ROLLING")
            elif self.daily >= daily_limit:
                refusal = ("daily", "DAILY")
            elif search and len(self.searches) >= search_rate:
                refusal = ("secondly", "SECONDLY")
            elif not search and len(self.calls) >= limit:
                refusal = ("ten_secondly_rolling", "TEN_SECONDLY_ROLLING")
            if refusal is None:
                (self.searches if search else self.calls).append(now)
                self.daily += 1
            headers = (
                {}
                if search
                else {
                    "X-HubSpot-RateLimit-Max": str(limit),
                    "X-HubSpot-RateLimit-Remaining": str(max(limit - len(self.calls), 0)),
                    "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(interval * 1000)),
                    "X-HubSpot-RateLimit-Daily": str(daily_limit),
                    "X-HubSpot-RateLimit-Daily-Remaining": str(max(daily_limit - self.daily, 0)),
                }
            )
        if refusal is None:
            return None, headers
        return RateLimited(*refusal), headers

    def usage(self, daily_limit: int) -> list[dict[str, Any]]:
        """GET /account-info/{v}/api-usage/daily/private-apps ("Get daily API usage for private apps")."""
        now = datetime.now(UTC)
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
        with self._lock:
            current = self.daily
        return [
            {
                "name": "private-apps-api-calls-daily",
                "usageLimit": daily_limit,
                "currentUsage": current,
                "collectedAt": iso(now.timestamp()),
                "fetchStatus": "SUCCESS",
                "resetsAt": iso(midnight.timestamp()),
            }
        ]


class RateLimited(HubSpotError):
    """429 body of "API usage guidelines and limits": errorType RATE_LIMIT with the policy that refused."""

    def __init__(self, limit_name: str, policy: str) -> None:
        super().__init__(429, "RATE_LIMITS", f"You have reached your {limit_name} limit.")
        self.policy = policy

    def body(self, correlation_id: str) -> dict[str, Any]:
        return {
            "status": "error",
            "message": self.message,
            "errorType": "RATE_LIMIT",
            "correlationId": correlation_id,
            "policyName": self.policy,
            "groupName": "private-apps-api-calls",
        }


class HubSpotSandbox:
    """Routes, auth, limits and contracts; state in ``ContactStore``."""

    def __init__(self, store: ContactStore, faults: Faults, defaults: dict[str, Any]) -> None:
        self.store = store
        self.faults = faults
        self.defaults = defaults
        self.limiter = Limiter()
        self.tokens: dict[str, float] = {}  # OAuth access token → expiry (kept in memory only: secrets)
        self.tokens_lock = threading.Lock()
        self.router = Router()
        self._add_routes()

    def setting(self, key: str) -> Any:
        return self.faults.extra.get(key, self.defaults[key])

    def reset(self) -> None:
        self.store.reset()
        self.limiter.reset()
        with self.tokens_lock:
            self.tokens.clear()

    # ---- routing -----------------------------------------------------------------------------------------

    def _add_routes(self) -> None:
        api = self._api
        routes: list[tuple[str, tuple[str, ...], str, Callable, bool]] = [
            ("POST", OBJECT_PATHS, "/batch/upsert", self.batch_upsert, False),
            ("POST", OBJECT_PATHS, "/batch/update", self.batch_update, False),
            ("POST", OBJECT_PATHS, "/batch/read", self.batch_read, False),
            ("POST", OBJECT_PATHS, "/search", self.search, True),
            ("GET", OBJECT_PATHS, "", self.list_contacts, False),
            ("POST", OBJECT_PATHS, "", self.create_contact, False),
            ("GET", OBJECT_PATHS, "/(?P<contact_id>[^/]+)", self.get_contact, False),
            ("PATCH", OBJECT_PATHS, "/(?P<contact_id>[^/]+)", self.update_contact, False),
            ("DELETE", OBJECT_PATHS, "/(?P<contact_id>[^/]+)", self.archive_contact, False),
            ("POST", OBJECT_PATHS, "/gdpr-delete", self.gdpr_delete, False),
            ("POST", OBJECT_PATHS, "/merge", self.merge_contacts, False),
            ("GET", PROPERTY_PATHS, "/groups", self.list_groups, False),
            ("POST", PROPERTY_PATHS, "/groups", self.create_group, False),
            ("GET", PROPERTY_PATHS, "/groups/(?P<name>[^/]+)", self.get_group, False),
            ("GET", PROPERTY_PATHS, "", self.list_properties, False),
            ("POST", PROPERTY_PATHS, "", self.create_property, False),
            ("GET", PROPERTY_PATHS, "/(?P<name>[^/]+)", self.get_property, False),
            ("PATCH", PROPERTY_PATHS, "/(?P<name>[^/]+)", self.update_property, False),
            ("GET", USAGE_PATHS, "", self.usage, False),
        ]
        for method, prefixes, suffix, handler, search in routes:
            for prefix in prefixes:
                self.router.add(method, prefix + suffix, api(handler, search))
        for path in TOKEN_PATHS:
            self.router.add("POST", path, self.token, limited=False)  # OAuth calls do not count against the limits

    def _api(self, handler: Callable[[Request, str], Response], search: bool) -> Callable[[Request], Response]:
        """Authenticate, count against the limits, run the handler, add the rate-limit headers."""

        def run(request: Request) -> Response:
            version = request.params.pop("version", None) or "v3"
            try:
                self.authenticate(request)
            except HubSpotError as error:
                return error_response(error)
            refusal, headers = self.limiter.admit(search, self.setting, forced=False)
            if refusal is not None:
                return error_response(refusal, headers)
            try:
                response = handler(request, version)
            except HubSpotError as error:
                response = error_response(error)
            except json.JSONDecodeError:
                response = fault_response(400)
            response.headers.update(headers)
            return response

        return run

    def rate_limited(self, request: Request) -> Response:
        """The ``force_429`` answer: the ten-secondly policy's refusal with the limiter's current headers.

        Authentication still comes first, as on every API call: a bad token answers 401, not 429.
        """
        try:
            self.authenticate(request)
        except HubSpotError as error:
            return error_response(error)
        search = request.method == "POST" and request.path.endswith("/search")
        refusal, headers = self.limiter.admit(search, self.setting, forced=True)
        assert refusal is not None
        return error_response(refusal, headers)

    # ---- auth --------------------------------------------------------------------------------------------

    def authenticate(self, request: Request) -> None:
        """Bearer private-app token / service key, or an OAuth access token until it expires ("Authentication")."""
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if token and token == credentials.HUBSPOT_PRIVATE_APP_TOKEN:
            return
        with self.tokens_lock:
            expires = self.tokens.get(token)
        if expires is not None:
            if expires > time.time():
                return
            ago = int(time.time() - expires)
            raise HubSpotError(
                401, "EXPIRED_AUTHENTICATION", f"The OAuth token used to make this call expired {ago} second(s) ago."
            )
        raise HubSpotError(
            401,
            "INVALID_AUTHENTICATION",
            "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find "
            "more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
        )

    def token(self, request: Request) -> Response:
        """POST /oauth/{v}/token, grant_type=refresh_token ("OAuth tokens": refresh an access token)."""
        form = {k: v[0] for k, v in parse_qs(request.body.decode(), keep_blank_values=True).items()}

        def oauth_error(status: str, message: str) -> Response:
            return Response(400, {"status": status, "message": message, "correlationId": correlation_id()})

        if form.get("grant_type") != "refresh_token":
            return oauth_error("BAD_GRANT_TYPE", "the sandbox supports grant_type=refresh_token only")
        if form.get("client_id") != credentials.HUBSPOT_CLIENT_ID:
            return oauth_error("BAD_CLIENT_ID", "missing or unknown client id")
        if form.get("client_secret") != credentials.HUBSPOT_CLIENT_SECRET:
            return oauth_error("BAD_CLIENT_ID", "client secret does not match the client id")
        if form.get("refresh_token") != credentials.HUBSPOT_REFRESH_TOKEN:
            return oauth_error("BAD_REFRESH_TOKEN", "missing or invalid refresh token")
        ttl = self.faults.token_ttl_seconds if self.faults.token_ttl_seconds is not None else 1800
        access = f"sandbox-at-{uuid.uuid4().hex}"
        with self.tokens_lock:
            self.tokens[access] = time.time() + float(ttl)
        return Response(
            200,
            {
                "access_token": access,
                "refresh_token": credentials.HUBSPOT_REFRESH_TOKEN,
                "expires_in": int(ttl),
                "token_type": "bearer",
            },
        )

    # ---- properties --------------------------------------------------------------------------------------

    def list_groups(self, request: Request, version: str) -> Response:
        return Response(200, {"results": self.store.list_groups()})

    def create_group(self, request: Request, version: str) -> Response:
        return Response(201, self.store.create_group(_object_body(request)))

    def get_group(self, request: Request, version: str) -> Response:
        return Response(200, self.store.get_group(unquote(request.params["name"])))

    def list_properties(self, request: Request, version: str) -> Response:
        return Response(200, {"results": self.store.list_properties()})

    def get_property(self, request: Request, version: str) -> Response:
        return Response(200, self.store.get_property(unquote(request.params["name"])))

    def create_property(self, request: Request, version: str) -> Response:
        return Response(201, self.store.create_property(_object_body(request)))

    def update_property(self, request: Request, version: str) -> Response:
        return Response(200, self.store.update_property(unquote(request.params["name"]), _object_body(request)))

    def usage(self, request: Request, version: str) -> Response:
        refusal = self.setting("usage_status")
        if refusal:
            return Response(
                int(refusal),
                {
                    "status": "error",
                    "message": MISSING_SCOPES_MESSAGE,
                    "correlationId": correlation_id(),
                    "errors": [
                        {
                            "message": "One or more of the following scopes are required.",
                            "context": {"requiredGranularScopes": ["oauth"]},
                        }
                    ],
                    "links": {"scopes": "https://developers.hubspot.com/scopes"},
                    "category": "MISSING_SCOPES",
                },
            )
        return Response(200, self.limiter.usage(int(self.setting("daily_limit"))))

    # ---- contacts ----------------------------------------------------------------------------------------

    def batch_upsert(self, request: Request, version: str) -> Response:
        """POST .../contacts/batch/upsert by idProperty email ("Create or update a batch of contacts by unique
        property values"; multi-status with objectWriteTraceId per the Contacts API guide)."""
        return self._batch_write(request, version, upsert=True)

    def batch_update(self, request: Request, version: str) -> Response:
        """POST .../contacts/batch/update by id or by ``idProperty`` email ("Update contacts"); never creates.
        Unknown ids are answered as the ``update_not_found`` setting says (the docs do not specify it)."""
        return self._batch_write(request, version, upsert=False)

    def _batch_write(self, request: Request, version: str, upsert: bool) -> Response:
        started = iso(time.time())
        inputs = _batch_inputs(request)
        by_email = upsert or any(i.get("idProperty") == "email" for i in inputs)
        if upsert and any(i.get("idProperty") != "email" for i in inputs):
            raise HubSpotError(400, "VALIDATION_ERROR", "The sandbox upserts contacts by idProperty email only")
        keys = [str(i.get("id", "")).strip().lower() if by_email else str(i.get("id", "")) for i in inputs]
        _reject_duplicates(keys)
        traces = [i.get("objectWriteTraceId") for i in inputs]
        multi_status = all(traces) and len(set(traces)) == len(traces)
        additional = self.setting("merged_email_lookup") == "primary"
        existing = self.store.find(keys, by_email=by_email, additional=additional)
        items, missing = [], []
        for raw, key, trace in zip(inputs, keys, traces):
            values, problems = self.store.check_values(raw.get("properties", {}))
            item = WriteInput(key, values, trace if multi_status else None, problems)
            row = existing.get(key)
            if upsert and not EMAIL.match(key):
                problems.append(InputProblem("INVALID_EMAIL", "email", f"Email address {key} is invalid"))
            if not upsert:
                if row is None:
                    missing.append(item)
                    continue
                item.key = str(row["id"])
                self._check_email_free(item)
            self._check_rules(version, item, row)
            items.append(item)
        failed = [i for i in items if i.problems]
        self._refuse_whole_batch(upsert, multi_status, failed, missing)
        delay = float(self.setting("index_delay_seconds"))
        good = [i for i in items if not i.problems]
        results = (self.store.upsert if upsert else self.store.update)(good, delay) if good else []
        body: dict[str, Any] = {
            "status": "COMPLETE",
            "results": results,
            "startedAt": started,
            "completedAt": iso(time.time()),
        }
        if not failed and not missing:
            return Response(200, body)
        body["numErrors"] = len(failed) + len(missing)
        body["errors"] = [_input_error(i) for i in failed] + _not_found_errors(missing, multi_status)
        return Response(207, body)

    def _refuse_whole_batch(
        self, upsert: bool, multi_status: bool, failed: list[WriteInput], missing: list[WriteInput]
    ) -> None:
        """Raise the whole-batch refusal a batch with bad or unknown inputs gets, unless it is answered 207.

        Without unique trace ids HubSpot cannot answer per input: the batch is refused, naming the invalid values
        ("Property values were not valid: [...]"). With them, ``upsert_errors`` decides (HubSpot: "partial upserts
        are not supported when using email as the idProperty").
        """
        mode = self.setting("update_not_found")
        if missing and (mode != "207" or not multi_status):
            mode, ids = ("404" if mode == "207" else mode), [i.key for i in missing]
            if mode == "404":
                raise HubSpotError(404, "OBJECT_NOT_FOUND", NOT_FOUND_MESSAGE, context={"ids": ids})
            if mode == "400":
                raise HubSpotError(400, "OBJECT_NOT_FOUND", f"{NOT_FOUND_MESSAGE} Not found: [{', '.join(ids)}]")
            raise HubSpotError(404, "OBJECT_NOT_FOUND", "Could not update some CONTACT objects.")
        mode = self.setting("upsert_errors") if upsert and multi_status else "400"
        if not failed or (multi_status and mode == "207"):
            return
        if mode == "400_silent":
            raise HubSpotError(400, "VALIDATION_ERROR", "Invalid input: one or more inputs could not be written")
        message, errors = problems_error([p for i in failed for p in i.problems])
        raise HubSpotError(failed[0].status, failed[0].category, message, errors)

    def _check_email_free(self, item: WriteInput) -> None:
        """An update may not give a contact the email of another one: emails identify contacts."""
        email = item.properties.get("email")
        other = self.store.find([email], by_email=True).get(email) if email else None
        if other is not None and str(other["id"]) != item.key:
            item.status, item.category = 409, "CONFLICT"
            item.problems.append(
                InputProblem(
                    "CONFLICT", "email", f"A contact with this email already exists. Existing ID: {other['id']}"
                )
            )

    def _check_rules(self, version: str, item: WriteInput, row: dict | None) -> None:
        """2026-09 enforces the account's validation rules on every CRM write (Developer Changelog, 2026-09)."""
        if version != "2026-09":
            return
        stored = json.loads(row["properties"]) if row else {}
        for name in self.setting("validation_rules") or []:
            if item.properties.get(name, stored.get(name, "")) == "":
                item.problems.append(
                    InputProblem(
                        "VALIDATION_RULE", name, f'Property "{name}" is required by a validation rule of this account'
                    )
                )

    def batch_read(self, request: Request, version: str) -> Response:
        """POST .../contacts/batch/read; unknown ids give a 207 with one OBJECT_NOT_FOUND error ("Read a batch").
        A merged-away email is looked up as ``merged_email_lookup`` says, as in batch/update."""
        started = iso(time.time())
        inputs = _batch_inputs(request)
        body = _object_body(request)
        by_email = body.get("idProperty") == "email"
        keys = [str(i.get("id", "")) for i in inputs]
        additional = by_email and self.setting("merged_email_lookup") == "primary"
        found = self.store.find(keys, by_email=by_email, additional=additional)
        requested = body.get("properties") or None
        results = [public_contact(row, requested) for row in {r["id"]: r for r in found.values()}.values()]
        answer: dict[str, Any] = {
            "status": "COMPLETE",
            "results": results,
            "startedAt": started,
            "completedAt": iso(time.time()),
        }
        missing = [k for k in keys if k not in found]
        if not missing:
            return Response(200, answer)
        answer["numErrors"] = 1
        answer["errors"] = [
            {
                "status": "error",
                "category": "OBJECT_NOT_FOUND",
                "message": "Could not get some CONTACT objects, they may be deleted or not exist. Check that ids are valid.",
                "context": {"ids": missing},
                "errors": [],
            }
        ]
        return Response(207, answer)

    def list_contacts(self, request: Request, version: str) -> Response:
        """GET .../contacts with limit ≤ 100 and an ``after`` cursor ("List contacts")."""
        limit = _query_int(request, "limit", 10)
        if not 0 < limit <= MAX_LIST_LIMIT:
            raise HubSpotError(400, "VALIDATION_ERROR", f"limit must be between 1 and {MAX_LIST_LIMIT}, got {limit}")
        after = _query_int(request, "after", 0)
        rows, next_after = self.store.page(after, limit)
        requested = _query_list(request, "properties")
        answer: dict[str, Any] = {"results": [public_contact(r, requested) for r in rows]}
        if next_after is not None:
            answer["paging"] = {"next": {"after": str(next_after), "link": f"{request.path}?after={next_after}"}}
        return Response(200, answer)

    def get_contact(self, request: Request, version: str) -> Response:
        """GET .../contacts/{id} or /{email}?idProperty=email ("Retrieve a contact")."""
        key = unquote(request.params["contact_id"])
        by_email = request.arg("idProperty") == "email"
        row = self.store.find([key], by_email=by_email).get(key)
        if row is None:
            raise HubSpotError(404, "OBJECT_NOT_FOUND", f"No contact with {'email' if by_email else 'id'} {key}")
        return Response(200, public_contact(row, _query_list(request, "properties")))

    def update_contact(self, request: Request, version: str) -> Response:
        key = unquote(request.params["contact_id"])
        body = _object_body(request)
        by_email = request.arg("idProperty") == "email"
        row = self.store.find([key], by_email=by_email).get(key)
        if row is None:
            raise HubSpotError(404, "OBJECT_NOT_FOUND", f"No contact with {'email' if by_email else 'id'} {key}")
        values, problems = self.store.check_values(body.get("properties", {}))
        item = WriteInput(str(row["id"]), values, None, problems)
        self._check_email_free(item)
        self._check_rules(version, item, row)
        _raise_problems(item.problems)
        return Response(200, self.store.update([item], float(self.setting("index_delay_seconds")))[0])

    def archive_contact(self, request: Request, version: str) -> Response:
        """DELETE .../contacts/{contactId} ("Archive a contact"): 204, no body; unknown id → 404."""
        self.store.delete(self._contact(unquote(request.params["contact_id"]), by_email=False)["id"])
        return Response(204)

    def gdpr_delete(self, request: Request, version: str) -> Response:
        """POST .../contacts/gdpr-delete {objectId, idProperty?} ("GDPR delete": permanent): 204."""
        body = _object_body(request)
        row = self._contact(str(body.get("objectId", "")), by_email=body.get("idProperty") == "email")
        self.store.delete(row["id"])
        return Response(204)

    def merge_contacts(self, request: Request, version: str) -> Response:
        """POST .../contacts/merge {primaryObjectId, objectIdToMerge} ("Merge two contacts"): the merged record."""
        body = _object_body(request)
        primary = self._contact(str(body.get("primaryObjectId", "")), by_email=False)
        other = self._contact(str(body.get("objectIdToMerge", "")), by_email=False)
        if primary["id"] == other["id"]:
            raise HubSpotError(400, "VALIDATION_ERROR", "A contact cannot be merged with itself")
        merged = self.store.merge(primary["id"], other["id"], float(self.setting("index_delay_seconds")))
        return Response(200, merged)

    def _contact(self, key: str, by_email: bool) -> dict[str, Any]:
        row = self.store.find([key], by_email=by_email).get(key) if key else None
        if row is None:
            raise HubSpotError(404, "OBJECT_NOT_FOUND", f"No contact with {'email' if by_email else 'id'} {key}")
        return row

    def create_contact(self, request: Request, version: str) -> Response:
        """POST .../contacts ("Create a contact"); an existing email → 409."""
        body = _object_body(request)
        values, problems = self.store.check_values(body.get("properties", {}))
        item = WriteInput(values.get("email", ""), values, None, problems)
        self._check_rules(version, item, None)
        _raise_problems(item.problems)
        return Response(201, self.store.create(item, float(self.setting("index_delay_seconds"))))

    def search(self, request: Request, version: str) -> Response:
        return Response(200, self.store.search(_object_body(request)))


def _object_body(request: Request) -> dict[str, Any]:
    body = request.json()
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise HubSpotError(400, "VALIDATION_ERROR", "The request body must be a JSON object")
    return body


def _batch_inputs(request: Request) -> list[dict[str, Any]]:
    """``inputs`` of a batch call: a non-empty list of at most 100 objects ("Batch limits": 100 records)."""
    inputs = _object_body(request).get("inputs")
    if not isinstance(inputs, list) or not inputs or not all(isinstance(i, dict) for i in inputs):
        raise HubSpotError(400, "VALIDATION_ERROR", "inputs must be a non-empty list of objects")
    if len(inputs) > MAX_BATCH_INPUTS:
        raise HubSpotError(
            400, "VALIDATION_ERROR", f"Batch input size must be at most {MAX_BATCH_INPUTS}, got {len(inputs)} inputs"
        )
    return inputs


def _reject_duplicates(keys: list[str]) -> None:
    seen, duplicates = set(), []
    for key in keys:
        if key in seen and key not in duplicates:
            duplicates.append(key)
        seen.add(key)
    if duplicates:
        raise HubSpotError(
            400,
            "VALIDATION_ERROR",
            f"Duplicate IDs found in batch input: [{', '.join(duplicates)}]. IDs must be unique",
        )


def _input_error(item: WriteInput) -> dict[str, Any]:
    """One errors[] entry of a 207: names the input by its objectWriteTraceId."""
    message, errors = problems_error(item.problems)
    return {
        "status": "error",
        "category": item.category,
        "message": message,
        "context": {"objectWriteTraceId": [item.trace_id]},
        "errors": errors,
    }


def _not_found_errors(missing: list[WriteInput], multi_status: bool) -> list[dict[str, Any]]:
    """errors[] entries for unknown ids: one per input by trace id, or one naming all ids (batch/read's shape)."""
    if not missing:
        return []
    entry = {"status": "error", "category": "OBJECT_NOT_FOUND", "message": NOT_FOUND_MESSAGE, "errors": []}
    if multi_status:
        return [{**entry, "context": {"objectWriteTraceId": [i.trace_id], "ids": [i.key]}} for i in missing]
    return [{**entry, "context": {"ids": [i.key for i in missing]}}]


def _raise_problems(problems: list[InputProblem]) -> None:
    if problems:
        message, errors = problems_error(problems)
        raise HubSpotError(400, "VALIDATION_ERROR", message, errors)


def _query_int(request: Request, name: str, default: int) -> int:
    raw = request.arg(name)
    try:
        return int(raw) if raw not in (None, "") else default
    except ValueError:
        raise HubSpotError(400, "VALIDATION_ERROR", f"{name} must be an integer, got {raw!r}") from None


def _query_list(request: Request, name: str) -> list[str] | None:
    names = [n for value in request.query.get(name, []) for n in value.split(",") if n]
    return names or None


def build_server(host: str, port: int, store: ContactStore, faults: Faults, defaults: dict[str, Any]) -> SandboxServer:
    sandbox = HubSpotSandbox(store, faults, defaults)
    server = SandboxServer(
        (host, port),
        sandbox.router,
        faults,
        fault_response,
        sandbox.reset,
        "hubspot",
        rate_limited=sandbox.rate_limited,
    )
    # the state dump the tests compare against (sandbox-only, like every /_sandbox/ path)
    server.admin.add("GET", "/_sandbox/contacts", lambda request: Response(200, {"contacts": store.all_contacts()}))
    return server


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sandbox.hubspot", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", choices=["serve", "reset"], default="serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--db", default="hubspot-sandbox.sqlite3", help="SQLite state file")
    parser.add_argument("--reset", action="store_true", help="empty the state file before serving")
    parser.add_argument("--rate-limit", type=int, default=DEFAULTS["rate_limit"], help="calls per rolling window")
    parser.add_argument("--interval-ms", type=int, default=DEFAULTS["interval_ms"], help="rolling window length")
    parser.add_argument("--daily-limit", type=int, default=DEFAULTS["daily_limit"])
    parser.add_argument("--search-rate", type=int, default=DEFAULTS["search_rate"], help="search calls per second")
    parser.add_argument(
        "--index-delay", type=float, default=DEFAULTS["index_delay_seconds"], help="seconds search lags writes"
    )
    parser.add_argument("--token-ttl", type=int, default=1800, help="OAuth access token lifetime in seconds")
    parser.add_argument("--validation-rules", default="", help="comma-separated properties 2026-09 writes must set")
    for name, choices in VARIANTS.items():
        flag = f"--{name.replace('_', '-')}"
        parser.add_argument(flag, choices=choices, default=DEFAULTS[name], help=f"the {name} answer variant")
    parser.add_argument(
        "--usage-status", type=int, choices=[401, 403], default=None,
        help="the daily-usage endpoint refuses the token (MISSING_SCOPES) with this status",
    )
    add_fault_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.command == "reset" or args.reset:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(args.db + suffix):
                os.remove(args.db + suffix)
    store = ContactStore(args.db)
    if args.command == "reset":
        print(f"hubspot sandbox state reset: {args.db}", flush=True)
        return
    defaults = {
        "rate_limit": args.rate_limit,
        "interval_ms": args.interval_ms,
        "daily_limit": args.daily_limit,
        "search_rate": args.search_rate,
        "index_delay_seconds": args.index_delay,
        "validation_rules": [r for r in args.validation_rules.split(",") if r],
        **{name: getattr(args, name) for name in VARIANTS},
        "usage_status": args.usage_status,
    }
    faults = faults_from_args(args, token_ttl_seconds=args.token_ttl, extra=dict(defaults))
    serve(build_server(args.host, args.port, store, faults, defaults))


if __name__ == "__main__":
    sys.exit(main())
