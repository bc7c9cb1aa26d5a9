"""HubSpot hook: auth (private-app token, service key or OAuth refresh), rate limits, error parsing.

Airflow connection ``hubspot_default`` (override per task), conn type ``http``:

- host: API base URL, default ``https://api.hubapi.com``; a full URL with scheme and port is allowed
  (the local sandbox: ``http://127.0.0.1:8081``).
- password: a legacy private-app token (``pat-na1-...``) or a service key; both are sent as
  ``Authorization: Bearer``. When set it wins over the OAuth extras below.
- extras, OAuth app (used only without a password): ``client_id``, ``client_secret``,
  ``refresh_token``. The hook refreshes the access token through ``POST /oauth/<version>/token``
  before it expires (it tracks ``expires_in``); a 401 also triggers one refresh. An ``access_token``
  extra without refresh credentials is used as a plain bearer token.
- extras, tuning: ``api_version`` (``"2026-03"`` default, ``"2026-09"``, or ``"v3"`` for the legacy
  ``/crm/v3`` paths), ``rate_limit`` (requests per window before the first answer tells us, default
  100), ``rate_interval_ms`` (10000), ``search_rate`` (search requests per second, 4), ``rate_share``
  (0 < share ≤ 1: this task's part of the account limit when N tasks run in parallel, e.g. 1/N for an
  Airflow pool ``hubspot_api`` with N slots; default 1).

Extras are never sent as headers (see hooks/base.py); tokens are masked as soon as they are known.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from functools import cached_property
from typing import Any

import requests
from airflow.sdk.log import mask_secret

from audience_sync.hooks.base import (
    ApiError,
    RetriesExhausted,
    RetryingApiHook,
    RetrySettings,
    json_body,
    retry_after_seconds,
)
from audience_sync.ratelimit import RollingWindowLimiter

log = logging.getLogger(__name__)

DEFAULT_API_VERSION = "2026-03"
LEGACY_VERSION = "v3"
DEFAULT_RATE_LIMIT = 100  # Free/Starter private apps: 100 / 10 s, the lowest tier (usage guidelines page)
DEFAULT_RATE_INTERVAL_MS = 10_000
DEFAULT_SEARCH_RATE = 4  # "CRM Search API Rate Limit Increase" changelog: four requests per second
MAX_429_WAIT_S = 900.0  # a sync never fails on 429s, but it does not wait forever either

EMAIL_PATTERN = re.compile(r"[^\s\"'<>(),;:\[\]{}]+@[^\s\"'<>(),;:\[\]{}]+")


def redact(text: str) -> str:
    """HubSpot error messages can quote record values; keep emails out of logs and exceptions."""
    return EMAIL_PATTERN.sub("<email>", text or "")


class HubSpotHook(RetryingApiHook):
    """One instance per task: its limiters are shared by every thread of the task."""

    service = "HubSpot"
    default_host = "https://api.hubapi.com"
    conn_name_attr = "hubspot_conn_id"
    default_conn_name = "hubspot_default"
    conn_type = "http"
    hook_name = "HubSpot"

    def __init__(
        self,
        hubspot_conn_id: str = default_conn_name,
        rate_share: float | None = None,
        retry: RetrySettings | None = None,
        timeout: float = 60.0,
        max_429_wait_s: float = MAX_429_WAIT_S,
    ) -> None:
        super().__init__(hubspot_conn_id, retry=retry, timeout=timeout)
        self.hubspot_conn_id = hubspot_conn_id
        self._rate_share = rate_share
        self.max_429_wait_s = max_429_wait_s
        self._token_lock = threading.Lock()
        self._access_token: str | None = None
        self._expires_at = 0.0
        self._refresh_margin = 0.0
        self._refresh_token: str | None = None
        self._local = threading.local()

    # --- settings -----------------------------------------------------------------------------------
    @cached_property
    def connection(self):
        return self.get_connection(self.hubspot_conn_id)

    @cached_property
    def extras(self) -> dict[str, Any]:
        return dict(self.connection.extra_dejson or {})

    @cached_property
    def api_version(self) -> str:
        return str(self.extras.get("api_version") or DEFAULT_API_VERSION)

    @property
    def uses_oauth(self) -> bool:
        return not self.connection.password and bool(self.extras.get("refresh_token"))

    def path(self, family: str, rest: str = "") -> str:
        """Versioned path for every call. Dated versions put the version after the API family
        (``/crm/objects/2026-03/contacts``, "Upsert contacts" 2026-03 reference); the legacy form puts
        it after ``crm`` (``/crm/v3/objects/contacts``), and OAuth's legacy form is ``/oauth/v1``."""
        rest = rest.strip("/")
        if self.api_version == LEGACY_VERSION:
            if family.startswith("crm/"):
                base = f"/crm/v3/{family.split('/', 1)[1]}"
            elif family == "oauth":
                base = "/oauth/v1"
            else:
                base = f"/{family}/v3"
        else:
            base = f"/{family}/{self.api_version}"
        return f"{base}/{rest}" if rest else base

    @cached_property
    def limiter(self) -> RollingWindowLimiter:
        interval_ms = float(self.extras.get("rate_interval_ms") or DEFAULT_RATE_INTERVAL_MS)
        return RollingWindowLimiter(
            int(self.extras.get("rate_limit") or DEFAULT_RATE_LIMIT),
            interval_ms / 1000,
            share=self.rate_share,
            stale_after_s=self.timeout,
        )

    @cached_property
    def search_limiter(self) -> RollingWindowLimiter:
        """Search answers carry no rate headers ("Burst limits are increasing" changelog): a fixed per-second limit."""
        return RollingWindowLimiter(
            int(self.extras.get("search_rate") or DEFAULT_SEARCH_RATE), 1.0, share=self.rate_share, stale_after_s=self.timeout
        )

    @cached_property
    def rate_share(self) -> float:
        share = self._rate_share if self._rate_share is not None else self.extras.get("rate_share", 1.0)
        return float(share)

    # --- auth ---------------------------------------------------------------------------------------
    def access_token(self) -> str:
        with self._token_lock:
            if self._access_token and (not self._expires_at or time.time() < self._expires_at - self._refresh_margin):
                return self._access_token
            conn = self.connection
            if conn.password:
                self._access_token = conn.password
            elif self.extras.get("refresh_token"):
                self._refresh()
            elif self.extras.get("access_token"):
                self._access_token = self.extras["access_token"]
            else:
                raise ValueError(
                    f"connection {self.hubspot_conn_id!r} has no HubSpot credentials: set the password to a "
                    "private-app token or service key, or the extras client_id, client_secret and refresh_token"
                )
            mask_secret(self._access_token)
            return self._access_token

    def oauth_access_token(self) -> str:
        """A freshly refreshed access token of the connection's OAuth app, even when a password is set:
        AEP's Flow Service HubSpot source takes the OAuth app's tokens, never a private-app token."""
        with self._token_lock:
            self._refresh()
            return self._access_token

    def _refresh(self) -> None:
        """``POST /oauth/<v>/token`` form-encoded (refs "Refresh an access token", 2026-03 and legacy v1).
        Runs outside the retrying session: that session's auth would ask for the token being refreshed."""
        extras = self.extras
        for key in ("client_id", "client_secret"):
            if not extras.get(key):
                raise ValueError(f"connection {self.hubspot_conn_id!r}: OAuth refresh needs the extra {key!r}")
        refresh_token = self._refresh_token or extras["refresh_token"]
        mask_secret(refresh_token)
        mask_secret(extras["client_secret"])
        self.get_conn()  # sets base_url
        form = {
            "grant_type": "refresh_token",
            "client_id": extras["client_id"],
            "client_secret": extras["client_secret"],
            "refresh_token": refresh_token,
        }
        url = f"{self.base_url}{self.path('oauth', 'token')}"
        attempt, deadline = 0, time.monotonic() + self.max_429_wait_s
        while True:
            try:
                response = requests.post(url, data=form, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as error:
                attempt += 1
                if attempt >= self.retry.max_attempts:
                    raise RetriesExhausted(self.service, 0, "CONNECTION_ERROR", f"token refresh: {type(error).__name__}") from None
                time.sleep(self.retry.backoff(attempt))
                continue
            if response.status_code == 429 and time.monotonic() < deadline:
                wait = retry_after_seconds(response)
                time.sleep(wait if wait is not None else self.limiter.interval_s)
                continue
            if response.status_code >= 500 and attempt + 1 < self.retry.max_attempts:
                attempt += 1
                time.sleep(self.retry.backoff(attempt))
                continue
            if not response.ok:
                raise self.error_from_response(response)
            break
        body = response.json()
        # The 2026-03 reference shows camelCase fields, the v1 one snake_case: accept both.
        token = body.get("access_token") or body.get("accessToken")
        if not token:
            raise ApiError(self.service, response.status_code, "INVALID_TOKEN_RESPONSE", "token answer without access_token")
        mask_secret(token)
        new_refresh = body.get("refresh_token") or body.get("refreshToken")
        if new_refresh:
            mask_secret(new_refresh)
            self._refresh_token = new_refresh
        expires_in = next((float(body[k]) for k in ("expires_in", "expiresIn") if body.get(k) is not None), 1800.0)
        self._access_token = token
        self._expires_at = time.time() + expires_in
        # Renew before expiry ("API usage guidelines": apps store the TTL and refresh themselves).
        self._refresh_margin = min(60.0, expires_in * 0.2)
        log.info("HubSpot OAuth access token refreshed; valid for %.0f s", expires_in)

    def on_unauthorized(self) -> bool:
        if not self.uses_oauth:
            return False
        with self._token_lock:
            self._access_token = None
            self._expires_at = 0.0
        self.access_token()
        return True

    # --- rate limits ---------------------------------------------------------------------------------
    @staticmethod
    def is_search(endpoint: str) -> bool:
        return endpoint.rstrip("/").endswith("/search")

    def before_request(self, endpoint: str) -> None:
        self._release_slots()  # a previous attempt of this thread that ended without an answer
        slots = []
        if self.is_search(endpoint):  # the scarcer limit first, so no general slot idles while waiting
            slots.append((self.search_limiter, self.search_limiter.acquire()))
        slots.append((self.limiter, self.limiter.acquire()))
        self._local.slots = slots

    def after_response(self, endpoint: str, response: requests.Response) -> None:
        self._release_slots()
        headers = response.headers
        try:
            limit = int(headers["X-HubSpot-RateLimit-Max"])
            interval = float(headers["X-HubSpot-RateLimit-Interval-Milliseconds"]) / 1000
        except (KeyError, ValueError):
            limit = interval = None
        if limit and interval:
            self.limiter.configure(limit, interval)
        remaining = headers.get("X-HubSpot-RateLimit-Remaining")
        if remaining is not None and remaining.strip().lstrip("-").isdigit():
            self.limiter.observe(int(remaining))
        if response.status_code == 429:
            limiter = self.search_limiter if self.is_search(endpoint) else self.limiter
            wait = retry_after_seconds(response)
            limiter.pause(wait if wait is not None else limiter.interval_s)

    def _release_slots(self) -> None:
        for limiter, slot in getattr(self._local, "slots", ()):
            limiter.release(slot)
        self._local.slots = []

    def retry_delay_for(self, response: requests.Response, attempt: int) -> float:
        if response.status_code == 429:
            if is_daily_limit(json_body(response)):
                raise self.error_from_response(response)
            return 0.0  # the limiter's pause holds every thread until the window has room
        return super().retry_delay_for(response, attempt)

    def request(self, method: str, endpoint: str, **kwargs: Any) -> requests.Response:
        """The base hook bounds retries by count; 429s are instead bounded by total waiting time."""
        deadline = time.monotonic() + self.max_429_wait_s
        while True:
            try:
                return super().request(method, endpoint, **kwargs)
            except RetriesExhausted as error:
                if error.status != 429 or is_daily_limit(error.body) or time.monotonic() > deadline:
                    raise
                log.warning("HubSpot still answers 429 after %d attempts; waiting on", self.retry.max_attempts)

    # --- errors --------------------------------------------------------------------------------------
    def error_from_response(self, response: requests.Response) -> ApiError:
        """HubSpot error body: status, message, correlationId, category, errors, context
        ("Error handling", developers.hubspot.com). Emails in the message are redacted."""
        body = json_body(response)
        category = body.get("category") or body.get("errorType") or body.get("policyName")
        message = redact(str(body.get("message") or response.reason or "no message"))
        return ApiError(self.service, response.status_code, category, message, body.get("correlationId"), body)


def is_daily_limit(body: dict[str, Any]) -> bool:
    """A 429 for the daily limit will not clear by waiting minutes (policyName ``DAILY``)."""
    return str(body.get("policyName", "")).upper() == "DAILY"
