"""The hooks behind the ``aep`` and ``hubspot`` connection types (providers/audience-sync-provider):
the existing hooks under their own conn types, with the Test button's ``test_connection``.

The forms themselves are declared in the provider info (``conn-fields``), as Airflow 3.2+ asks,
so no ``get_connection_form_widgets``/``get_ui_field_behaviour`` here. A test makes one cheap
authenticated read with few retries, and answers without secrets (the hooks' errors carry none).
"""

from __future__ import annotations

import requests

from audience_sync.hooks.aep import AepHook
from audience_sync.hooks.base import ApiError, RetrySettings
from audience_sync.hooks.hubspot import HubSpotHook

TEST_RETRY = RetrySettings(max_attempts=2, base_delay=0.2, max_delay=1.0)
TEST_TIMEOUT_S = 15.0


class ConnectionTestMixin:
    """``test_connection`` for a hook: its ``probe`` with few retries and a short timeout; never a secret."""

    service: str

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("retry", TEST_RETRY)
        kwargs.setdefault("timeout", TEST_TIMEOUT_S)
        super().__init__(*args, **kwargs)

    def probe(self) -> None:
        raise NotImplementedError

    def test_connection(self) -> tuple[bool, str]:
        try:
            self.probe()
        except (ApiError, requests.RequestException) as error:
            reason = str(error) if isinstance(error, ApiError) else f"cannot reach the API ({type(error).__name__})"
            return False, f"{self.service}: {reason}"
        except Exception as error:  # a bad connection setting: the hooks name it without its value
            return False, f"{self.service}: {type(error).__name__}: {error}"
        return True, f"{self.service}: authenticated and read the API"


class AepConnectionHook(ConnectionTestMixin, AepHook):
    conn_type = "aep"
    hook_name = "Adobe Experience Platform"

    def probe(self) -> None:
        """An IMS token, then one page of one audience (Segmentation "List audiences")."""
        self.request_json("GET", "data/core/ups/audiences", params={"limit": 1})


class HubSpotConnectionHook(ConnectionTestMixin, HubSpotHook):
    conn_type = "hubspot"
    hook_name = "HubSpot"

    def probe(self) -> None:
        """The ``email`` property of contacts ("Properties" API): needs a valid token, returns no contact data."""
        self.request_json("GET", self.path("crm/properties", "contacts/email"))
