"""Shared plumbing for the local stand-ins of HubSpot and Adobe Experience Platform.

Both servers are plain ``ThreadingHTTPServer`` processes with a small route table, a SQLite
state file (so that what a run did can be inspected afterwards) and fault injection that the
reliability tests drive at run time through ``/_sandbox/*`` admin endpoints. The admin
endpoints are sandbox-only: no real API has them and no client code may call them.

A server supplies its routes, its error format (``fault_response``), its 429 answer
(``rate_limited``) and its reset; the framework applies the faults, answers 500 in the server's
format when a handler fails, streams file bodies and serves the admin endpoints (a server may
add its own to ``SandboxServer.admin``).
"""

from __future__ import annotations

import argparse
import inspect
import json
import random
import re
import socket
import sqlite3
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")
CHUNK = 1 << 20  # streamed bodies leave in 1 MiB writes


@dataclass
class Faults:
    """Fault injection knobs; every field can be changed while the server runs."""

    error_rate: float = 0.0  # share of API calls answered with a 5xx
    drop_rate: float = 0.0  # share of API calls whose connection is closed without an answer
    latency_ms: float = 0.0  # added to every API call
    force_429: int = 0  # the next N calls to rate-limited routes get the server's 429
    token_ttl_seconds: int | None = None  # lifetime of newly issued access tokens
    fail_exports: int = 0  # AEP: the next N export jobs end FAILED
    answers: list[str] = field(default_factory=list)  # the next rate-limited calls get these shapes in turn (ANSWERS)
    extra: dict[str, Any] = field(default_factory=dict)  # server-specific knobs

    def __post_init__(self) -> None:
        self._lock = threading.Lock()  # not a field: asdict() leaves it out

    def update(self, values: dict[str, Any]) -> None:
        with self._lock:
            for key, value in values.items():
                if key not in self.__dataclass_fields__:
                    raise ValueError(f"unknown fault setting {key!r}")
                setattr(self, key, value)

    def update_checked(self, values: dict[str, Any]) -> None:
        """``update`` after checking every answer shape, so a typo is refused instead of served later."""
        for shape in values.get("answers") or []:
            parse_answer(shape)
        self.update(values)

    def take_answer(self) -> str | None:
        with self._lock:
            return self.answers.pop(0) if self.answers else None

    def take(self, name: str) -> bool:
        """Use up one of a countdown fault (``force_429``, ``fail_exports``); False once none are left."""
        with self._lock:
            left = getattr(self, name)
            if left > 0:
                setattr(self, name, left - 1)
                return True
            return False


# Answer shapes a real API (or what stands in front of it) can give besides its documented bodies. The client must
# take each as transient. Each one is served on demand: ``answers`` in POST /_sandbox/faults, or ``--answers`` at start.
# - "<status>" or "<status> retry-after=<s>": the server's own error body with that status (and Retry-After header).
#   HubSpot "Error handling" (developers.hubspot.com/docs/api-reference/error-handling): 423 Locked when an account
#   takes a high volume of writes at once (wait at least 2 s); RFC 9110 §10.2.3: Retry-After on 503 and 429, in seconds
#   or as a date, with no upper bound (a 503 may say 86400).
# - "html <status>": an HTML page instead of JSON, as a load balancer or CDN in front of an API serves for 502/503 (or
#   a proxy's 200 page); the API's docs only describe JSON bodies, so nothing promises JSON on these.
# - "truncated-json": the real answer (the call is carried out) with its JSON body cut in half and a Content-Length
#   that matches the cut body: an unparseable JSON body on a 2xx.
# - "cut-body": the real answer announcing its full Content-Length, the connection closed after half of the bytes
#   (a body cut mid-read: requests raises ChunkedEncodingError / IncompleteRead).
ANSWER_KINDS = ("status", "html", "truncated-json", "cut-body")


@dataclass(frozen=True)
class AnswerShape:
    kind: str
    status: int = 200
    retry_after: str | None = None


