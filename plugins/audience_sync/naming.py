"""HubSpot internal names for audience properties.

HubSpot internal names hold lowercase letters, digits and underscores and start with a letter
(developers.hubspot.com, CRM API "Properties": "name ... must be unique ... lowercase").
The prefix keeps an audience called "city" away from HubSpot's own ``city``.
"""

from __future__ import annotations

import re
import unicodedata

from audience_sync.errors import ConfigurationError

DEFAULT_PREFIX = "aep_"
MAX_NAME_LENGTH = 100  # keeps names readable in HubSpot's UI; well under the API's limit


class PropertyNameCollision(ConfigurationError):
    """Two audiences would write into the same HubSpot property."""


def audience_property_name(audience_name: str, prefix: str = DEFAULT_PREFIX) -> str:
    """``"Gold Members (EU)"`` → ``"aep_gold_members_eu"``: ASCII-folded, lowercased, runs of
    anything else collapsed to one underscore, trimmed, prefixed, cut to 100 characters."""
    folded = unicodedata.normalize("NFKD", audience_name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "_", folded.lower()).strip("_")
    if not slug:
        raise ConfigurationError(
            f"audience name {audience_name!r} has no letters or digits to build a property name from"
        )
    name = f"{prefix}{slug}"
    if not re.match(r"^[a-z]", name):
        name = f"a_{name}"
    return name[:MAX_NAME_LENGTH].rstrip("_")


def audience_property_names(
    audiences: list[dict], prefix: str = DEFAULT_PREFIX, registry: dict[str, str] | None = None
) -> dict[str, str]:
    """Audience id → property name, refusing two audiences that land on one name.

    ``registry`` ({audience id: property name}, ``incremental.read_registry``) pins the name an audience
    got first: renaming the audience in AEP changes its label in HubSpot, never its property. Names
    the registry holds for audiences outside this run stay reserved, so a new audience cannot take one.
    """
    registry = registry or {}
    names: dict[str, str] = {}
    owners: dict[str, tuple[str, str]] = {name: (aid, "(registered earlier)") for aid, name in registry.items()}
    for audience in audiences:
        aid = audience["id"]
        name = registry.get(aid) or audience_property_name(audience["name"], prefix)
        owner = owners.get(name)
        if owner is not None and owner[0] != aid:
            other = next((a["name"] for a in audiences if a["id"] == owner[0]), None)
            hint = "" if other else " (if that audience is gone for good, remove it from the registry file)"
            raise PropertyNameCollision(
                f"audiences {other or owner[1]!r} ({owner[0]}) and {audience['name']!r} ({aid}) both map to "
                f"HubSpot property {name!r}; rename one in AEP or change the prefix{hint}"
            )
        owners[name] = (aid, audience["name"])
        names[aid] = name
    return names


def merge_registry(registry: dict[str, str], names: dict[str, str]) -> dict[str, str]:
    """The registry plus this run's names; an audience already registered keeps its first name."""
    return {**names, **registry}

