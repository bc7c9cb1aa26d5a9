"""The HubSpot client fixtures (``hs``: a sandbox, a connection per test, chunk files, request counts)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_path = Path(__file__).parents[1] / "hubspot" / "conftest.py"
_spec = importlib.util.spec_from_file_location("hubspot_client_fixtures", _path)
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)
hs = _fixtures.hs
