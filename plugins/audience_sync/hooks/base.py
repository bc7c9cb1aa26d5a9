"""What the AEP and HubSpot hooks share: a session that never leaks connection extras, bearer
auth from a token provider, bounded retries with exponential backoff and full jitter that honour
``Retry-After``, and error bodies turned into exceptions that carry no secret and no record data.

Why not ``HttpHook.run``: ``HttpHook.get_conn`` sends every connection extra as an HTTP header
(``client_secret`` would go on the wire) and ``check_response`` logs whole error bodies, which can
hold emails (see ../shared/reference/airflow.md, "Hooks on HttpHook").
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import requests
from airflow.providers.http.hooks.http import HttpHook
from requests.adapters import HTTPAdapter

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


class ApiError(Exception):
    """An API answered with an error. The message holds status, category, text and request id only."""

    def __init__(
        self,
        service: str,
        status: int,
        category: str | None,
        message: str,
        request_id: str | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        self.service = service
        self.status = status
        self.category = category
        self.message = message
        self.request_id = request_id
        self.body = body or {}  # kept for callers that parse per-record errors; never logged whole
        details = f"{service} API error {status}"
        if category:
            details += f" {category}"
        details += f": {message}"
        if request_id:
            details += f" (request id {request_id})"
        super().__init__(details)


class RetriesExhausted(ApiError):
    """Every attempt failed with a retryable answer or a connection error."""


@dataclass(frozen=True)
class RetrySettings:
    max_attempts: int = 8
    base_delay: float = 0.5
    max_delay: float = 60.0

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff (AWS architecture blog, "Exponential Backoff And Jitter")."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


def retry_after_seconds(response: requests.Response) -> float | None:
    """Parse ``Retry-After`` as seconds or an HTTP date (RFC 9110 §10.2.3)."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class BearerAuth(requests.auth.AuthBase):
    """Adds ``Authorization: Bearer`` from a provider, asked on every request so renewals apply."""

    def __init__(self, token_provider: Callable[[], str]) -> None:
        self.token_provider = token_provider

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token_provider()}"
        return request


class RetryingApiHook(HttpHook):
    """Base of the project's hooks. Subclasses set ``service`` and implement auth and error parsing."""

    service = "HTTP"
    pool_size = 16

    def __init__(self, conn_id: str, retry: RetrySettings | None = None, timeout: float = 60.0) -> None:
        super().__init__(method="GET", http_conn_id=conn_id)
        self.retry = retry or RetrySettings()
        self.timeout = timeout
        self._session: requests.Session | None = None
        self._session_lock = threading.Lock()

    # --- connection -------------------------------------------------------------------------------
    def get_conn(self, headers: dict[str, Any] | None = None, extra_options: dict[str, Any] | None = None):
        """A session with the base URL and adapters, and deliberately none of the extras as headers."""
        with self._session_lock:
            if self._session is None:
                connection = self.get_connection(self.http_conn_id)
                self._set_base_url(connection)
                session = requests.Session()
                adapter = HTTPAdapter(pool_connections=self.pool_size, pool_maxsize=self.pool_size)
                session.mount("http://", adapter)
                session.mount("https://", adapter)
                session.auth = BearerAuth(self.access_token)
                session.headers.update(self.static_headers())
                self._session = session
            if headers:
                self._session.headers.update(headers)
            return self._session

    def _set_base_url(self, connection) -> None:
        if not connection.host:
            connection.host = self.default_host
        super()._set_base_url(connection)
        self.base_url = self.base_url.rstrip("/")

    # --- for subclasses ---------------------------------------------------------------------------
    def access_token(self) -> str:
        raise NotImplementedError

    def static_headers(self) -> dict[str, str]:
        return {}

    def on_unauthorized(self) -> bool:
        """Called once per request after a 401; return True when credentials were renewed."""
        return False

    def before_request(self, endpoint: str) -> None:
        """Hook for rate limiters: may block until a request is allowed."""

    def after_response(self, endpoint: str, response: requests.Response) -> None:
        """Hook for rate limiters: read rate headers."""

    def error_from_response(self, response: requests.Response) -> ApiError:
        raise NotImplementedError

    # --- requests ---------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        endpoint: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        stream: bool = False,
        ok_statuses: tuple[int, ...] = (),
    ) -> requests.Response:
        """Send one API call with retries; raise ``ApiError`` for any answer that is not 2xx or listed."""
        session = self.get_conn()
        url = f"{self.base_url}/{endpoint.lstrip('/')}"

        def send() -> requests.Response:
            self.before_request(endpoint)
            response = session.request(method, url, json=json, params=params, stream=stream, timeout=self.timeout)
            self.after_response(endpoint, response)
            return response

        response = self.send_with_retries(f"{method} {endpoint}", send)
        if response.status_code == 401 and self.on_unauthorized():
            log.info("%s answered 401; credentials renewed, retrying once", self.service)
            response = self.send_with_retries(f"{method} {endpoint}", send)
        return self.checked(response, ok_statuses)

    def send_with_retries(self, what: str, send: Callable[[], requests.Response]) -> requests.Response:
        """Call ``send`` until its answer is not retryable (429, 5xx) or the attempts run out, backing off
        between tries; connection errors and timeouts are retried too. Returns the last answer."""
        attempt = 0
        while True:
            attempt += 1
            try:
                response = send()
            except (requests.ConnectionError, requests.Timeout) as error:
                if attempt >= self.retry.max_attempts:
                    raise RetriesExhausted(
                        self.service, 0, "CONNECTION_ERROR", f"{what}: {type(error).__name__}"
                    ) from None
                delay = self.retry.backoff(attempt)
                log.warning(
                    "%s %s: %s, retry %d/%d in %.1fs",
                    self.service, what, type(error).__name__, attempt, self.retry.max_attempts - 1, delay,
                )
                time.sleep(delay)
                continue
            if response.status_code not in RETRYABLE_STATUSES or attempt >= self.retry.max_attempts:
                return response
            delay = self.retry_delay_for(response, attempt)
            log.warning(
                "%s %s answered %d, retry %d/%d in %.1fs",
                self.service, what, response.status_code, attempt, self.retry.max_attempts - 1, delay,
            )
            response.close()
            time.sleep(delay)

    def checked(self, response: requests.Response, ok_statuses: tuple[int, ...] = ()) -> requests.Response:
        """The answer itself when it is a success (or listed); otherwise the error it carries, raised."""
        if response.ok or response.status_code in ok_statuses:
            return response
        error = self.error_from_response(response)
        if response.status_code in RETRYABLE_STATUSES:
            raise RetriesExhausted(error.service, error.status, error.category, error.message, error.request_id, error.body)
        raise error

    def retry_delay_for(self, response: requests.Response, attempt: int) -> float:
        after = retry_after_seconds(response)
        return after if after is not None else self.retry.backoff(attempt)

    def request_json(self, method: str, endpoint: str, **kwargs: Any) -> Any:
        response = self.request(method, endpoint, **kwargs)
        return response.json() if response.content else None

    def test_connection(self) -> tuple[bool, str]:
        try:
            self.access_token()
            return True, f"{self.service} credentials accepted"
        except ApiError as error:
            return False, str(error)


def json_body(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {"errors": body}
