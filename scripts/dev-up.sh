#!/usr/bin/env bash
# Install what is missing, build, and run a local kanade: nats-server with JetStream,
# kanade-backend on SQLite and one kanade-agent, all in this terminal. Ctrl-C stops everything.
#   --install-only   install prerequisites and exit
#   --postgres       keep the projection in a local Postgres cluster (.kanade-dev/pg, port
#                    KANADE_DEV_PG_PORT, 5433) instead of SQLite
# Ports: KANADE_DEV_NATS_PORT (4222), KANADE_DEV_HTTP_PORT (8080). State lives in .kanade-dev/
# (KANADE_DEV_DIR elsewhere).
# First admin: admin / KANADE_DEV_ADMIN_PASSWORD (kanade-dev-admin).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

POSTGRES=0
[ "${1:-}" = "--postgres" ] && POSTGRES=1
ensure_cargo
ensure_nats_server
[ "$POSTGRES" = 1 ] && ensure_postgres
[ "${1:-}" = "--install-only" ] && { say "prerequisites installed; nats-server is $KANADE_NATS_SERVER"; exit 0; }
PG_PORT="${KANADE_DEV_PG_PORT:-5433}"

NATS_PORT="${KANADE_DEV_NATS_PORT:-4222}"
HTTP_PORT="${KANADE_DEV_HTTP_PORT:-8080}"
# The first admin of a fresh dev database; later starts keep whatever password it has by then.
ADMIN_PASSWORD="${KANADE_DEV_ADMIN_PASSWORD:-kanade-dev-admin}"
DEV="${KANADE_DEV_DIR:-$PWD/.kanade-dev}"
for port in "$NATS_PORT" "$HTTP_PORT" $([ "$POSTGRES" = 1 ] && echo "$PG_PORT"); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port is already in use; stop what uses it or set KANADE_DEV_NATS_PORT / KANADE_DEV_HTTP_PORT"
  fi
done

say "building (first build takes a few minutes)"
cargo build --locked --bins
BIN="$CARGO_TARGET_DIR/debug"

mkdir -p "$DEV/nats" "$DEV/backend" "$DEV/agent" "$DEV/logs"
# The host name is the natural agent id, made into a valid one (dots and spaces become -).
AGENT_ID=$(hostname | tr -c 'A-Za-z0-9_\n-' '-' | cut -c1-64)
cat > "$DEV/nats.conf" <<CONF
listen: 127.0.0.1:$NATS_PORT
# kanade's streams reserve 23 GiB of limits; the default cap is 75% of the free disk.
jetstream { store_dir: "$DEV/nats", max_file_store: 32GB }
CONF
cat > "$DEV/backend.toml" <<CONF
[server]
bind = "127.0.0.1:$HTTP_PORT"
data_dir = "$DEV/backend"
[nats]
url = "nats://127.0.0.1:$NATS_PORT"
[db]
$(if [ "$POSTGRES" = 1 ]; then echo "url = \"postgres://kanade@127.0.0.1:$PG_PORT/kanade\""; else echo "sqlite_path = \"$DEV/backend/backend.db\""; fi)
[log]
path = "$DEV/logs"
CONF
echo "$AGENT_ID" > "$DEV/agent-id"
# A dev operator key for `kanade run` / `kanade kill` over NATS (README: KANADE_SIGNING_KEY).
if [ ! -s "$DEV/operator.pub" ]; then
  rm -f "$DEV/operator.key" "$DEV/operator.pub.new"
  "$BIN/kanade" -o json keygen "$DEV/operator.key" | sed -n 's/.*"public_key": *"\([^"]*\)".*/\1/p' > "$DEV/operator.pub.new"
  [ -s "$DEV/operator.pub.new" ] || die "kanade keygen did not make the dev operator key"
  mv "$DEV/operator.pub.new" "$DEV/operator.pub"
fi

pids=()
stopping=0
# Newest first: the agent, then the backend, then the broker they both talk to, each waited
# for, so nobody logs the others going away.
cleanup() {
  trap - INT TERM EXIT
  stopping=1
  say "stopping"
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
}
trap cleanup INT TERM EXIT

