"""HubSpot internal names for audience properties.

HubSpot internal names hold lowercase letters, digits and underscores and start with a letter
(developers.hubspot.com, CRM API "Properties": "name ... must be unique ... lowercase").
The prefix keeps an audience called "city" away from HubSpot's own ``city``.
"""

from __future__ import annotations

import re
import unicodedata

DEFAULT_PREFIX = "aep_"
MAX_NAME_LENGTH = 100  # keeps names readable in HubSpot's UI; well under the API's limit


class PropertyNameCollision(ValueError):
    """Two audiences would write into the same HubSpot property."""


def audience_property_name(audience_name: str, prefix: str = DEFAULT_PREFIX) -> str:
    """``"Gold Members (EU)"`` → ``"aep_gold_members_eu"``: ASCII-folded, lowercased, runs of
    anything else collapsed to one underscore, trimmed, prefixed, cut to 100 characters."""
    folded = unicodedata.normalize("NFKD", audience_name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "_", folded.lower()).strip("_")
    if not slug:
        raise ValueError(f"audience name {audience_name!r} has no letters or digits to build a property name from")
    name = f"{prefix}{slug}"
    if not re.match(r"^[a-z]", name):
        name = f"a_{name}"
    return name[:MAX_NAME_LENGTH].rstrip("_")


def audience_property_names(audiences: list[dict], prefix: str = DEFAULT_PREFIX) -> dict[str, str]:
    """Audience id → property name, refusing two audiences that sanitise to one name."""
    names: dict[str, str] = {}
    owners: dict[str, dict] = {}
    for audience in audiences:
        name = audience_property_name(audience["name"], prefix)
        if name in owners:
            raise PropertyNameCollision(
                f"audiences {owners[name]['name']!r} ({owners[name]['id']}) and {audience['name']!r} "
                f"({audience['id']}) both map to HubSpot property {name!r}; rename one in AEP or change the prefix"
            )
        owners[name] = audience
        names[audience["id"]] = name
    return names
