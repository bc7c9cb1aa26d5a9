"""The sandbox framework (sandbox.common) over loopback HTTP, with a small in-process server."""

from __future__ import annotations

import argparse
import threading
import time

import pytest
import requests
from sandbox import credentials
from sandbox.aep_store import load_population, open_state
from sandbox.common import (
    FileBody,
    Request,
    Response,
    Router,
    SandboxServer,
    add_fault_arguments,
    faults_from_args,
)
from sandbox.seed import seed_population
from sandbox_process import start_sandbox

SECRET_BODY = "do-not-log-this-body"


class Toy:
    """Routes that succeed, crash, stream a file and issue tokens; remembers reset calls."""

    def __init__(self, file_path) -> None:
        self.resets: list[dict] = []
        self.router = Router()
        self.router.add("GET", "/ok", lambda request: Response(200, {"ok": True}))
        self.router.add("POST", "/crash", self.crash)
        self.router.add("POST", "/token", lambda request: Response(200, {"token": "t"}), limited=False)
        self.router.add("GET", "/file", lambda request: Response(206, FileBody(file_path, 3, 5), content_type="x/y"))

    @staticmethod
    def crash(request: Request) -> Response:
        raise KeyError("sandbox bug")

    def reset(self, *, population: bool = False) -> None:
        self.resets.append({"population": population})


@pytest.fixture
def toy(tmp_path):
    file_path = tmp_path / "data.bin"
    file_path.write_bytes(b"0123456789")
    toy = Toy(file_path)
    args = argparse.ArgumentParser()
    add_fault_arguments(args)
    faults = faults_from_args(args.parse_args([]))
    server = SandboxServer(
        ("127.0.0.1", 0),
        toy.router,
        faults,
        lambda status: Response(status, {"error": f"toy-{status}"}),
        toy.reset,
        "toy",
        rate_limited=lambda request: Response(429, {"error": "slow down"}, headers={"Retry-After": "1"}),
        response_headers=lambda: {"x-toy": "1"},
    )
    server.admin.add("GET", "/_sandbox/resets", lambda request: Response(200, {"resets": toy.resets}))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    toy.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield toy
    server.shutdown()
    server.server_close()


def test_a_handler_crash_answers_500_in_the_server_format_and_logs_no_body(toy, capfd):
    with requests.Session() as session:
        crashed = session.post(f"{toy.url}/crash", data=SECRET_BODY, timeout=5)
        assert (crashed.status_code, crashed.json()) == (500, {"error": "toy-500"})
        assert session.get(f"{toy.url}/ok", timeout=5).status_code == 200  # the connection lives on
    err = capfd.readouterr().err
    assert "KeyError" in err and "POST ^/crash$" in err
    assert SECRET_BODY not in err


def test_force_429_uses_the_server_answer_on_limited_routes_only(toy):
    requests.post(f"{toy.url}/_sandbox/faults", json={"force_429": 2}, timeout=5).raise_for_status()
    assert requests.post(f"{toy.url}/token", timeout=5).status_code == 200  # not limited: nothing used up
    first, second, third = (requests.get(f"{toy.url}/ok", timeout=5) for _ in range(3))
    assert [r.status_code for r in (first, second, third)] == [429, 429, 200]
    assert first.json() == {"error": "slow down"} and first.headers["Retry-After"] == "1"
    assert requests.get(f"{toy.url}/_sandbox/faults", timeout=5).json()["force_429"] == 0


def test_every_answer_carries_the_server_headers(toy):
    for response in (
        requests.get(f"{toy.url}/ok", timeout=5),
        requests.get(f"{toy.url}/missing", timeout=5),
        requests.get(f"{toy.url}/_sandbox/health", timeout=5),
    ):
        assert response.headers["x-toy"] == "1"


def test_file_bodies_stream_the_byte_range(toy):
    response = requests.get(f"{toy.url}/file", timeout=5)
    assert response.status_code == 206 and response.content == b"34567"
    assert response.headers["Content-Length"] == "5" and response.headers["Content-Type"] == "x/y"


def test_reset_passes_its_options_and_refuses_unknown_ones(toy):
    assert requests.post(f"{toy.url}/_sandbox/reset", timeout=5).json() == {"reset": True}
    assert requests.post(f"{toy.url}/_sandbox/reset", json={"population": True}, timeout=5).ok
    unknown = requests.post(f"{toy.url}/_sandbox/reset", json={"everything": True}, timeout=5)
    assert unknown.status_code == 400 and "everything" in unknown.json()["message"]
    not_object = requests.post(f"{toy.url}/_sandbox/reset", json=[1], timeout=5)
    assert not_object.status_code == 400
    assert requests.get(f"{toy.url}/_sandbox/resets", timeout=5).json()["resets"] == [
        {"population": False},
        {"population": True},
    ]
    assert requests.get(f"{toy.url}/_sandbox/reset", timeout=5).status_code == 404  # POST only