def parse_answer(shape: str) -> AnswerShape:
    words = str(shape).strip().lower().split()
    if words and words[0] in ("truncated-json", "cut-body") and len(words) == 1:
        return AnswerShape(words[0])
    if len(words) == 2 and words[0] == "html" and words[1].isdigit():
        return AnswerShape("html", int(words[1]))
    if words and words[0].isdigit() and len(words) <= 2:
        retry_after = None
        if len(words) == 2:
            if not words[1].startswith("retry-after="):
                raise ValueError(f"unknown answer option {words[1]!r} in {shape!r}")
            retry_after = words[1].split("=", 1)[1]
        return AnswerShape("status", int(words[0]), retry_after)
    raise ValueError(
        f"unknown answer shape {shape!r}: use '<status>', '<status> retry-after=<s>', 'html <status>', "
        "'truncated-json' or 'cut-body'"
    )


HTML_PAGE = (
    "<html><head><title>{status} {reason}</title></head><body><center><h1>{status} {reason}</h1></center>"
    "<hr><center>sandbox-proxy</center></body></html>"
)


def add_fault_arguments(parser: argparse.ArgumentParser) -> None:
    """Start-up values of the generic fault knobs (POST /_sandbox/faults changes them while serving)."""
    group = parser.add_argument_group("faults")
    group.add_argument("--error-rate", type=float, default=0.0, help="share of API calls answered with a 5xx")
    group.add_argument("--drop-rate", type=float, default=0.0, help="share of API calls closed without an answer")
    group.add_argument("--latency-ms", type=float, default=0.0, help="added to every API call")
    group.add_argument("--force-429", type=int, default=0, help="the first N rate-limited calls get a 429")
    group.add_argument(
        "--answers", type=parse_answer_list, default=[],
        help="comma-separated answer shapes the first rate-limited calls get in turn, e.g. '423,html 502,cut-body'",
    )


def parse_answer_list(text: str) -> list[str]:
    shapes = [s.strip() for s in text.split(",") if s.strip()]
    for shape in shapes:
        parse_answer(shape)
    return shapes


def faults_from_args(args: argparse.Namespace, **fields: Any) -> Faults:
    """``Faults`` from the flags of ``add_fault_arguments``; ``fields`` sets the server-specific ones."""
    return Faults(
        error_rate=args.error_rate,
        drop_rate=args.drop_rate,
        latency_ms=args.latency_ms,
        force_429=args.force_429,
        answers=list(args.answers),
        **fields,
    )


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    params: dict[str, str] = field(default_factory=dict)  # named groups of the route pattern

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        if not self.body:
            return None
        return json.loads(self.body)


@dataclass
class FileBody:
    """A byte range of a file, streamed in ``CHUNK`` writes: downloads can be gigabytes."""

    path: Path
    offset: int
    length: int


@dataclass
class Response:
    status: int
    body: Any = None  # dict/list → JSON; bytes → sent as is; FileBody → streamed
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json;charset=utf-8"


class HttpError(Exception):
    """Raised by a handler to answer with an error body in the server's own format."""

    def __init__(self, response: Response):
        super().__init__(response.status)
        self.response = response


Handler = Callable[[Request], Response]


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    limited: bool  # subject to the force_429 fault (token endpoints are not)


class Router:
    def __init__(self) -> None:
        self._routes: list[Route] = []

    def add(self, method: str, pattern: str, handler: Handler, limited: bool = True) -> None:
        self._routes.append(Route(method, re.compile(f"^{pattern}$"), handler, limited))

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        """Return the route, its path params, and whether the path exists for another method."""
        path_known = False
        for route in self._routes:
            found = route.pattern.match(path)
            if found:
                if route.method == method:
                    return route, found.groupdict(), True
                path_known = True
        return None, {}, path_known


