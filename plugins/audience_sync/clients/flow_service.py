"""Flow Service, Catalog and Data Prep calls of the HubSpot → AEP ingest, on the project's AEP hook.

Paths are relative to the Platform base URL and follow Adobe's OpenAPI files (flow-service.yaml,
catalog.yaml, data-prep.yaml; vendored with the contract tests) and the source tutorials cited in
``audience_sync.ingest``. Lists page through the hook (``_links.next`` / ``start``).
"""

from __future__ import annotations

from typing import Any

from audience_sync.clients.aep import FLOW, first_item
from audience_sync.hooks.aep import AepHook

CATALOG = "data/foundation/catalog"
CONVERSION = "data/foundation/conversion"  # Data Prep [data-prep.yaml servers]


class FlowServiceClient:
    def __init__(self, hook: AepHook) -> None:
        self.hook = hook

    # --- explore ------------------------------------------------------------------------------------
    def explore_root(self, base_connection_id: str) -> Any:
        """``GET /connections/{id}/explore?objectType=ROOT`` (the spec's enum spelling)."""
        return self.hook.request_json(
            "GET", f"{FLOW}/connections/{base_connection_id}/explore", params={"objectType": "ROOT"}
        )

    def explore_table(self, base_connection_id: str, path: str, preview: bool = True) -> dict[str, Any]:
        """``objectType=TABLE&object=<path>[&preview=true]`` → ``{format, schema: {columns}, data}``."""
        params = {"objectType": "TABLE", "object": path}
        if preview:
            params["preview"] = "true"
        return self.hook.request_json("GET", f"{FLOW}/connections/{base_connection_id}/explore", params=params) or {}

    # --- specs --------------------------------------------------------------------------------------
    def get_flow_spec(self, spec_id: str) -> dict[str, Any]:
        return first_item(self.hook.request_json("GET", f"{FLOW}/flowSpecs/{spec_id}"))

    # --- source and target connections ---------------------------------------------------------------
    def list_source_connections(self, property_filter: str) -> list[dict[str, Any]]:
        return list(self.hook.paginate(f"{FLOW}/sourceConnections", ("items",), {"property": property_filter}))

    def create_source_connection(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.hook.request_json("POST", f"{FLOW}/sourceConnections", json=body)

    def list_target_connections(self, property_filter: str) -> list[dict[str, Any]]:
        return list(self.hook.paginate(f"{FLOW}/targetConnections", ("items",), {"property": property_filter}))

    def create_target_connection(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.hook.request_json("POST", f"{FLOW}/targetConnections", json=body)

    # --- Catalog datasets ---------------------------------------------------------------------------
    def get_dataset(self, dataset_id: str) -> dict[str, Any] | None:
        """``GET /dataSets/{id}`` answers ``{<id>: {...}}`` [catalog.yaml]; None when it does not exist."""
        response = self.hook.request("GET", f"{CATALOG}/dataSets/{dataset_id}", ok_statuses=(404,))
        if response.status_code == 404:
            response.close()
            return None
        body = response.json() or {}
        found = body.get(dataset_id) or next(iter(body.values()), None)
        return {**found, "id": dataset_id} if isinstance(found, dict) else None

    def find_datasets(self, name: str) -> list[dict[str, Any]]:
        """``GET /dataSets?name=<name>`` answers ``{<id>: {...}, ...}``; paged by ``start``/``limit``."""
        found, start, limit = [], 0, 50
        while True:
            body = (
                self.hook.request_json(
                    "GET", f"{CATALOG}/dataSets", params={"name": name, "start": start, "limit": limit}
                )
                or {}
            )
            page = [{**value, "id": key} for key, value in body.items() if isinstance(value, dict)]
            found += [d for d in page if d.get("name") == name]
            if len(page) < limit:
                return found
            start += limit

    def create_dataset(self, body: dict[str, Any]) -> Any:
        """``POST /dataSets?requestDataSource=true`` → ``["@/dataSets/<id>"]``."""
        return self.hook.request_json("POST", f"{CATALOG}/dataSets", json=body, params={"requestDataSource": "true"})

    # --- Data Prep mapping sets ---------------------------------------------------------------------
    def find_mapping_sets(self, name: str) -> list[dict[str, Any]]:
        """``GET /mappingSets?name=<name>`` → ``{data: [...], _page}``; matched on the exact name here."""
        found = self.hook.paginate(f"{CONVERSION}/mappingSets", ("data",), {"name": name, "start": 0, "limit": 50})
        return [m for m in found if m.get("name") == name]

    def get_mapping_set(self, mapping_id: str) -> dict[str, Any]:
        return self.hook.request_json("GET", f"{CONVERSION}/mappingSets/{mapping_id}") or {}

    def create_mapping_set(self, body: dict[str, Any]) -> dict[str, Any]:
        """→ ``{id, version, createdDate, ...}`` [data-prep.yaml SimpleRepresentation]."""
        return self.hook.request_json("POST", f"{CONVERSION}/mappingSets", json=body) or {}

    # --- flows and runs -----------------------------------------------------------------------------
    def list_flows(self, property_filter: str) -> list[dict[str, Any]]:
        return list(self.hook.paginate(f"{FLOW}/flows", ("items",), {"property": property_filter}))

    def create_flow(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.hook.request_json("POST", f"{FLOW}/flows", json=body)

    def get_flow(self, flow_id: str) -> dict[str, Any]:
        return first_item(self.hook.request_json("GET", f"{FLOW}/flows/{flow_id}"))

    def list_runs(self, flow_id: str) -> list[dict[str, Any]]:
        """[MONITOR] ``GET /runs?property=flowId==<id>``."""
        return list(self.hook.paginate(f"{FLOW}/runs", ("items",), {"property": f"flowId=={flow_id}"}))

    def create_run(self, flow_id: str, start_time_ms: int) -> dict[str, Any]:
        """``POST /runs`` (flows scheduled for one-time ingestion only) → ``{id, etag}``."""
        body = {
            "flowId": flow_id,
            "params": {"startTime": start_time_ms, "windowStartTime": 0, "windowEndTime": start_time_ms},
        }
        return self.hook.request_json("POST", f"{FLOW}/runs", json=body)