def test_keep_alive_calls_do_not_wait_for_nagle(toy):
    """With Nagle on, each answer (headers and body in two writes) waits ~40 ms for the client's delayed ACK."""
    with requests.Session() as session:
        session.get(f"{toy.url}/ok", timeout=5)
        started = time.perf_counter()
        for _ in range(20):
            session.get(f"{toy.url}/ok", timeout=5)
        elapsed = time.perf_counter() - started
    assert elapsed < 0.4, f"20 keep-alive calls took {elapsed:.2f} s"


def test_fault_flags_parse_into_faults():
    parser = argparse.ArgumentParser()
    add_fault_arguments(parser)
    args = parser.parse_args(["--error-rate", "0.5", "--drop-rate", "0.1", "--latency-ms", "20", "--force-429", "3"])
    faults = faults_from_args(args, fail_exports=2)
    assert (faults.error_rate, faults.drop_rate, faults.latency_ms) == (0.5, 0.1, 20.0)
    assert (faults.force_429, faults.fail_exports) == (3, 2)


def test_aep_http_reset_with_population_forgets_the_catalog(aep_sandbox):
    seed_population(aep_sandbox.db, None, 200, 2, seed=3, dirty_rate=0.0)
    aep_sandbox.admin("POST", "reset")
    assert len(open_state(aep_sandbox.db).query("SELECT id FROM audiences")) == 2  # plain reset keeps them
    assert aep_sandbox.admin("POST", "reset", {"population": True}) == {"reset": True}
    assert open_state(aep_sandbox.db).query("SELECT id FROM audiences") == []
    profiles, _ = load_population(aep_sandbox.db.parent / "aep_data")
    assert profiles.num_rows == 0


def test_hubspot_forced_429_checks_the_token_first_and_keeps_search_headerless(hubspot_sandbox):
    url = f"{hubspot_sandbox.url}/crm/v3/objects/contacts"
    auth = {"Authorization": f"Bearer {credentials.HUBSPOT_PRIVATE_APP_TOKEN}"}
    hubspot_sandbox.set_faults(force_429=2)
    assert requests.get(url, timeout=5).status_code == 401  # no token: 401 as on any call
    searched = requests.post(f"{url}/search", json={}, headers=auth, timeout=5)
    assert searched.status_code == 429 and searched.json()["policyName"] == "TEN_SECONDLY_ROLLING"
    assert not [name for name in searched.headers if name.lower().startswith("x-hubspot-ratelimit")]
    assert requests.get(url, headers=auth, timeout=5).status_code == 200


def test_answer_shapes_are_served_in_turn_then_the_real_answer(toy):
    requests.post(
        f"{toy.url}/_sandbox/faults",
        json={"answers": ["423", "503 retry-after=86400", "html 502", "html 200", "truncated-json", "cut-body"]},
        timeout=5,
    ).raise_for_status()
    assert requests.post(f"{toy.url}/token", timeout=5).status_code == 200  # not limited: nothing used up
    locked = requests.get(f"{toy.url}/ok", timeout=5)
    assert (locked.status_code, locked.json(), "Retry-After" in locked.headers) == (423, {"error": "toy-423"}, False)
    unavailable = requests.get(f"{toy.url}/ok", timeout=5)
    assert unavailable.status_code == 503 and unavailable.headers["Retry-After"] == "86400"
    for status in (502, 200):
        page = requests.get(f"{toy.url}/ok", timeout=5)
        assert page.status_code == status and page.headers["Content-Type"] == "text/html"
        assert page.text.startswith("<html>")
    truncated = requests.get(f"{toy.url}/ok", timeout=5)
    assert truncated.status_code == 200 and truncated.content == b'{"ok":'
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(f"{toy.url}/ok", timeout=5).content  # noqa: B018 - announced 12 bytes, sent 6
    assert requests.get(f"{toy.url}/ok", timeout=5).json() == {"ok": True}
    assert requests.get(f"{toy.url}/_sandbox/faults", timeout=5).json()["answers"] == []


def test_an_unknown_answer_shape_is_refused_up_front(toy):
    refused = requests.post(f"{toy.url}/_sandbox/faults", json={"answers": ["423", "teapot"]}, timeout=5)
    assert refused.status_code == 400 and "teapot" in refused.json()["message"]
    assert requests.get(f"{toy.url}/_sandbox/faults", timeout=5).json()["answers"] == []


def test_answer_shapes_and_usage_refusal_from_start_up_flags(tmp_path):
    server = start_sandbox("hubspot", tmp_path, "--answers", "html 503,423 retry-after=2", "--usage-status", "403")
    try:
        faults = server.admin("GET", "faults")
        assert faults["answers"] == ["html 503", "423 retry-after=2"] and faults["extra"]["usage_status"] == 403
        auth = {"Authorization": f"Bearer {credentials.HUBSPOT_PRIVATE_APP_TOKEN}"}
        usage = f"{server.url}/account-info/2026-03/api-usage/daily/private-apps"
        assert [requests.get(usage, headers=auth, timeout=5).status_code for _ in range(3)] == [503, 423, 403]
        body = requests.get(usage, headers=auth, timeout=5).json()
        assert body["category"] == "MISSING_SCOPES" and body["errors"][0]["context"]["requiredGranularScopes"]
    finally:
        server.stop()
    parser = argparse.ArgumentParser()
    add_fault_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--answers", "418 please"])
