"""No Docker engine runs on our machines: check the compose file's shape instead of running it."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sandbox.connections import aep_connection, hubspot_connection

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW_SERVICES = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-worker": "celery worker",
    "airflow-triggerer": "triggerer",
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


def pinned_airflow_version() -> str:
    match = re.search(r"^apache-airflow==([\d.]+)$", (ROOT / "requirements.txt").read_text(), re.M)
    assert match, "requirements.txt must pin apache-airflow=="
    return match.group(1)


def test_services_of_the_official_stack_and_the_sandboxes(compose):
    expected = {"postgres", "redis", "airflow-init", *AIRFLOW_SERVICES, "hubspot-sandbox", "aep-sandbox"}
    assert expected <= set(compose["services"])
    for service, command in AIRFLOW_SERVICES.items():
        assert compose["services"][service]["command"] == command


def test_airflow_image_version_matches_requirements(compose):
    version = pinned_airflow_version()
    for service in ["airflow-init", *AIRFLOW_SERVICES]:
        spec = compose["services"][service]
        assert spec["build"]["args"]["AIRFLOW_VERSION"] == version
        assert spec["image"].endswith(f":{version}")
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"ARG AIRFLOW_VERSION={version}" in dockerfile
    assert "requirements.txt" in dockerfile


def test_project_folders_are_mounted(compose):
    for service in ["airflow-init", *AIRFLOW_SERVICES]:
        volumes = compose["services"][service]["volumes"]
        for folder in ("dags", "plugins", "include"):
            assert f"./{folder}:/opt/airflow/{folder}" in volumes, (service, folder)
    for sandbox in ("hubspot-sandbox", "aep-sandbox"):
        assert "./include:/opt/airflow/include" in compose["services"][sandbox]["volumes"]


def test_environment_sets_executor_connections_and_airflow3_settings(compose):
    env = compose["services"]["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith("http://airflow-apiserver:8080")
    assert env["AUDIENCE_SYNC_BASE_PATH"]


def test_no_shipped_secret_and_no_empty_fernet_key(compose):
    """Compose's ``${VAR:?message}`` refuses to start while VAR is unset or empty."""
    env = compose["services"]["airflow-scheduler"]["environment"]
    assert re.fullmatch(r"\$\{AIRFLOW_JWT_SECRET:\?[^}]+\}", env["AIRFLOW__API_AUTH__JWT_SECRET"])
    assert re.fullmatch(r"\$\{AIRFLOW_FERNET_KEY:\?[^}]+\}", env["AIRFLOW__CORE__FERNET_KEY"])
    password = compose["services"]["airflow-init"]["environment"]["_AIRFLOW_WWW_USER_PASSWORD"]
    assert re.fullmatch(r"\$\{_AIRFLOW_WWW_USER_PASSWORD:\?[^}]+\}", password)
    text = (ROOT / "docker-compose.yaml").read_text()
    assert "change-me" not in text and not re.search(r"\$\{[A-Z_]*(SECRET|FERNET|PASSWORD)[A-Z_]*:-", text)


def test_sandbox_connections_only_in_the_demo_profile(compose):
    demo = {"hubspot-sandbox", "aep-sandbox", "demo-connections"}
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        if name in demo:
            assert service["profiles"] == ["demo"], name
        else:
            assert "profiles" not in service, name
            assert not [k for k in env if k.startswith("AIRFLOW_CONN_")], name  # never overrides UI/secrets
    env = compose["services"]["demo-connections"]["environment"]
    assert not [k for k in env if k.startswith("AIRFLOW_CONN_")]
    # The connections are the same ones the local demo uses, pointed at the sandbox services.
    assert json.loads(env["DEMO_CONN_hubspot"]) == json.loads(hubspot_connection("http://hubspot-sandbox:8081"))
    assert json.loads(env["DEMO_CONN_aep"]) == json.loads(aep_connection("http://aep-sandbox:8082"))


def test_demo_connections_are_added_only_when_missing(compose, tmp_path):
    """Run the service's script with a stand-in ``airflow`` CLI (the edge) that knows hubspot_default."""
    service = compose["services"]["demo-connections"]
    script = service["command"][1].replace("$$", "$")  # compose's escape for a literal $
    fake = tmp_path / "airflow"
    fake.write_text(
        '#!/bin/bash\necho "$*" >> "$CALLS"\n'
        '[ "$1 $2" = "connections get" ] && { [ "$3" = hubspot_default ]; exit $?; }\nexit 0\n'
    )
    fake.chmod(0o755)
    env = {**os.environ, **service["environment"], "PATH": f"{tmp_path}:{os.environ['PATH']}",
           "CALLS": str(tmp_path / "calls")}
    subprocess.run(["bash", "-c", script], env=env, check=True, capture_output=True)
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[:2] == ["connections get hubspot_default", "connections get aep_default"]
    assert len(calls) == 3 and calls[2].startswith("connections add aep_default --conn-json ")
    assert json.loads(calls[2].split("--conn-json ", 1)[1]) == json.loads(aep_connection("http://aep-sandbox:8082"))


def test_compose_env_generates_missing_secrets_and_keeps_existing_ones(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("# mine\nAIRFLOW_UID=1000\nAIRFLOW_JWT_SECRET=kept-secret\nAIRFLOW_FERNET_KEY=\n")
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "compose_env.py"), str(env_file)],
        capture_output=True,
        text=True,
        check=True,
    )
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if not line.startswith("#"))
    assert values["AIRFLOW_UID"] == "1000" and values["AIRFLOW_JWT_SECRET"] == "kept-secret"
    assert len(base64.urlsafe_b64decode(values["AIRFLOW_FERNET_KEY"])) == 32  # a valid Fernet key
    assert len(values["_AIRFLOW_WWW_USER_PASSWORD"]) >= 20
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert values["AIRFLOW_FERNET_KEY"] not in run.stdout and "AIRFLOW_FERNET_KEY" in run.stdout
    before = env_file.read_text()
    subprocess.run([sys.executable, str(ROOT / "scripts" / "compose_env.py"), str(env_file)], check=True,
                   capture_output=True)
    assert env_file.read_text() == before  # a second start changes nothing: stored connections stay readable
    from cryptography.fernet import Fernet

    fernet = Fernet(values["AIRFLOW_FERNET_KEY"].encode())
    assert fernet.decrypt(fernet.encrypt(b"x")) == b"x"


def test_init_creates_the_hubspot_pool_and_sandboxes_serve_their_ports(compose):
    init = compose["services"]["airflow-init"]["command"]
    assert "airflow pools set hubspot_api" in "".join(init)
    for name, module, port in (("hubspot-sandbox", "sandbox.hubspot", "8081"), ("aep-sandbox", "sandbox.aep", "8082")):
        service = compose["services"][name]
        assert service["command"][:3] == ["python", "-m", module]
        assert f"{port}:{port}" in service["ports"]
