"""Which HubSpot contact properties the sync must create or patch for its audiences (pure: no I/O).

One enumeration property (``select``, options realized / existing / exited) per audience, in one group
(Adobe's HubSpot destination). A name taken by a property that is not ours is an error, never overwritten.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from audience_sync.constants import AUDIENCE_STATUSES
from audience_sync.errors import ConfigurationError

DEFAULT_GROUP = "adobe_experience_platform_audiences"
DEFAULT_GROUP_LABEL = "Adobe Experience Platform audiences"
DESCRIPTION = "Audience status from Adobe Experience Platform"


class PropertySetupError(ConfigurationError):
    """HubSpot's properties do not fit the mapping or the audiences; raised before anything is written."""


@dataclass(frozen=True)
class PropertyChanges:
    """What to write, in order: the group (if missing), new properties, patches ``(name, changes)``."""

    create_group: bool
    create: tuple[dict[str, Any], ...] = ()
    update: tuple[tuple[str, dict[str, Any]], ...] = field(default_factory=tuple)

    @property
    def empty(self) -> bool:
        return not (self.create_group or self.create or self.update)


def audience_options() -> list[dict[str, Any]]:
    return [{"label": s.title(), "value": s, "displayOrder": i, "hidden": False} for i, s in enumerate(AUDIENCE_STATUSES)]


def reconcile(
    existing: Iterable[Mapping[str, Any]],
    groups: Iterable[str],
    audience_labels: Mapping[str, str],
    target_properties: Iterable[str],
    group_name: str = DEFAULT_GROUP,
) -> PropertyChanges:
    """The changes that make HubSpot hold the mapping's target properties and one audience property per
    ``audience_labels`` entry (property name → audience name).

    :param existing: HubSpot's contact properties (``GET /properties/contacts`` results).
    :param groups: names of HubSpot's contact property groups.
    :param audience_labels: audience property name → label (the audience's name).
    :param target_properties: the properties the mapping writes; each must already exist.
    :param group_name: the group our audience properties live in.
    :raises PropertySetupError: a target property is missing, or an audience property's name is taken by a
        property that is not ours (another group, or not an enumeration).
    """
    by_name = {p["name"]: p for p in existing}
    missing = sorted(set(target_properties) - set(by_name))
    if missing:
        raise PropertySetupError(
            f"the mapping writes HubSpot contact properties that do not exist: {', '.join(missing)}. "
            "Create them in HubSpot (Settings → Properties) or fix the mapping; nothing was written."
        )
    foreign = [
        f"{name} (group {by_name[name].get('groupName')!r}, type {by_name[name].get('type')!r})"
        for name in audience_labels
        if name in by_name and not (by_name[name].get("groupName") == group_name and by_name[name].get("type") == "enumeration")
    ]
    if foreign:
        raise PropertySetupError(
            f"HubSpot properties needed for audiences already exist and are not audience properties of group "
            f"{group_name!r}: {', '.join(foreign)}. Rename them in HubSpot or choose another prefix; "
            "nothing was written."
        )
    create, update = [], []
    for name, label in audience_labels.items():
        prop = by_name.get(name)
        if prop is None:
            create.append(
                {
                    "name": name,
                    "label": label,
                    "type": "enumeration",
                    "fieldType": "select",
                    "groupName": group_name,
                    "description": DESCRIPTION,
                    "options": audience_options(),
                }
            )
            continue
        changes = _changes(prop, label)
        if changes:
            update.append((name, changes))
    return PropertyChanges(group_name not in set(groups), tuple(create), tuple(update))


def _changes(prop: Mapping[str, Any], label: str) -> dict[str, Any]:
    """Missing options appended (a PATCH replaces the option list: it is sent whole), and the label."""
    options = list(prop.get("options") or [])
    have = {o.get("value") for o in options}
    added = [o for o in audience_options() if o["value"] not in have]
    changes: dict[str, Any] = {}
    if added:
        changes["options"] = options + [{**o, "displayOrder": len(options) + i} for i, o in enumerate(added)]
    if prop.get("label") != label:
        changes["label"] = label
    return changes