class StateDB:
    """One SQLite file shared by the server's threads (serialised by a lock: the sandbox is not the bottleneck)."""

    def __init__(self, path: str, schema: str) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        # a million contacts make a file of over a gigabyte: SQLite's default page cache (2 MB) would read most
        # pages of each batch write from the OS again, and the sandbox, not the client, would set the pace
        self._conn.execute("PRAGMA cache_size=-262144")  # 256 MiB
        self._schema = schema
        self._conn.executescript(schema)

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        self._conn.execute("BEGIN IMMEDIATE")
        return self._conn

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._conn.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self._lock.release()

    def query(self, sql: str, args: tuple | list = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def reset(self) -> None:
        """Drop every table and recreate the schema."""
        with self._lock:
            tables = [r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            for table in tables:
                self._conn.execute(f'DROP TABLE IF EXISTS "{table}"')
            self._conn.executescript(self._schema)


def _admin_error(message: str) -> HttpError:
    return HttpError(Response(400, {"message": message}))


def _admin_object(request: Request) -> dict[str, Any]:
    """The optional JSON object body of an admin call."""
    try:
        body = request.json()
    except ValueError as error:
        raise _admin_error(f"the body is not valid JSON: {error}") from None
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise _admin_error("the body must be a JSON object")
    return body


class SandboxServer(ThreadingHTTPServer):
    """A sandbox API server.

    ``fault_response(status)`` answers injected 5xx, unknown routes, malformed JSON and handler crashes in the
    server's error format; ``rate_limited(request)`` is its 429 for the ``force_429`` fault (rate-limited routes
    only); ``on_reset(**options)`` takes the JSON object body of POST /_sandbox/reset as keyword arguments;
    ``response_headers()`` gives headers every answer carries unless the handler set them.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        router: Router,
        faults: Faults,
        fault_response: Callable[[int], Response],
        on_reset: Callable[..., None],
        name: str,
        *,
        rate_limited: Handler,
        response_headers: Callable[[], dict[str, str]] | None = None,
    ) -> None:
        super().__init__(address, _RequestHandler)
        self.router = router
        self.faults = faults
        self.fault_response = fault_response
        self.rate_limited = rate_limited
        self.on_reset = on_reset
        self.response_headers = response_headers
        self.name = name
        self.stats_lock = threading.Lock()
        self.stats: dict[str, int] = {}
        self.request_log: list[dict[str, Any]] = []  # method, path, status, time: for tests and benchmarks
        self.admin = Router()  # /_sandbox/* paths; servers may add their own
        for method in METHODS:
            for path, handler in (
                ("faults", self._faults),
                ("stats", self._stats),
                ("requests", self._requests),
                ("health", self._health),
            ):
                self.admin.add(method, f"/_sandbox/{path}", handler)
        self.admin.add("POST", "/_sandbox/reset", self._reset)

    def count(self, key: str, n: int = 1) -> None:
        with self.stats_lock:
            self.stats[key] = self.stats.get(key, 0) + n

    def _faults(self, request: Request) -> Response:
        if request.method in ("POST", "PATCH"):
            try:
                self.faults.update_checked(_admin_object(request))
            except ValueError as error:
                raise _admin_error(str(error)) from None
        return Response(200, asdict(self.faults))

    def _reset(self, request: Request) -> Response:
        options = _admin_object(request)
        try:
            inspect.signature(self.on_reset).bind(**options)
        except TypeError as error:
            raise _admin_error(f"unsupported reset options: {error}") from None
        self.on_reset(**options)
        with self.stats_lock:
            self.stats.clear()
            self.request_log.clear()
        return Response(200, {"reset": True})

    def _stats(self, request: Request) -> Response:
        with self.stats_lock:
            return Response(200, {"stats": dict(self.stats), "requests": len(self.request_log)})

    def _requests(self, request: Request) -> Response:
        since = float(request.arg("since", "0") or 0)
        with self.stats_lock:
            return Response(200, {"requests": [r for r in self.request_log if r["time"] >= since]})

    def _health(self, request: Request) -> Response:
        return Response(200, {"status": "ok", "server": self.name})


def _logged(request: Request, status: int, arrived: float, **extra: Any) -> dict[str, Any]:
    """One request log entry: ``time`` when answered, ``seconds`` spent on it here (benchmarks read the
    server's own share of the latency from it)."""
    now = time.time()
    return {"method": request.method, "path": request.path, "status": status, "time": now,
            "seconds": round(now - arrived, 4), **extra}


class _RequestHandler(BaseHTTPRequestHandler):
    server: SandboxServer
    protocol_version = "HTTP/1.1"
    # headers and body leave in separate writes: with Nagle on, a keep-alive client waits ~40 ms for each answer
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log lives in /_sandbox/requests, not on stderr

    def _handle(self) -> None:
        arrived = time.time()
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        server = self.server
        if parts.path.startswith("/_sandbox/"):
            route, _, _ = server.admin.match(request.method, request.path)
            if route is None:
                self._send(Response(404, {"message": "unknown sandbox admin path"}))
            else:
                self._send(self._run(route, request))
            return
        faults = server.faults
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        if faults.drop_rate and random.random() < faults.drop_rate:
            server.count("dropped")
            self.close_connection = True
            self.connection.close()
            return
        if faults.error_rate and random.random() < faults.error_rate:
            server.count("injected_5xx")
            self._send(server.fault_response(random.choice([500, 502, 503])))
            return
        route, params, path_known = server.router.match(request.method, request.path)
        request.params = params
        if route is None:
            response = server.fault_response(405 if path_known else 404)
        elif route.limited and faults.take("force_429"):
            response = server.rate_limited(request)
        elif route.limited and (shape := faults.take_answer()) is not None:
            server.count("shaped_answers")
            response = self._shaped(parse_answer(shape), route, request)
            if response is None:  # a cut body: sent here, nothing more goes on this connection
                with server.stats_lock:
                    server.request_log.append(_logged(request, 200, arrived, cut=True))
                return
        else:
            response = self._run(route, request)
        server.count(f"status_{response.status}")
        with server.stats_lock:
            server.request_log.append(_logged(request, response.status, arrived))
        self._send(response)

    def _shaped(self, shape: AnswerShape, route: Route, request: Request) -> Response | None:
        """One of ``ANSWER_KINDS``; None when the answer was sent (and cut) here."""
        if shape.kind == "status":
            response = self.server.fault_response(shape.status)
            if shape.retry_after is not None:
                response.headers["Retry-After"] = shape.retry_after
            return response
        if shape.kind == "html":
            reason = self.responses.get(shape.status, ("Error",))[0]
            page = HTML_PAGE.format(status=shape.status, reason=reason).encode()
            return Response(shape.status, page, content_type="text/html")
        response = self._run(route, request)  # the call is carried out; only its answer is damaged
        payload = response.body if isinstance(response.body, bytes) else json.dumps(response.body).encode()
        if shape.kind == "truncated-json":
            response.body = payload[: len(payload) // 2]
            return response
        self.send_response(response.status)  # cut-body: announce every byte, send half, hang up
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload[: len(payload) // 2])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)
        return None

    def _run(self, route: Route, request: Request) -> Response:
        """The handler's answer; a crash answers 500 in the server's format and logs where (never the body)."""
        try:
            return route.handler(request)
        except HttpError as error:
            return error.response
        except json.JSONDecodeError:
            return self.server.fault_response(400)
        except Exception:  # noqa: BLE001 - a sandbox bug must answer 500, not drop the connection
            print(f"{self.server.name}: {request.method} {route.pattern.pattern} failed", file=sys.stderr)
            traceback.print_exc()
            sys.stderr.flush()
            return self.server.fault_response(500)

    def _send(self, response: Response) -> None:
        if self.server.response_headers is not None:
            for key, value in self.server.response_headers().items():
                response.headers.setdefault(key, value)
        body = response.body
        if isinstance(body, FileBody):
            payload, length = b"", body.length
        else:
            if isinstance(body, (bytes, bytearray)):
                payload = bytes(body)
            elif body is None:
                payload = b""
            else:
                payload = json.dumps(body).encode()
            length = len(payload)
        self.send_response(response.status)
        if length or response.status not in (204, 304):
            self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(length))
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.end_headers()
        if isinstance(body, FileBody):
            self._stream(body)
        elif payload:
            self.wfile.write(payload)

    def _stream(self, body: FileBody) -> None:
        with open(body.path, "rb") as handle:
            handle.seek(body.offset)
            remaining = body.length
            while remaining > 0:
                chunk = handle.read(min(CHUNK, remaining))
                if not chunk:
                    break
                self.wfile.write(chunk)
                remaining -= len(chunk)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle


def new_id() -> str:
    return str(uuid.uuid4())


def serve(server: SandboxServer) -> None:
    host, port = server.server_address[:2]
    print(f"{server.name} sandbox listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
