from __future__ import annotations

import pytest
from e2e_support import start_world
from reliability_checks import fast_retries


@pytest.fixture
def make_world(tmp_path, monkeypatch, airflow_db):
    """``make_world(**start_world_kwargs)``: seeded sandboxes, connections set, task retries after 1 s."""
    worlds = []

    def make(**kwargs):
        world = start_world(tmp_path, monkeypatch, **kwargs)
        fast_retries(monkeypatch)
        worlds.append(world)
        return world

    yield make
    for world in worlds:
        world.stop()
