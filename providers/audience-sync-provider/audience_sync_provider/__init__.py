"""Provider info for the connection types ``aep`` and ``hubspot``.

Declared the way Airflow 3.2+ wants it (``conn-fields`` and ``ui-field-behaviour`` in the provider
info, not the deprecated hook methods), so the UI draws each form without importing a hook. Extras
are stored under the names the hooks read (plugins/audience_sync/hooks/aep.py and hubspot.py).
"""

from __future__ import annotations

from typing import Any


def _text(label: str, description: str, default: str | None = None, secret: bool = False, enum=None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": ["string", "null"]}
    if default is not None:
        schema["default"] = default
    if secret:
        schema["format"] = "password"  # masked in the form and in API answers
    if enum:
        schema["enum"] = list(enum)
    return {"label": label, "description": description, "schema": schema}


AEP = {
    "connection-type": "aep",
    "hook-class-name": "audience_sync.hooks.forms.AepConnectionHook",
    "hook-name": "Adobe Experience Platform",
    "ui-field-behaviour": {
        "hidden-fields": ["schema", "port"],
        "relabeling": {"host": "Platform URL", "login": "Client ID", "password": "Client secret"},
        "placeholders": {"host": "https://platform.adobe.io", "login": "OAuth server-to-server client id"},
    },
    "conn-fields": {
        "org_id": _text("IMS org ID", "x-gw-ims-org-id, e.g. ABC123@AdobeOrg"),
        # no default value: "prod" is the hook's default, and a stored 4-character extra makes every
        # task log warn "Skipping masking for a secret as it's too short"
        "sandbox_name": _text("Sandbox name", "x-sandbox-name; empty: prod"),
        "export_dataset_id": _text("Export dataset ID", "Dataset the audience export job writes to"),
        "merge_policy_id": _text("Merge policy ID", "Merge policy of the export (empty: the default policy)"),
        "ims_url": _text("IMS URL", "Token service; empty: https://ims-na1.adobelogin.com"),
        "scopes": _text("Scopes", "Comma-separated OAuth scopes; empty: Adobe's documented Platform scopes"),
    },
}

HUBSPOT = {
    "connection-type": "hubspot",
    "hook-class-name": "audience_sync.hooks.forms.HubSpotConnectionHook",
    "hook-name": "HubSpot",
    "ui-field-behaviour": {
        "hidden-fields": ["schema", "port", "login"],
        "relabeling": {"host": "API URL", "password": "Private app token or service key"},
        "placeholders": {"host": "https://api.hubapi.com", "password": "empty when an OAuth app is set below"},
    },
    "conn-fields": {
        "api_version": _text(
            "API version",
            "Dated version of the CRM APIs, or v3 (legacy paths)",
            "2026-03",
            enum=("2026-03", "2026-09", "v3"),
        ),
        "client_id": _text("OAuth app client ID", "Only without a token: the OAuth app's client id"),
        "client_secret": _text("OAuth app client secret", "Only without a token", secret=True),
        "refresh_token": _text(
            "OAuth refresh token", "Only without a token: the installation's refresh token", secret=True
        ),
    },
}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "audience-sync-provider",
        "name": "Audience sync (AEP to HubSpot)",
        "description": "Connection types aep and hubspot, with their forms and Test buttons.",
        "versions": ["1.0.0"],
        "connection-types": [AEP, HUBSPOT],
    }
