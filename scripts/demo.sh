#!/usr/bin/env bash
# The demo: fresh sandboxes, 10,000 seeded profiles in three audiences, the sync DAG run end to end
# with `airflow dags test`, its report printed; then 1% of profiles change and the DAG runs again,
# sending only those.
set -euo pipefail
source "$(dirname "$0")/common.sh"
PROFILES="${PROFILES:-10000}"

rm -rf "$SANDBOX_DIR" "$ROOT/data/runs" "$ROOT/data/state"; mkdir -p "$SANDBOX_DIR"
"$PY" -m sandbox.seed --db "$SANDBOX_DIR/aep.sqlite3" --profiles "$PROFILES" --audiences 3
start_sandboxes
sandbox_connections
"$PY" -m airflow db migrate >/dev/null

run_sync() {
  local name="$1" log="$SANDBOX_DIR/$1.log" report
  echo; echo "=== hubspot_audience_sync: $name run (log: $log) ==="
  "$PY" -m airflow dags test hubspot_audience_sync >"$log" 2>&1 || {
    echo "the run failed; the end of its log:"; tail -40 "$log"; exit 1; }
  report="$(ls -td "$ROOT"/data/runs/hubspot_audience_sync/*/ | head -1)report.md"
  cat "$report"
}

run_sync full
echo; echo "=== changing 1% of the profiles in AEP ==="
"$PY" -m sandbox.seed mutate --db "$SANDBOX_DIR/aep.sqlite3" --fraction 0.01
run_sync incremental
