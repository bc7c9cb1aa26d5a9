"""Airflow connections (``AIRFLOW_CONN_*`` JSON) that point the project at the local sandbox.

One source for the demo, the local Airflow, docker-compose's values and the tests.
Run ``python -m sandbox.connections --hubspot-url URL --aep-url URL [--hubspot-form FORM]`` to print
shell exports.

``hubspot_default`` comes in the README's documented forms (``HUBSPOT_FORMS``):

- ``token``: (a) a private-app token (or service key) as the password, no extras;
- ``oauth``: (b) an OAuth app: extras client_id, client_secret, refresh_token (tokens come by refresh);
- ``oauth-stale``: (c) (b) plus an ``access_token`` extra the sandbox never issued (a stale one);
- ``token+oauth``: the token as the password (the hook's API calls) and the OAuth app in the extras
  (the Flow Service connection), with a stale access token.
"""

from __future__ import annotations

import argparse
import json
import shlex

from sandbox import credentials

STALE_ACCESS_TOKEN = "sandbox-initial-access-token"  # never issued by the sandbox: a 401 if used
HUBSPOT_FORMS = ("token", "oauth", "oauth-stale", "token+oauth")


def hubspot_connection_form(url: str, form: str, **extra) -> str:
    """``hubspot_default`` in one of ``HUBSPOT_FORMS``; ``extra`` adds or overrides extras."""
    if form not in HUBSPOT_FORMS:
        raise ValueError(f"unknown HubSpot connection form {form!r}; one of {', '.join(HUBSPOT_FORMS)}")
    conn = {"conn_type": "http", "host": url}
    extras = {"api_version": "2026-03"}
    if form in ("token", "token+oauth"):
        conn["password"] = credentials.HUBSPOT_PRIVATE_APP_TOKEN
    if form != "token":
        extras.update(
            client_id=credentials.HUBSPOT_CLIENT_ID,
            client_secret=credentials.HUBSPOT_CLIENT_SECRET,
            refresh_token=credentials.HUBSPOT_REFRESH_TOKEN,
        )
    if form in ("oauth-stale", "token+oauth"):
        extras["access_token"] = STALE_ACCESS_TOKEN
    return json.dumps({**conn, "extra": {**extras, **extra}})


def hubspot_connection(url: str, *, oauth: bool = True, **extra) -> str:
    """The private-app token as password, with (``oauth``) the OAuth app in the extras."""
    return hubspot_connection_form(url, "token+oauth" if oauth else "token", **extra)


def hubspot_oauth_only_connection(url: str, **extra) -> str:
    """An OAuth app without a private-app token, with a stale ``access_token`` extra: form (c)."""
    return hubspot_connection_form(url, "oauth-stale", **extra)


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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hubspot-url", default="http://127.0.0.1:8081")
    parser.add_argument("--aep-url", default="http://127.0.0.1:8082")
    parser.add_argument("--hubspot-form", choices=HUBSPOT_FORMS, default="token+oauth")
    args = parser.parse_args()
    hubspot = hubspot_connection_form(args.hubspot_url, args.hubspot_form)
    print(f"export AIRFLOW_CONN_HUBSPOT_DEFAULT={shlex.quote(hubspot)}")
    print(f"export AIRFLOW_CONN_AEP_DEFAULT={shlex.quote(aep_connection(args.aep_url))}")


if __name__ == "__main__":
    main()
