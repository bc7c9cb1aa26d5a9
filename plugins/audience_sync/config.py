"""The scheduled run's configuration (``include/sync_config.yaml``), read once at DAG parse time,
and the pure guards it drives: allowed roots for user-given paths, input size caps, retention.

Reading a small local YAML file is cheap; nothing here touches the network or the metadata DB.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from audience_sync.constants import MAX_BATCH, checked_batch_size
from audience_sync.errors import ConfigurationError, InputError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = PROJECT_ROOT / "include" / "sync_config.yaml"
# The connect task and AEP's Flow Service HubSpot connection: make it when the HubSpot connection holds an
# OAuth app, else skip it (auto); insist on it (required); never call AEP for it (off).
FLOW_SERVICE_MODES = ("auto", "required", "off")
# Organisation-wide governance: XDM fields that never leave AEP (data-usage labels such as C5/S1).
# A mapping file may add fields to this list, never remove any.
DEFAULT_BLOCKED_FIELDS = (
    "person.birthDate",
    "person.birthDayAndMonth",
    "person.birthYear",
    "person.gender",
    "identityMap.ECID",
    "consents",
)
# A run the mass-change guard stopped waits for a person's approval (manual runs only, any run, or none).
APPROVAL_MODES = ("manual", "always", "never")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class ConfigError(ConfigurationError):
    """The sync configuration file is unreadable or holds a bad setting."""


class UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader refusing a key repeated in one mapping: PyYAML keeps the last one silently, so a
    repeated ``blocked_fields`` or ``target`` would drop a setting without a word."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r} (first at line {seen[key] + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str):
    """Parse YAML safely, refusing duplicate keys (raises ``yaml.YAMLError``)."""
    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def read_yaml_file(path: Path, what: str) -> Any:
    """A settings file (``what`` names it in the error): unreadable or not YAML is a ``ConfigError``."""
    try:
        return load_yaml(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"cannot read the {what} {path}: {error}") from None


def refuse_unknown(found: dict, known: Iterable[str], where: str) -> None:
    """A misspelt setting would silently fall back to its default: name it and the known ones instead."""
    unknown = sorted(set(found) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")


def project_path(path: str | os.PathLike) -> Path:
    """Relative paths in the configs and in params are relative to the project root."""
    candidate = Path(path)
    return candidate if candidate.is_absolute() else PROJECT_ROOT / candidate


@dataclass(frozen=True)
class SyncConfig:
    schedule: str | None = "0 2 * * *"
    audiences: list[str] = field(default_factory=list)
    mapping: str = "include/mappings/default.yaml"
    property_prefix: str = "aep_"
    batch_size: int = MAX_BATCH
    chunk_rows: int = 10_000
    upsert_threads: int = 2
    hubspot_pool: str = "hubspot_api"
    hubspot_pool_slots: int = 4
    validation_tolerance: int = 0
    validation_max_wait_seconds: int = 180
    validation_poll_seconds: float = 2.0
    flow_service_connection: str = "auto"
    max_exit_fraction: float = 0.10
    max_reject_fraction: float = 0.05
    retention_days: int = 30
    max_input_bytes: int = 10 * 2**30
    allowed_roots: list[str] | None = None  # None: include/ and the base path
    blocked_fields: list[str] = field(default_factory=lambda: list(DEFAULT_BLOCKED_FIELDS))
    alerts: dict | None = None  # failure notifications, parsed by audience_sync.alerts.parse_alerts
    approval_on_mass_change: str = "manual"  # which runs the guard stopped wait for approval: manual|always|never

    def resolve(self, path: str) -> str:
        return str(project_path(path))

    def roots(self, base_path: str) -> list[str]:
        """The folders ``mapping`` and ``source_files`` may point into; ``base_path`` is the run
        storage's base (``storage.base_path()``), one of the defaults."""
        if self.allowed_roots is None:
            return [str(PROJECT_ROOT / "include"), str(base_path)]
        return [root if _URL.match(root) else self.resolve(root) for root in self.allowed_roots]


