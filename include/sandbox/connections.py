"""Airflow connections (``AIRFLOW_CONN_*`` JSON) that point the project at the local sandbox.

One source for the demo, the local Airflow, docker-compose's values and the tests.
Run ``python -m sandbox.connections --hubspot-url URL --aep-url URL`` to print shell exports.
"""

from __future__ import annotations

import argparse
import json
import shlex

from sandbox import credentials


def hubspot_connection(url: str, *, oauth: bool = True, **extra) -> str:
    """The private-app token as password; the OAuth app's credentials in extras (the Flow Service needs them)."""
    extras = {"api_version": "2026-03", **extra}
    if oauth:
        extras.update(
            client_id=credentials.HUBSPOT_CLIENT_ID,
            client_secret=credentials.HUBSPOT_CLIENT_SECRET,
            refresh_token=credentials.HUBSPOT_REFRESH_TOKEN,
            access_token="sandbox-initial-access-token",
        )
    return json.dumps(
        {"conn_type": "http", "host": url, "password": credentials.HUBSPOT_PRIVATE_APP_TOKEN, "extra": extras}
    )


def hubspot_oauth_only_connection(url: str, **extra) -> str:
    """An OAuth app without a private-app token: the hook refreshes access tokens itself. The
    ``access_token`` extra stays: the connect task hands it to AEP's Flow Service."""
    conn = json.loads(hubspot_connection(url, **extra))
    del conn["password"]
    return json.dumps(conn)


def aep_connection(url: str, **extra) -> str:
    return json.dumps(
        {
            "conn_type": "http",
            "host": url,
            "login": credentials.AEP_CLIENT_ID,
            "password": credentials.AEP_CLIENT_SECRET,
            "extra": {
                "org_id": credentials.AEP_ORG_ID,
                "sandbox_name": credentials.AEP_SANDBOX_NAME,
                "ims_url": url,
                "export_dataset_id": credentials.AEP_DATASET_ID,
                "merge_policy_id": credentials.AEP_MERGE_POLICY_ID,
                **extra,
            },
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hubspot-url", default="http://127.0.0.1:8081")
    parser.add_argument("--aep-url", default="http://127.0.0.1:8082")
    args = parser.parse_args()
    print(f"export AIRFLOW_CONN_HUBSPOT_DEFAULT={shlex.quote(hubspot_connection(args.hubspot_url))}")
    print(f"export AIRFLOW_CONN_AEP_DEFAULT={shlex.quote(aep_connection(args.aep_url))}")


if __name__ == "__main__":
    main()
