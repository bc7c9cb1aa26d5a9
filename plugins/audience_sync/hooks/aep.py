"""Adobe Experience Platform hook: IMS server-to-server tokens, gateway headers, retries, paging.

Airflow connection (id ``aep_default``, overridable per task), conn type ``http``:

- host: Platform base URL, default ``https://platform.adobe.io`` (a full URL with scheme and port is allowed; a host
  without a scheme means ``https``, and tokens go over plain ``http`` only when the host says ``http://``)
- login: the OAuth server-to-server client id (also sent as ``x-api-key``)
- password: the client secret
- extras: ``org_id`` (``x-gw-ims-org-id``), ``sandbox_name`` (``x-sandbox-name``, default ``prod``),
  ``ims_url`` (default ``https://ims-na1.adobelogin.com``; the full token URL ending ``/ims/token/v3`` also
  works; without a scheme it means ``https``), ``scopes`` (comma-separated, default Adobe's documented server-to-server scopes
  ``openid,AdobeID,read_organizations,additional_info.projectedProductContext,session``),
  ``export_dataset_id``, ``merge_policy_id`` (defaults of the export task).

Extras are read by name and never sent as headers (see hooks/base.py).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
from airflow.sdk.log import mask_secret

from audience_sync.errors import ConfigurationError
from audience_sync.hooks.base import (
    ApiError,
    RetryingApiHook,
    RetrySettings,
    base_url_for,
    json_body,
    parse_json,
)

log = logging.getLogger(__name__)

DEFAULT_IMS_URL = "https://ims-na1.adobelogin.com"
# developer.adobe.com, "OAuth Server-to-Server credential API Reference" and the Experience Platform
# authentication guide: the scopes an Experience Platform server-to-server credential asks for.
DEFAULT_SCOPES = "openid,AdobeID,read_organizations,additional_info.projectedProductContext,session"
TOKEN_RENEWAL_MARGIN_SECONDS = 300.0
IMS_TOKEN_PATH = "/ims/token/v3"


@dataclass(frozen=True)
class AepSettings:
    client_id: str
    client_secret: str
    org_id: str
    sandbox_name: str
    ims_url: str
    scopes: str
    export_dataset_id: str | None
    merge_policy_id: str | None


class AepHook(RetryingApiHook):
    """Talks to Platform with a cached IMS token; renews it shortly before expiry and once after a 401.

    Its POSTs are not safe to resend: ``POST /export/jobs`` starts a new export job each time and ``POST /connections``
    makes another connection. They are resent only after 423/429/503 or a connection that never opened; after a
    500/502/504, a dropped connection or an unreadable answer the hook raises ``RetriesExhausted`` at once (see
    ``RetryingApiHook``) rather than risk a second job or connection."""

    service = "AEP"
    default_host = "https://platform.adobe.io"
    conn_name_attr = "aep_conn_id"
    default_conn_name = "aep_default"
    conn_type = "http"
    hook_name = "Adobe Experience Platform"

    def __init__(
        self, aep_conn_id: str = default_conn_name, retry: RetrySettings | None = None, timeout: float = 60.0
    ) -> None:
        super().__init__(aep_conn_id, retry=retry, timeout=timeout)
        self.aep_conn_id = aep_conn_id
        self._settings: AepSettings | None = None
        self._token: str | None = None
        self._token_renew_at = 0.0
        self._token_lock = threading.Lock()
        self._ims_session = requests.Session()
        self.token_requests = 0  # how many IMS calls this hook made: tests and logs read it

    # --- configuration ----------------------------------------------------------------------------
    @property
    def settings(self) -> AepSettings:
        if self._settings is None:
            connection = self.get_connection(self.aep_conn_id)
            extra = connection.extra_dejson
            missing = [name for name, value in (("login (client id)", connection.login),
                                                ("password (client secret)", connection.password),
                                                ("extra org_id", extra.get("org_id"))) if not value]
            if missing:
                raise ConfigurationError(f"Airflow connection {self.aep_conn_id!r} lacks {', '.join(missing)}")
            mask_secret(connection.password)
            self._settings = AepSettings(
                client_id=connection.login,
                client_secret=connection.password,
                org_id=extra["org_id"],
                sandbox_name=extra.get("sandbox_name") or "prod",
                ims_url=base_url_for(extra.get("ims_url"), DEFAULT_IMS_URL),
                scopes=extra.get("scopes") or DEFAULT_SCOPES,
                export_dataset_id=extra.get("export_dataset_id"),
                merge_policy_id=extra.get("merge_policy_id"),
            )
        return self._settings

    def static_headers(self) -> dict[str, str]:
        # experienceleague.adobe.com, "Getting started with Experience Platform APIs": every call carries
        # x-api-key, x-gw-ims-org-id and x-sandbox-name besides the bearer token.
        settings = self.settings
        return {
            "x-api-key": settings.client_id,
            "x-gw-ims-org-id": settings.org_id,
            "x-sandbox-name": settings.sandbox_name,
            "Accept": "application/json",
        }

    # --- IMS token --------------------------------------------------------------------------------
    def access_token(self) -> str:
        with self._token_lock:
            if self._token is None or time.monotonic() >= self._token_renew_at:
                self._fetch_token()
            return self._token

    def on_unauthorized(self) -> bool:
        with self._token_lock:
            self._fetch_token()
        return True

    def _fetch_token(self) -> None:
        """``POST {ims_url}/ims/token/v3`` form-encoded, client_credentials grant (developer.adobe.com,
        "OAuth Server-to-Server credential API Reference"); reply ``{access_token, token_type, expires_in}``."""
        settings = self.settings
        form = {
            "grant_type": "client_credentials",
            "client_id": settings.client_id,
            "client_secret": settings.client_secret,
            "scope": settings.scopes,
        }
        url = settings.ims_url if settings.ims_url.endswith(IMS_TOKEN_PATH) else settings.ims_url + IMS_TOKEN_PATH
        body = self._post_ims(url, form)
        token = body["access_token"]
        mask_secret(token)
        lifetime = float(body.get("expires_in") or 0)
        # Renew 5 minutes early, or at 90 % of the lifetime for short-lived tokens.
        margin = min(TOKEN_RENEWAL_MARGIN_SECONDS, lifetime * 0.1)
        self._token = token
        self._token_renew_at = time.monotonic() + lifetime - margin
        self.token_requests += 1
        log.info("AEP: obtained an IMS access token valid for %.0f s", lifetime)

    def _post_ims(self, url: str, form: dict[str, str]) -> dict[str, Any]:
        """IMS sits on another host than Platform and gets no gateway headers, so it has its own session (plain
        ``http`` only when ``ims_url`` says so). Through the one retry loop; resending is safe (a new token)."""
        def read(response: requests.Response) -> dict[str, Any] | None:
            if not response.ok:
                return None
            body = parse_json(response)
            if not isinstance(body, dict) or not body.get("access_token"):
                raise ValueError("token answer without access_token")  # unreadable: retried, then transient
            return body

        try:
            response, body = self.call_with_retries(
                "IMS token request", lambda: self._ims_session.post(url, data=form, timeout=self.timeout), read
            )
            self.checked(response)
        except ApiError as error:  # say which call failed: IMS, not Platform
            error.category = f"IMS {error.category or ''}".strip()
            raise type(error)(error.service, error.status, error.category, error.message, error.request_id) from None
        return body

    # --- errors -----------------------------------------------------------------------------------
    def error_from_response(self, response: requests.Response) -> ApiError:
        """Platform errors are ``{type, title, status, detail|report}`` with an ``x-request-id`` header
        (experienceleague.adobe.com, "Experience Platform API troubleshooting guide"); the gateway answers
        ``{error_code, message}``; IMS answers ``{error, error_description}``."""
        body = json_body(response)
        category = body.get("title") or body.get("error_code") or body.get("error") or body.get("code")
        detail = (
            body.get("detail") or body.get("report") or body.get("message")
            or body.get("error_description") or response.reason or ""
        )
        if not isinstance(detail, str):
            detail = json.dumps(detail, sort_keys=True, default=str)[:2000]
        request_id = response.headers.get("x-request-id") or body.get("request_id") or body.get("requestId")
        response.close()
        return ApiError(
            self.service, response.status_code, self._scrub(str(category)) if category else None,
            self._scrub(detail), request_id, body,
        )

    def _scrub(self, text: str) -> str:
        """An error text that echoes a credential must not carry it into logs or exceptions."""
        for secret in (self._settings.client_secret if self._settings else None, self._token):
            if secret:
                text = text.replace(secret, "***")
        return text

    # --- paging -----------------------------------------------------------------------------------
    def paginate(
        self, endpoint: str, items_keys: tuple[str, ...], params: dict[str, Any] | None = None
    ) -> Iterator[dict]:
        """Yield the items (under the first of ``items_keys`` present) over every page.

        Follows ``_links.next.href`` (Flow Service ``continuationToken``, Segmentation ``start``/``limit``):
        only its query string is used, so relative and absolute links both work; without a link,
        ``_page.totalCount`` with ``start`` moves on by the page's size."""
        params = dict(params or {})
        seen: set[tuple] = set()
        while True:
            body = self.request_json("GET", endpoint, params=params) or {}
            items = next((body[key] for key in items_keys if isinstance(body.get(key), list)), [])
            yield from items
            next_params = self._next_page_params(body, params, len(items))
            if not items or next_params is None:
                return
            key = tuple(sorted(next_params.items()))
            if key in seen:
                return
            seen.add(key)
            params = next_params

    @staticmethod
    def _next_page_params(body: dict, params: dict[str, Any], count: int) -> dict[str, Any] | None:
        link = ((body.get("_links") or {}).get("next") or {}).get("href")
        if link:
            query = dict(parse_qsl(urlsplit(link).query))
            return {**params, **query} if query else None
        page = body.get("_page") or {}
        total = page.get("totalCount")
        if total is not None and "start" in params:
            start = int(params["start"]) + count
            return {**params, "start": start} if start < int(total) else None
        return None
