#!/usr/bin/env bash
# One sandbox command: `sandbox.sh hubspot|aep [flags]` serves in the foreground;
# `sandbox.sh seed [flags]` seeds the AEP population; `sandbox.sh reset` wipes both state files.
set -euo pipefail
source "$(dirname "$0")/common.sh"
command="${1:?usage: sandbox.sh hubspot|aep|seed|reset [flags]}"; shift
case "$command" in
  hubspot) exec "$PY" -m sandbox.hubspot --host 127.0.0.1 --port "$HUBSPOT_PORT" --db "$SANDBOX_DIR/hubspot.sqlite3" "$@" ;;
  aep)     exec "$PY" -m sandbox.aep --host 127.0.0.1 --port "$AEP_PORT" --db "$SANDBOX_DIR/aep.sqlite3" "$@" ;;
  seed)    exec "$PY" -m sandbox.seed --db "$SANDBOX_DIR/aep.sqlite3" "$@" ;;
  reset)   "$PY" -m sandbox.hubspot reset --db "$SANDBOX_DIR/hubspot.sqlite3"
           "$PY" -m sandbox.aep reset --db "$SANDBOX_DIR/aep.sqlite3" ;;
  *) echo "unknown command $command" >&2; exit 2 ;;
esac
