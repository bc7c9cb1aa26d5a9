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
from urllib.parse import urlsplit

import requests
from airflow.providers.http.hooks.http import HttpHook
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError

from audience_sync.errors import ConfigurationError, TransientError

log = logging.getLogger(__name__)

# The one retry predicate (``RetryingApiHook.retryable``) reads these.
RETRYABLE_STATUSES = frozenset({423, 429, 500, 502, 503, 504})
# Answers that say the server did not act on the request, so that even a request that is not safe to repeat may be
# resent: 429 and 423 refuse it outright; 503 says the server "is currently unable to handle the request" (RFC 9110
# §15.6.4). A 500, 502 or 504, a dropped connection or an unreadable answer leave it unknown.
NOT_ACTED_ON_STATUSES = frozenset({423, 429, 503})
# Answers that ask the client to wait, bounded by total waiting time rather than by a count of attempts.
THROTTLED_STATUSES = frozenset({423, 429})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})  # RFC 9110 §9.2.2
# HubSpot "Error handling" (developers.hubspot.com/docs/api-reference/error-handling): 423 Locked comes when syncing a
# high volume of data into one account at once; wait at least 2 seconds before the next request.
LOCKED_MIN_DELAY_S = 2.0
# A ``Retry-After`` above this is not obeyed to the letter: a 503 saying "come back tomorrow" must not hold a worker
# slot for a day. After the capped wait the call is tried again, and the attempts still run out.
MAX_RETRY_AFTER_S = 60.0
# Reading an answer failed: the body was cut mid-read (ChunkedEncodingError wraps urllib3's IncompleteRead and
# ProtocolError), could not be decompressed, or is not the JSON it should be (requests.JSONDecodeError is a ValueError).
UNREADABLE_ERRORS = (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError, ValueError)
TRANSPORT_ERRORS = (requests.ConnectionError, requests.Timeout)


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


class RetriesExhausted(ApiError, TransientError):
    """The service stayed unavailable or unreadable through the in-task retries (or a request that is not safe to
    resend failed without saying whether it was acted on): a task retry later may succeed."""


@dataclass(frozen=True)
class RetrySettings:
    max_attempts: int = 8
    base_delay: float = 0.5
    max_delay: float = 60.0
    max_throttled_wait: float = 900.0  # 429/423: a sync never fails on them, but does not wait forever either

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff (AWS architecture blog, "Exponential Backoff And Jitter")."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


def retry_after_seconds(response: requests.Response, service: str | None = None) -> float | None:
    """``Retry-After`` as seconds or an HTTP date (RFC 9110 §10.2.3), capped at ``MAX_RETRY_AFTER_S`` (logged when
    ``service`` is given: the retry loop says it once per wait)."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = max(0.0, float(value))
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = max(0.0, parsed.timestamp() - time.time())
    if seconds > MAX_RETRY_AFTER_S:
        if service:
            log.warning(
                "%s answered %d with Retry-After %.0f s; waiting %.0f s (the cap) instead",
                service, response.status_code, seconds, MAX_RETRY_AFTER_S,
            )
        return MAX_RETRY_AFTER_S
    return seconds


def never_sent(error: BaseException) -> bool:
    """The connection could not be opened, so the server cannot have seen the request."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(error, requests.ConnectionError) and isinstance(reason, NewConnectionError)


def base_url_for(host: str | None, default: str, schema: str | None = None, port: int | None = None) -> str:
    """``https://`` unless the user wrote ``http://`` in the host (or ``http`` as the connection's schema): a bearer
    token never goes over plain HTTP by default. HttpHook would prefix ``http://`` to a host without a scheme."""
    host = (host or default).strip().rstrip("/")
    if "://" not in host:
        host = f"{(schema or 'https').strip().lower()}://{host}"
    scheme = urlsplit(host).scheme.lower()
    if scheme not in ("http", "https"):
        raise ConfigurationError(f"unsupported URL scheme {scheme!r} in host {host!r}: use https:// (or http://)")
    if port and urlsplit(host).port is None:
        host = f"{host}:{port}"
    return host


class BearerAuth(requests.auth.AuthBase):
    """Adds ``Authorization: Bearer`` from a provider, asked on every request so renewals apply.

    Refuses a plain-``http`` URL unless the configuration asked for ``http://`` explicitly (``allow_http``)."""

    def __init__(self, token_provider: Callable[[], str], allow_http: bool = False) -> None:
        self.token_provider = token_provider
        self.allow_http = allow_http

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if not self.allow_http and urlsplit(request.url or "").scheme.lower() != "https":
            raise ConfigurationError(f"refusing to send a bearer token over plain HTTP to {urlsplit(request.url).netloc}")
        request.headers["Authorization"] = f"Bearer {self.token_provider()}"
        return request