def load_sync_config(path: str | os.PathLike | None = None) -> SyncConfig:
    path = Path(path or os.environ.get("AUDIENCE_SYNC_CONFIG") or DEFAULT_CONFIG)
    raw = read_yaml_file(path, "sync configuration") or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(raw).__name__}")
    refuse_unknown(raw, [f.name for f in fields(SyncConfig)], str(path))
    if raw.get("flow_service_connection") is False:  # YAML 1.1 reads a bare `off` as false
        raw["flow_service_connection"] = "off"
    config = SyncConfig(**raw)
    if config.flow_service_connection not in FLOW_SERVICE_MODES:
        raise ConfigError(
            f"{path}: flow_service_connection must be one of {', '.join(FLOW_SERVICE_MODES)}, "
            f"not {config.flow_service_connection!r}"
        )
    if config.approval_on_mass_change not in APPROVAL_MODES:
        raise ConfigError(
            f"{path}: approval_on_mass_change must be one of {', '.join(APPROVAL_MODES)}, "
            f"not {config.approval_on_mass_change!r}"
        )
    try:
        checked_batch_size(config.batch_size)
    except ConfigurationError as error:
        raise ConfigError(f"{path}: {error}") from None
    if config.hubspot_pool_slots < 1:
        raise ConfigError(f"{path}: hubspot_pool_slots must be at least 1")
    for name in ("max_exit_fraction", "max_reject_fraction"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ConfigError(f"{path}: {name} must be a fraction between 0 and 1, got {value!r}")
    for name in ("retention_days", "max_input_bytes"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{path}: {name} must be a positive integer, got {value!r}")
    for name in ("allowed_roots", "blocked_fields"):
        value = getattr(config, name)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) and v for v in value)):
            raise ConfigError(f"{path}: {name} must be a list of non-empty strings")
    return config


def resolve_within_roots(value: str, roots: Iterable[str]) -> str:
    """``value`` (a run param: the mapping file, the source files) resolved against the project root,
    refused unless it lies inside one of ``roots``. ``..`` is refused outright, so no symlink-free
    normalisation trick can step out; URLs (``s3://conn@bucket/prefix/*.csv``) must start with a root URL."""
    text = str(value).strip()
    roots = [str(r) for r in roots]
    if not text:
        raise ConfigurationError("an empty path was given; name a file inside the allowed roots")
    parts = PurePosixPath(_URL.sub("", text).replace("\\", "/")).parts
    if ".." in parts:
        raise ConfigurationError(f"path {text!r} contains '..'; give a path inside the allowed roots: {roots}")
    if _URL.match(text):
        inside = any(text.rstrip("/") == r.rstrip("/") or text.startswith(r.rstrip("/") + "/") for r in roots)
        resolved = text
    else:
        resolved = str(project_path(text))
        local = [Path(r).resolve() for r in roots if not _URL.match(r) and not r.startswith("file://")]
        local += [Path(r.removeprefix("file://")).resolve() for r in roots if r.startswith("file://")]
        target = Path(resolved).resolve()
        inside = any(target == root or root in target.parents for root in local)
    if not inside:
        raise ConfigurationError(f"path {text!r} is outside the allowed roots {roots} (setting allowed_roots)")
    return resolved


def check_input_size(path: str, size: int, cap: int) -> None:
    """Refuse an input file over ``cap`` bytes (setting ``max_input_bytes``) before it is read."""
    if size > cap:
        raise InputError(
            f"input file {path} is {size:,} bytes, over the limit of {cap:,} bytes (setting max_input_bytes); "
            "split the export or raise the limit"
        )


def expired_run_folders(folders_with_mtime: Iterable[tuple[str, float]], now: float, days: int) -> list[str]:
    """Run folders (holding personal data) last modified more than ``days`` days before ``now``
    (epoch seconds), oldest first: the ones to delete (setting ``retention_days``)."""
    cutoff = now - days * 86_400
    return [folder for folder, mtime in sorted(folders_with_mtime, key=lambda item: item[1]) if mtime < cutoff]
