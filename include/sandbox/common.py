"""Shared plumbing for the local stand-ins of HubSpot and Adobe Experience Platform.

Both servers are plain ``ThreadingHTTPServer`` processes with a small route table, a SQLite
state file (so that what a run did can be inspected afterwards) and fault injection that the
reliability tests drive at run time through ``/_sandbox/*`` admin endpoints. The admin
endpoints are sandbox-only: no real API has them and no client code may call them.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit


@dataclass
class Faults:
    """Fault injection knobs; every field can be changed while the server runs."""

    error_rate: float = 0.0  # share of API calls answered with a 5xx
    drop_rate: float = 0.0  # share of API calls whose connection is closed without an answer
    latency_ms: float = 0.0  # added to every API call
    force_429: int = 0  # the next N API calls get a 429
    token_ttl_seconds: int | None = None  # lifetime of newly issued access tokens
    fail_exports: int = 0  # AEP: the next N export jobs end FAILED
    extra: dict[str, Any] = field(default_factory=dict)  # server-specific knobs

    def update(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if key not in self.__dataclass_fields__:
                raise ValueError(f"unknown fault setting {key!r}")
            setattr(self, key, value)


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
class Response:
    status: int
    body: Any = None  # dict/list → JSON; bytes → sent as is
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json;charset=utf-8"


class HttpError(Exception):
    """Raised by a handler to answer with an error body in the server's own format."""

    def __init__(self, response: Response):
        super().__init__(response.status)
        self.response = response


Handler = Callable[[Request], Response]


class Router:
    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method, re.compile(f"^{pattern}$"), handler))

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        def decorator(handler: Handler) -> Handler:
            self.add(method, pattern, handler)
            return handler

        return decorator

    def match(self, method: str, path: str) -> tuple[Handler | None, dict[str, str], bool]:
        """Return the handler, its path params, and whether the path exists for another method."""
        path_known = False
        for route_method, pattern, handler in self._routes:
            found = pattern.match(path)
            if found:
                if route_method == method:
                    return handler, found.groupdict(), True
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


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        router: Router,
        faults: Faults,
        fault_response: Callable[[int], Response],
        on_reset: Callable[[], None],
        name: str,
    ) -> None:
        super().__init__(address, _RequestHandler)
        self.router = router
        self.faults = faults
        self.fault_response = fault_response
        self.on_reset = on_reset
        self.name = name
        self.stats_lock = threading.Lock()
        self.stats: dict[str, int] = {}
        self.request_log: list[dict[str, Any]] = []  # method, path, status, time: for tests and benchmarks
        self.fault_lock = threading.Lock()

    def count(self, key: str, n: int = 1) -> None:
        with self.stats_lock:
            self.stats[key] = self.stats.get(key, 0) + n

    def take_forced_429(self) -> bool:
        with self.fault_lock:
            if self.faults.force_429 > 0:
                self.faults.force_429 -= 1
                return True
            return False


class _RequestHandler(BaseHTTPRequestHandler):
    server: SandboxServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # the request log lives in /_sandbox/requests, not on stderr

    def _handle(self) -> None:
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
        if parts.path.startswith("/_sandbox/"):
            self._send(self._admin(request))
            return
        faults = self.server.faults
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        if faults.drop_rate and random.random() < faults.drop_rate:
            self.server.count("dropped")
            self.close_connection = True
            self.connection.close()
            return
        if faults.error_rate and random.random() < faults.error_rate:
            self.server.count("injected_5xx")
            self._send(self.server.fault_response(random.choice([500, 502, 503])))
            return
        handler, params, path_known = self.server.router.match(request.method, request.path)
        if handler is None:
            response = self.server.fault_response(405 if path_known else 404)
        else:
            request.params = params
            try:
                response = handler(request)
            except HttpError as error:
                response = error.response
            except json.JSONDecodeError:
                response = self.server.fault_response(400)
        self.server.count(f"status_{response.status}")
        with self.server.stats_lock:
            self.server.request_log.append(
                {"method": request.method, "path": request.path, "status": response.status, "time": time.time()}
            )
        self._send(response)

    def _admin(self, request: Request) -> Response:
        server = self.server
        if request.path == "/_sandbox/faults":
            if request.method in ("POST", "PATCH"):
                try:
                    server.faults.update(request.json() or {})
                except ValueError as error:
                    return Response(400, {"message": str(error)})
            return Response(200, asdict(server.faults))
        if request.path == "/_sandbox/reset" and request.method == "POST":
            server.on_reset()
            with server.stats_lock:
                server.stats.clear()
                server.request_log.clear()
            return Response(200, {"reset": True})
        if request.path == "/_sandbox/stats":
            with server.stats_lock:
                return Response(200, {"stats": dict(server.stats), "requests": len(server.request_log)})
        if request.path == "/_sandbox/requests":
            since = float(request.arg("since", "0") or 0)
            with server.stats_lock:
                return Response(200, {"requests": [r for r in server.request_log if r["time"] >= since]})
        if request.path == "/_sandbox/health":
            return Response(200, {"status": "ok", "server": server.name})
        return Response(404, {"message": "unknown sandbox admin path"})

    def _send(self, response: Response) -> None:
        if isinstance(response.body, (bytes, bytearray)):
            payload = bytes(response.body)
        elif response.body is None:
            payload = b""
        else:
            payload = json.dumps(response.body).encode()
        self.send_response(response.status)
        if payload or response.status not in (204, 304):
            self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.end_headers()
        if payload:
            self.wfile.write(payload)

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
