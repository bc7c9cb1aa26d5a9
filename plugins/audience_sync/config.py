"""The scheduled run's configuration (``include/sync_config.yaml``), read once at DAG parse time.

Reading a small local YAML file is cheap; nothing here touches the network or the metadata DB.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = PROJECT_ROOT / "include" / "sync_config.yaml"
# The connect task and AEP's Flow Service HubSpot connection: make it when the HubSpot connection holds an
# OAuth app, else skip it (auto); insist on it (required); never call AEP for it (off).
FLOW_SERVICE_MODES = ("auto", "required", "off")


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class SyncConfig:
    schedule: str | None = "0 2 * * *"
    audiences: list[str] = field(default_factory=list)
    mapping: str = "include/mappings/default.yaml"
    property_prefix: str = "aep_"
    batch_size: int = 100
    chunk_rows: int = 10_000
    upsert_threads: int = 2
    hubspot_pool: str = "hubspot_api"
    hubspot_pool_slots: int = 4
    validation_tolerance: int = 0
    validation_max_wait_seconds: int = 180
    validation_poll_seconds: float = 2.0
    flow_service_connection: str = "auto"

    def resolve(self, path: str) -> str:
        """Relative paths in the config and in params are relative to the project root."""
        candidate = Path(path)
        return str(candidate if candidate.is_absolute() else PROJECT_ROOT / candidate)


def load_sync_config(path: str | os.PathLike | None = None) -> SyncConfig:
    path = Path(path or os.environ.get("AUDIENCE_SYNC_CONFIG") or DEFAULT_CONFIG)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"cannot read the sync configuration {path}: {error}") from None
    known = {f.name for f in fields(SyncConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if raw.get("flow_service_connection") is False:  # YAML 1.1 reads a bare `off` as false
        raw["flow_service_connection"] = "off"
    config = SyncConfig(**raw)
    if config.flow_service_connection not in FLOW_SERVICE_MODES:
        raise ConfigError(
            f"{path}: flow_service_connection must be one of {', '.join(FLOW_SERVICE_MODES)}, "
            f"not {config.flow_service_connection!r}"
        )
    if not 1 <= config.batch_size <= 100:
        raise ConfigError(f"{path}: batch_size must be between 1 and 100 (HubSpot's batch limit)")
    if config.hubspot_pool_slots < 1:
        raise ConfigError(f"{path}: hubspot_pool_slots must be at least 1")
    return config
