"""No Docker engine runs on our machines: check the compose file's shape instead of running it."""

from __future__ import annotations

import json
import re
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
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert env["AUDIENCE_SYNC_BASE_PATH"]
    # The connections are the same ones the local demo uses, pointed at the sandbox services.
    assert json.loads(env["AIRFLOW_CONN_HUBSPOT_DEFAULT"]) == json.loads(hubspot_connection("http://hubspot-sandbox:8081"))
    assert json.loads(env["AIRFLOW_CONN_AEP_DEFAULT"]) == json.loads(aep_connection("http://aep-sandbox:8082"))


def test_init_creates_the_hubspot_pool_and_sandboxes_serve_their_ports(compose):
    init = compose["services"]["airflow-init"]["command"]
    assert "airflow pools set hubspot_api" in "".join(init)
    for name, module, port in (("hubspot-sandbox", "sandbox.hubspot", "8081"), ("aep-sandbox", "sandbox.aep", "8082")):
        service = compose["services"][name]
        assert service["command"][:3] == ["python", "-m", module]
        assert f"{port}:{port}" in service["ports"]
