#!/usr/bin/env bash
# The Airflow UI on http://localhost:8080 (`airflow standalone`: scheduler, dag-processor,
# api-server and triggerer, LocalExecutor, SQLite) with AIRFLOW_HOME=./airflow_home, the DAGs and
# plugins folders pointed at this repo, both sandboxes running and the connections set.
# The admin password is printed by standalone and kept in airflow_home/simple_auth_manager_passwords.json.generated.
# The connections aep_default and hubspot_default are stored in the metadata database with their own
# connection types (Admin → Connections shows, edits and tests them; the Test button is enabled).
# The DAG runs unscheduled here (a copy of the sync config with `schedule: null`): unpausing it, as the
# trigger dialog's "Unpause on trigger" does, then starts only the run you trigger. LOCAL_SCHEDULE=keep
# keeps the nightly schedule: unpausing then also starts the latest scheduled (real, not dry) run at once.
# Overrides: AIRFLOW_PORT (8080), HUBSPOT_PORT (8081), AEP_PORT (8082), AIRFLOW_HOME, SANDBOX_DIR,
# HUBSPOT_POOL_SLOTS (4), HUBSPOT_CONN_FORM (the sandbox's hubspot_default form, see sandbox/connections.py),
# AIRFLOW__CORE__PARALLELISM (LocalExecutor workers; default twice the CPU count, tasks mostly wait on HTTP, and at
# least the HubSpot pool's slots plus 2, so that a full wave of upserts never waits for a worker another task holds).
set -euo pipefail
source "$(dirname "$0")/common.sh"
export AIRFLOW_PORT="${AIRFLOW_PORT:-8080}"
export AIRFLOW__API__PORT="$AIRFLOW_PORT"
# Tasks reach the api-server's execution API here; its default assumes port 8080.
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="${AIRFLOW__CORE__EXECUTION_API_SERVER_URL:-http://localhost:$AIRFLOW_PORT/execution/}"
export AIRFLOW__CORE__TEST_CONNECTION="${AIRFLOW__CORE__TEST_CONNECTION:-Enabled}"
workers=$(( $(nproc) * 2 )); (( workers >= ${HUBSPOT_POOL_SLOTS:-4} + 2 )) || workers=$(( ${HUBSPOT_POOL_SLOTS:-4} + 2 ))
export AIRFLOW__CORE__PARALLELISM="${AIRFLOW__CORE__PARALLELISM:-$workers}"
if [[ ${LOCAL_SCHEDULE:-} != keep ]]; then
  export AUDIENCE_SYNC_CONFIG="$("$PY" scripts/airflow_stack.py unscheduled-config --home "$AIRFLOW_HOME")"
fi
start_sandboxes
"$PY" -m airflow db migrate >/dev/null
if [[ -z "${AIRFLOW_CONN_HUBSPOT_DEFAULT:-}" && -z "${AIRFLOW_CONN_AEP_DEFAULT:-}" ]]; then
  "$PY" scripts/local_connections.py --hubspot-url "http://127.0.0.1:$HUBSPOT_PORT" \
    --aep-url "http://127.0.0.1:$AEP_PORT" --hubspot-form "${HUBSPOT_CONN_FORM:-token+oauth}"
fi
"$PY" -m airflow pools set hubspot_api "${HUBSPOT_POOL_SLOTS:-4}" "HubSpot API: slots share the account's rate limit" >/dev/null
echo "Airflow UI: http://localhost:$AIRFLOW_PORT (user admin, password printed below once ready)"
echo "LocalExecutor parallelism: $AIRFLOW__CORE__PARALLELISM"
# Not exec: when standalone ends, the EXIT trap stops the sandboxes.
"$PY" -m airflow standalone
