"""The local stack's connections, stored in Airflow's metadata database with the project's own
connection types (``aep``, ``hubspot``), so Admin → Connections shows, edits and tests them.

``AIRFLOW_CONN_*`` variables would hide them from the UI (and win over the database), so the local
stack sets none. Values come from include/sandbox/connections.py (the one source of the sandbox's
connection settings), retyped from ``http``.

    python scripts/local_connections.py --hubspot-url URL --aep-url URL [--hubspot-form FORM]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from sandbox import connections

CONN_TYPES = {"aep_default": "aep", "hubspot_default": "hubspot"}
# Extras equal to the hook's default are left out. Airflow masks every extra value in task logs, and
# one shorter than 5 characters (sandbox_name "prod") only earns every task log the warning
# "Skipping masking for a secret as it's too short".
HOOK_DEFAULTS = {"sandbox_name": "prod"}


def typed(conn_json: str, conn_type: str) -> dict[str, Any]:
    """A sandbox connection (``AIRFLOW_CONN_*`` JSON) as Connection fields of ``conn_type``; extra as JSON text."""
    fields = json.loads(conn_json)
    extra = {k: v for k, v in (fields.get("extra") or {}).items() if HOOK_DEFAULTS.get(k) != v}
    return {**fields, "conn_type": conn_type, "extra": json.dumps(extra)}


def sandbox_connections(hubspot_url: str, aep_url: str, hubspot_form: str = "token+oauth") -> dict[str, dict]:
    return {
        "aep_default": typed(connections.aep_connection(aep_url), CONN_TYPES["aep_default"]),
        "hubspot_default": typed(
            connections.hubspot_connection_form(hubspot_url, hubspot_form), CONN_TYPES["hubspot_default"]
        ),
    }


def store(conns: dict[str, dict]) -> None:
    """Create or replace each connection in the metadata database."""
    from airflow.models import Connection
    from airflow.utils.session import create_session

    with create_session() as session:
        for conn_id, fields in conns.items():
            session.query(Connection).filter(Connection.conn_id == conn_id).delete()
            session.add(Connection(conn_id=conn_id, **fields))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hubspot-url", required=True)
    parser.add_argument("--aep-url", required=True)
    parser.add_argument("--hubspot-form", choices=connections.HUBSPOT_FORMS, default="token+oauth")
    args = parser.parse_args()
    conns = sandbox_connections(args.hubspot_url, args.aep_url, args.hubspot_form)
    store(conns)
    print("connections in the metadata database: " + ", ".join(f"{k} ({v['conn_type']})" for k, v in conns.items()))


if __name__ == "__main__":
    main()
