#!/usr/bin/env bash
# The Airflow UI on http://localhost:8080 (`airflow standalone`: scheduler, dag-processor,
# api-server and triggerer, LocalExecutor, SQLite) with AIRFLOW_HOME=./airflow_home, the DAGs and
# plugins folders pointed at this repo, both sandboxes running and the connections set.
# The admin password is printed by standalone and kept in airflow_home/simple_auth_manager_passwords.json.generated.
# Overrides: AIRFLOW_PORT (8080), HUBSPOT_PORT (8081), AEP_PORT (8082), AIRFLOW_HOME, SANDBOX_DIR,
# HUBSPOT_POOL_SLOTS (4), HUBSPOT_CONN_FORM (the sandbox's hubspot_default form, see sandbox/connections.py).
set -euo pipefail
source "$(dirname "$0")/common.sh"
export AIRFLOW_PORT="${AIRFLOW_PORT:-8080}"
export AIRFLOW__API__PORT="$AIRFLOW_PORT"
# Tasks reach the api-server's execution API here; its default assumes port 8080.
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="${AIRFLOW__CORE__EXECUTION_API_SERVER_URL:-http://localhost:$AIRFLOW_PORT/execution/}"
start_sandboxes
sandbox_connections
"$PY" -m airflow db migrate >/dev/null
"$PY" -m airflow pools set hubspot_api "${HUBSPOT_POOL_SLOTS:-4}" "HubSpot API: slots share the account's rate limit" >/dev/null
echo "Airflow UI: http://localhost:$AIRFLOW_PORT (user admin, password printed below once ready)"
# Not exec: when standalone ends, the EXIT trap stops the sandboxes.
"$PY" -m airflow standalone
