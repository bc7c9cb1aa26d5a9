"""Every DAG imports cleanly, has an owner, tags and retries, and touches no network at import time."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"


class NetworkAtImportTime(AssertionError):
    pass


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    original_connect = socket.socket.connect

    def refuse(self, address):
        raise NetworkAtImportTime(f"a DAG file opened a network connection to {address} at import time")

    socket.socket.connect = refuse
    try:
        return DagBag(dag_folder=str(DAGS_FOLDER))
    finally:
        socket.socket.connect = original_connect


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert dagbag.dags, "no DAG found in dags/"


def test_sync_dag_is_present(dagbag):
    assert "hubspot_audience_sync" in dagbag.dags


def test_every_dag_has_owner_tags_and_retries(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, dag_id
        for task in dag.tasks:
            assert task.owner and task.owner != "airflow", f"{dag_id}.{task.task_id}"
            assert task.retries >= 1, f"{dag_id}.{task.task_id}"


def test_plugin_loader_leaves_the_package_alone():
    """Airflow's plugin loader must not re-import package files as bare top-level modules."""
    from airflow._shared.plugins_manager.plugins_manager import _load_plugins_from_plugin_directory

    plugins_folder = Path(__file__).resolve().parents[2] / "plugins"
    _, errors = _load_plugins_from_plugin_directory(str(plugins_folder))
    assert errors == {}
    import sys

    for bare in ("hubspot", "aep", "mapping", "storage", "sync", "base"):
        module = sys.modules.get(bare)
        assert module is None or "audience_sync" not in (getattr(module, "__file__", "") or ""), bare
