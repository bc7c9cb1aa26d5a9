#!/usr/bin/env bash
# The Airflow UI on http://localhost:8080 (`airflow standalone`: scheduler, dag-processor,
# api-server and triggerer, LocalExecutor, SQLite) with AIRFLOW_HOME=./airflow_home, the DAGs and
# plugins folders pointed at this repo, both sandboxes running and the connections set.
# The admin password is printed by standalone and kept in airflow_home/simple_auth_manager_passwords.json.generated.
set -euo pipefail
source "$(dirname "$0")/common.sh"
start_sandboxes
sandbox_connections
"$PY" -m airflow db migrate >/dev/null
"$PY" -m airflow pools set hubspot_api "${HUBSPOT_POOL_SLOTS:-4}" "HubSpot API: slots share the account's rate limit" >/dev/null
exec "$PY" -m airflow standalone
