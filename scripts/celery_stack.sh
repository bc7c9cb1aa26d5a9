#!/usr/bin/env bash
# The sync beyond one process: docker-compose.yaml's CeleryExecutor stack, without Docker.
#
# 1. apt-get installs PostgreSQL and Redis from Debian's packages (root, or sudo), and pip installs
#    requirements-celery.txt (Celery provider, celery[redis], psycopg2, asyncpg) into .venv.
# 2. Starts a private PostgreSQL (role and database `airflow`, password auth over TCP) and a private
#    Redis, each on a free loopback port under the work folder, as the packages' own users.
# 3. Seeds the AEP sandbox (PROFILES profiles, 3 audiences) and starts both sandboxes.
# 4. Runs api-server, scheduler, dag-processor, triggerer and a Celery worker (scripts/airflow_stack.py)
#    with the compose file's settings (AIRFLOW__CORE__EXECUTOR=CeleryExecutor,
#    AIRFLOW__DATABASE__SQL_ALCHEMY_CONN, AIRFLOW__CELERY__BROKER_URL, AIRFLOW__CELERY__RESULT_BACKEND,
#    AIRFLOW__CORE__FERNET_KEY, AUDIENCE_SYNC_BASE_PATH, AIRFLOW_CONN_*), creates the hubspot_api pool,
#    triggers hubspot_audience_sync through the REST API with CONF, waits up to TIMEOUT seconds and
#    prints the outcome, the task instances, the timings and the run report.
# 5. Stops everything it started (Airflow, sandboxes, Redis, PostgreSQL); the work folder stays.
# Differences from the compose file: the simple auth manager with everyone admin (no FAB provider), one
# machine (so the run folders need no shared volume), the DAG unscheduled (only the triggered run runs),
# WORKER_CONCURRENCY (default 4) Celery worker processes for 2-core machines. Exits 0 only on success.
# Not part of the test suite. Usage:
#
#   sudo scripts/celery_stack.sh
#   PROFILES=20000 CONF='{"full_refresh": true, "audiences": ["Gold Members"]}' TIMEOUT=900 \
#     CELERY_STACK_DIR=/tmp/celery-stack scripts/celery_stack.sh
#
# Work folder (CELERY_STACK_DIR, default a new /tmp/celery-stack.*): pg/ (data, postgres.log), redis/,
# sandbox/ (sandbox state and logs), data/ (AUDIENCE_SYNC_BASE_PATH: run folders, report.md),
# airflow/ (AIRFLOW_HOME: task logs in logs/, component logs in stack/).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
[[ -x $PY ]] || { echo "no virtualenv at $ROOT/.venv: run \`make venv\` first" >&2; exit 2; }
SUDO=""
if [[ $EUID -ne 0 ]]; then SUDO="sudo"; fi
WORK="${CELERY_STACK_DIR:-$(mktemp -d /tmp/celery-stack.XXXXXX)}"
mkdir -p "$WORK" && chmod 755 "$WORK"  # the postgres and redis users must reach their folders
STARTED=$SECONDS
phase() { echo "[celery_stack $((SECONDS - STARTED)) s] $*"; }
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

phase "installing postgresql and redis-server (apt-get)"
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server >/dev/null
$SUDO runuser -u postgres -- test -x "$WORK" || {
  echo "the postgres user cannot reach $WORK (a parent folder is private): set CELERY_STACK_DIR under /tmp" >&2; exit 2; }
phase "installing requirements-celery.txt into .venv"
"$PY" -m pip install -q -r "$ROOT/requirements-celery.txt" 2> >(grep -v "^WARNING: Location" >&2)

phase "seeding and starting the sandboxes"
export SANDBOX_DIR="$WORK/sandbox" HUBSPOT_PORT="$(free_port)" AEP_PORT="$(free_port)"
source "$ROOT/scripts/common.sh"
"$PY" -m sandbox.seed --db "$SANDBOX_DIR/aep.sqlite3" --profiles "${PROFILES:-2000}" --audiences 3 >/dev/null
start_sandboxes
sandbox_connections

PG_BIN="$(find /usr/lib/postgresql -maxdepth 2 -name bin | sort -V | tail -1)"
PG_DIR="$WORK/pg" PG_PORT="$(free_port)" REDIS_DIR="$WORK/redis" REDIS_PORT="$(free_port)"
PG_UP="" REDIS_UP=""
as_user() { local user="$1"; shift; $SUDO runuser -u "$user" -- "$@"; }
stop_all() {
  [[ -n $REDIS_UP ]] && { redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true; }
  [[ -n $PG_UP ]] && { as_user postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null || true; }
  kill $SANDBOX_PIDS 2>/dev/null || true
  echo "[celery_stack] stopped; work folder: $WORK"
}
trap stop_all EXIT  # replaces common.sh's trap, and stops the sandboxes too
trap 'exit 130' INT TERM

phase "starting PostgreSQL ($("$PG_BIN/postgres" --version)) on 127.0.0.1:$PG_PORT"
mkdir -p "$PG_DIR" && $SUDO chown postgres: "$PG_DIR"
as_user postgres "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
  >"$PG_DIR/initdb.log"
PG_UP=1
as_user postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w \
  -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1" start >/dev/null
as_user postgres "$PG_BIN/psql" -h "$PG_DIR" -p "$PG_PORT" -U postgres -q -v ON_ERROR_STOP=1 \
  -c "CREATE ROLE airflow LOGIN PASSWORD 'airflow'" -c "CREATE DATABASE airflow OWNER airflow"

phase "starting Redis ($(redis-server --version | cut -d' ' -f1-3)) on 127.0.0.1:$REDIS_PORT"
mkdir -p "$REDIS_DIR" && $SUDO chown redis: "$REDIS_DIR"
REDIS_UP=1
as_user redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$REDIS_DIR" --save "" --daemonize yes \
  --logfile "$REDIS_DIR/redis.log" --pidfile "$REDIS_DIR/redis.pid"
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.2; done
redis-cli -p "$REDIS_PORT" ping >/dev/null

export AIRFLOW__CORE__EXECUTOR=CeleryExecutor
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="postgresql+psycopg2://airflow:airflow@127.0.0.1:$PG_PORT/airflow"
# The driver named: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which is not installed.
export AIRFLOW__CELERY__RESULT_BACKEND="db+postgresql+psycopg2://airflow:airflow@127.0.0.1:$PG_PORT/airflow"
export AIRFLOW__CELERY__BROKER_URL="redis://:@127.0.0.1:$REDIS_PORT/0"
export AIRFLOW__CELERY__WORKER_CONCURRENCY="${WORKER_CONCURRENCY:-4}"
AIRFLOW__CORE__FERNET_KEY="$("$PY" -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')"
export AIRFLOW__CORE__FERNET_KEY
export AUDIENCE_SYNC_BASE_PATH="file://$WORK/data"

phase "Airflow: db migrate, api-server, scheduler, dag-processor, triggerer, celery worker; trigger and wait"
conf="${CONF:-}" status=0
"$PY" "$ROOT/scripts/airflow_stack.py" run --home "$WORK/airflow" --component "celery worker" \
  --conf "${conf:-"{}"}" --timeout "${TIMEOUT:-600}" || status=$?
phase "done (exit $status)"
exit "$status"