# Process substitution keeps $! the daemon's own pid (a pipe would give sed's). Each daemon gets
# a session of its own, so Ctrl-C reaches only this script, which stops them in order; the
# prefixing sed ignores it too, so nothing loses its output while stopping.
start() {
  local tag=$1; shift
  setsid "$@" > >(trap '' INT; exec sed -u "s/^/[$tag] /") 2>&1 &
  pids+=($!)
}
# Wait until something listens on a port (30 s), or stop with what did not come up.
wait_port() {
  for _ in $(seq 1 150); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.2
  done
  die "$2 did not listen on port $1 within 30 s; see the lines above"
}
# In order, each once the one before listens: nobody starts by failing to reach the other.
if [ "$POSTGRES" = 1 ]; then
  # Postgres refuses to run as root: as root the cluster belongs to the postgres user.
  PG_BIN=$(postgres_bin)
  as_pg=()
  [ "$(id -u)" = 0 ] && as_pg=(runuser -u postgres --)
  if [ ! -s "$DEV/pg/PG_VERSION" ]; then
    mkdir -p "$DEV/pg"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$DEV/pg"
    "${as_pg[@]}" "$PG_BIN/initdb" -D "$DEV/pg" -U kanade --auth=trust --no-locale -E UTF8 >/dev/null \
      || die "initdb $DEV/pg failed"
  fi
  start "pg     " "${as_pg[@]}" "$PG_BIN/postgres" -D "$DEV/pg" -p "$PG_PORT" -k "$DEV/pg" -c listen_addresses=127.0.0.1
  wait_port "$PG_PORT" postgres
  "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U kanade -d postgres -tc "SELECT 1 FROM pg_database WHERE datname = 'kanade'" \
    | grep -q 1 || "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U kanade -d postgres -c "CREATE DATABASE kanade"
fi
start "nats   " "$KANADE_NATS_SERVER" -c "$DEV/nats.conf"
wait_port "$NATS_PORT" nats-server
start "backend" env KANADE_BOOTSTRAP_ADMIN_PASSWORD="$ADMIN_PASSWORD" "$BIN/kanade-backend" --config "$DEV/backend.toml"
wait_port "$HTTP_PORT" kanade-backend
# Signed end to end: the agent pins the backend's key and the dev operator key.
BACKEND_KEY=$(exec 3<>"/dev/tcp/127.0.0.1/$HTTP_PORT" \
  && printf 'GET /api/signing-key HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3 \
  && sed -n 's/.*"public_key":"\([^"]*\)".*/\1/p' <&3)
[ -n "$BACKEND_KEY" ] || die "the backend did not give its signing key (GET /api/signing-key)"
cat > "$DEV/agent.toml" <<CONF
[agent]
id = "$AGENT_ID"
nats_url = "nats://127.0.0.1:$NATS_PORT"
groups = ["dev"]
data_dir = "$DEV/agent"
[notifications]
socket = "$DEV/notifications.sock"
[security]
trusted_keys = ["$BACKEND_KEY", "$(cat "$DEV/operator.pub")"]
[log]
path = "$DEV/logs"
CONF
start "agent  " "$BIN/kanade-agent" --config "$DEV/agent.toml"

# One HTTP/1.0 exchange with the backend; prints the response (headers and body).
http() {
  local method=$1 path=$2 auth=${3:-} body=${4:-} header="" LC_ALL=C  # ${#body} in bytes
  [ -z "$auth" ] || header="Authorization: Bearer $auth"$'\r\n'
  exec 3<>"/dev/tcp/127.0.0.1/$HTTP_PORT" || return 1
  printf '%s %s HTTP/1.0\r\nHost: localhost\r\n%sContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s' \
    "$method" "$path" "$header" "${#body}" "$body" >&3
  cat <&3
  exec 3<&-
}
# The banner comes once the backend lists the agent, so the first `kanade agents list` shows it.
PW=${ADMIN_PASSWORD//\\/\\\\}
PW=${PW//\"/\\\"}
TOKEN=$(http POST /api/auth/login "" "{\"name\":\"admin\",\"password\":\"$PW\"}" \
  | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
if [ -n "$TOKEN" ]; then
  for _ in $(seq 1 150); do
    http GET /api/agents "$TOKEN" | grep -q "\"pc_id\":\"$AGENT_ID\"" && break
    sleep 0.2
  done
else
  say "cannot sign in as admin with the dev password (changed?); not waiting for the agent to register"
fi
cat >&2 <<MSG

  kanade is running (state in $DEV, logs in $DEV/logs)
    API        http://127.0.0.1:$HTTP_PORT/api/agents  /api/executions  /api/openapi.json  /metrics
    dashboard  http://127.0.0.1:$HTTP_PORT/  (sign in with the login below)
    login      admin / $ADMIN_PASSWORD  (POST /api/auth/login; set at the first start of this dev database)
    NATS       nats://127.0.0.1:$NATS_PORT
    database   $([ "$POSTGRES" = 1 ] && echo "postgres://kanade@127.0.0.1:$PG_PORT/kanade" || echo "$DEV/backend/backend.db")
    agent      $AGENT_ID (group dev), pinning the backend's key and the dev operator key
    signing    export KANADE_SIGNING_KEY=$DEV/operator.key  (for kanade run / kill over NATS)
    CLI        $BIN/kanade --nats-url nats://127.0.0.1:$NATS_PORT jetstream status
  Ctrl-C stops everything.

MSG
# Any component exiting takes the stack down with it, so nothing half-runs unnoticed.
wait -n "${pids[@]}" || true
[ "$stopping" = 1 ] || say "a component exited; see the lines above"