class RetryingApiHook(HttpHook):
    """Base of the project's hooks. Subclasses set ``service`` and implement auth and error parsing.

    One retry policy for every call the project makes: ``retryable`` decides, ``retry_delay`` waits, ``call_with_retries``
    loops (token calls included). Safe to resend: GET, PUT, DELETE, and what a subclass names in ``safe_to_resend``.
    Any other request (AEP's ``POST /export/jobs`` and ``POST /connections``, HubSpot's property and group creates)
    is resent only after an answer that says the server did not act on it (423, 429, 503) or when the connection
    could not be opened; after a 500/502/504, a dropped connection or an unreadable answer it is not sent again, and
    ``RetriesExhausted`` (a ``TransientError``) leaves the decision to the task's retry, which can look first.
    """

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
                session.auth = BearerAuth(self.access_token, allow_http=self.base_url.startswith("http://"))
                session.headers.update(self.static_headers())
                self._session = session
            if headers:
                self._session.headers.update(headers)
            return self._session

    def _set_base_url(self, connection) -> None:
        self.base_url = base_url_for(connection.host, self.default_host, connection.schema, connection.port)
        self._base_url_initialized = True

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

    def safe_to_resend(self, method: str, endpoint: str) -> bool:
        """Whether repeating the request cannot do anything the first one did not (idempotent)."""
        return method.upper() in IDEMPOTENT_METHODS

    def error_from_response(self, response: requests.Response) -> ApiError:
        raise NotImplementedError

    # --- the one retry policy ---------------------------------------------------------------------
    def retryable(self, outcome: requests.Response | BaseException, resend_safe: bool) -> bool:
        """THE retry predicate: may this outcome (an answer, or a transport or read error) be tried again?"""
        if isinstance(outcome, requests.Response):
            status = outcome.status_code
            return status in NOT_ACTED_ON_STATUSES or (resend_safe and status in RETRYABLE_STATUSES)
        if isinstance(outcome, TRANSPORT_ERRORS) and never_sent(outcome):
            return True
        return resend_safe and isinstance(outcome, TRANSPORT_ERRORS + UNREADABLE_ERRORS)

    def retry_delay(self, outcome: requests.Response | BaseException, attempt: int) -> float:
        """``Retry-After`` when the answer has one (capped), else backoff; a 423 waits at least 2 s."""
        delay = None
        if isinstance(outcome, requests.Response):
            delay = retry_after_seconds(outcome, self.service)
        if delay is None:
            delay = self.retry.backoff(attempt)
        if isinstance(outcome, requests.Response) and outcome.status_code == 423:
            delay = max(delay, LOCKED_MIN_DELAY_S)
        return delay

    def call_with_retries(
        self,
        what: str,
        send: Callable[[], requests.Response],
        read: Callable[[requests.Response], Any] = lambda response: None,
        *,
        resend_safe: bool = True,
    ) -> tuple[requests.Response, Any]:
        """THE retry loop. Calls ``send`` and then ``read`` (which reads and parses the body inside the attempt) until
        the outcome is not ``retryable``. Throttling answers (429, 423) are bounded by ``max_throttled_wait`` seconds,
        everything else by ``max_attempts``. Returns the last answer and what ``read`` made of it; raises
        ``RetriesExhausted`` when a retryable outcome is still there at the end."""
        attempt = failures = 0  # every try; the tries that failed other than by throttling
        started = time.monotonic()
        while True:
            attempt += 1
            response = None
            try:
                response = send()
                value = read(response)
            except TRANSPORT_ERRORS + UNREADABLE_ERRORS as error:
                outcome: requests.Response | BaseException = error
            else:
                if response.ok or response.status_code not in RETRYABLE_STATUSES:
                    return response, value
                outcome = response
            if not self.retryable(outcome, resend_safe):
                if isinstance(outcome, requests.Response) and outcome.status_code < 500:
                    return outcome, None  # a refusal that waiting will not lift (HubSpot's daily limit)
                raise self._exhausted(what, outcome, response, attempt, resent=False)
            delay = self.retry_delay(outcome, attempt)
            throttled = isinstance(outcome, requests.Response) and outcome.status_code in THROTTLED_STATUSES
            if throttled:
                out_of_tries = time.monotonic() + delay - started > self.retry.max_throttled_wait
            else:
                failures += 1
                out_of_tries = failures >= self.retry.max_attempts
            if out_of_tries:
                raise self._exhausted(what, outcome, response, attempt, resent=True)
            log.warning(
                "%s %s %s, retry %s in %.1fs",
                self.service, what, describe_outcome(outcome),
                f"{attempt}" if throttled else f"{failures}/{self.retry.max_attempts - 1}", delay,
            )
            if response is not None:
                response.close()
            time.sleep(delay)

    def _exhausted(
        self, what: str, outcome: requests.Response | BaseException, response: requests.Response | None,
        attempts: int, resent: bool,
    ) -> RetriesExhausted:
        note = f"after {attempts} attempt(s)" if resent else "not resent: the server may have acted on it"
        if isinstance(outcome, requests.Response):
            error = self.error_from_response(outcome)
            message = f"{error.message} ({note})"
            return RetriesExhausted(error.service, error.status, error.category, message, error.request_id, error.body)
        category = "CONNECTION_ERROR" if isinstance(outcome, TRANSPORT_ERRORS) else "UNREADABLE_ANSWER"
        status = response.status_code if response is not None else 0
        return RetriesExhausted(self.service, status, category, f"{what}: {type(outcome).__name__} ({note})")

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
        resend_safe: bool | None = None,
    ) -> requests.Response:
        """Send one API call with retries; raise ``ApiError`` for any answer that is not 2xx or listed. The body is
        read within the attempt (unless ``stream``), so a body cut mid-read is retried like a dropped connection."""
        return self._exchange(method, endpoint, json, params, stream, ok_statuses, resend_safe, parse=None)[0]

    def request_json(
        self,
        method: str,
        endpoint: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        ok_statuses: tuple[int, ...] = (),
        resend_safe: bool | None = None,
    ) -> Any:
        """The parsed JSON body of a 2xx answer (None when empty, or for a listed non-2xx status). The body is read
        and parsed within the retry loop: an HTML page or a cut or malformed JSON body on a 2xx is retried, and if it
        persists raised as ``RetriesExhausted`` (a ``TransientError``), never as a bare ``ValueError``."""
        response, body = self._exchange(
            method, endpoint, json, params, False, ok_statuses, resend_safe, parse=parse_json
        )
        return body if response.ok else None

    def _exchange(self, method, endpoint, json, params, stream, ok_statuses, resend_safe, parse):
        session = self.get_conn()
        url = f"{self.base_url}/{endpoint.lstrip('/')}"
        resend = self.safe_to_resend(method, endpoint) if resend_safe is None else resend_safe

        def send() -> requests.Response:
            self.before_request(endpoint)
            response = session.request(method, url, json=json, params=params, stream=stream, timeout=self.timeout)
            self.after_response(endpoint, response)
            return response

        def read(response: requests.Response) -> Any:
            if stream and response.ok:
                return None  # the caller streams the body
            response.content  # noqa: B018 - the whole body, inside this attempt
            return parse(response) if parse is not None and response.ok else None

        what = f"{method} {endpoint}"
        response, value = self.call_with_retries(what, send, read, resend_safe=resend)
        if response.status_code == 401 and self.on_unauthorized():
            log.info("%s answered 401; credentials renewed, retrying once", self.service)
            response, value = self.call_with_retries(what, send, read, resend_safe=resend)
        return self.checked(response, ok_statuses), value

    def checked(self, response: requests.Response, ok_statuses: tuple[int, ...] = ()) -> requests.Response:
        """The answer itself when it is a success (or listed); otherwise the error it carries, raised."""
        if response.ok or response.status_code in ok_statuses:
            return response
        raise self.error_from_response(response)

    def test_connection(self) -> tuple[bool, str]:
        try:
            self.access_token()
            return True, f"{self.service} credentials accepted"
        except ApiError as error:
            return False, str(error)


def parse_json(response: requests.Response) -> Any:
    """The JSON body, None when empty; ``ValueError`` (requests.JSONDecodeError) when it is not JSON."""
    return response.json() if response.content else None


def describe_outcome(outcome: requests.Response | BaseException) -> str:
    if isinstance(outcome, requests.Response):
        return f"answered {outcome.status_code}"
    if isinstance(outcome, UNREADABLE_ERRORS):
        return f"gave an unreadable answer ({type(outcome).__name__})"
    return f"failed ({type(outcome).__name__})"


def json_body(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {"errors": body}
