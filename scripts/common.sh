# Sourced by the other scripts: paths, ports, and the Airflow settings that point at this repo.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
# The venv's bin first on PATH, as an activated venv would: `airflow standalone` starts its parts as
# `airflow ...` from PATH, and they must be this project's Airflow.
export PATH="$ROOT/.venv/bin:$PATH"
export PYTHONPATH="$ROOT/include:$ROOT/plugins${PYTHONPATH:+:$PYTHONPATH}"
export SANDBOX_DIR="${SANDBOX_DIR:-$ROOT/data/sandbox}"
export HUBSPOT_PORT="${HUBSPOT_PORT:-8081}" AEP_PORT="${AEP_PORT:-8082}"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$ROOT/airflow_home}"
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$ROOT/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
mkdir -p "$SANDBOX_DIR"

# Point the Airflow connections at the sandbox unless the caller set real ones. HUBSPOT_CONN_FORM picks
# hubspot_default's form: token, oauth, oauth-stale or token+oauth (default; see sandbox/connections.py).
sandbox_connections() {
  if [[ -z "${AIRFLOW_CONN_HUBSPOT_DEFAULT:-}" && -z "${AIRFLOW_CONN_AEP_DEFAULT:-}" ]]; then
    eval "$("$PY" -m sandbox.connections --hubspot-url "http://127.0.0.1:$HUBSPOT_PORT" \
      --aep-url "http://127.0.0.1:$AEP_PORT" --hubspot-form "${HUBSPOT_CONN_FORM:-token+oauth}")"
  fi
}

# Start both sandbox servers in the background (stopped when the calling script exits).
start_sandboxes() {
  "$PY" -m sandbox.hubspot --host 127.0.0.1 --port "$HUBSPOT_PORT" --db "$SANDBOX_DIR/hubspot.sqlite3" "$@" \
    >"$SANDBOX_DIR/hubspot.log" 2>&1 &
  SANDBOX_PIDS="$!"
  "$PY" -m sandbox.aep --host 127.0.0.1 --port "$AEP_PORT" --db "$SANDBOX_DIR/aep.sqlite3" \
    >"$SANDBOX_DIR/aep.log" 2>&1 &
  SANDBOX_PIDS="$SANDBOX_PIDS $!"
  trap 'kill $SANDBOX_PIDS 2>/dev/null || true' EXIT
  local name port up
  for name in hubspot aep; do
    [[ $name == hubspot ]] && port=$HUBSPOT_PORT || port=$AEP_PORT
    up=""
    for _ in $(seq 100); do
      if "$PY" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/_sandbox/health', timeout=1)" \
        2>/dev/null; then up=1; break; fi
      sleep 0.2
    done
    [[ -n $up ]] || { echo "the $name sandbox did not start; its log:" >&2; tail -20 "$SANDBOX_DIR/$name.log" >&2; exit 1; }
  done
  echo "sandboxes up: HubSpot http://127.0.0.1:$HUBSPOT_PORT, AEP http://127.0.0.1:$AEP_PORT (logs in $SANDBOX_DIR)"
}
