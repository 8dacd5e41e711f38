#!/usr/bin/env bash
# The API fuzzed against its own OpenAPI document: schemathesis (pinned, from PyPI) sends
# generated requests to every route of a live backend (debug build, SQLite, a real
# nats-server), signed in as the first admin, and fails on any 5xx, any answer that breaks its
# documented schema and any status the document does not allow. Bounded: a fixed number of
# examples per route and a fixed seed, so a run takes about a minute and repeats itself.
# The event streams (/api/stream, a run's tail, an agent's log) never end and are left out.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_nats_server
command -v curl >/dev/null || apt_install curl
ST="$KANADE_TOOLS/schemathesis"
SCHEMATHESIS_VERSION=4.32.5
if ! "$ST/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  say "installing schemathesis $SCHEMATHESIS_VERSION into $ST"
  python3 -m venv "$ST" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$ST"; }
  "$ST/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
BIN="$CARGO_TARGET_DIR/debug"
[ -x "$BIN/kanade-backend" ] || cargo build --locked -p kanade-backend --bins

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
DIR=$(mktemp -d)
NATS_PORT=$(free_port)
HTTP_PORT=$(free_port)
PASSWORD="fuzz-admin-$(date +%s)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT
cat > "$DIR/nats.conf" <<CONF
listen: 127.0.0.1:$NATS_PORT
jetstream { store_dir: "$DIR/nats", max_file_store: 32GB }
CONF
cat > "$DIR/backend.toml" <<CONF
[server]
bind = "127.0.0.1:$HTTP_PORT"
data_dir = "$DIR/backend"
[nats]
url = "nats://127.0.0.1:$NATS_PORT"
[db]
sqlite_path = "$DIR/backend/backend.db"
[log]
path = "$DIR/logs"
CONF
"$KANADE_NATS_SERVER" -c "$DIR/nats.conf" > "$DIR/nats.log" 2>&1 &
pids+=($!)
KANADE_BOOTSTRAP_ADMIN_PASSWORD="$PASSWORD" "$BIN/kanade-backend" --config "$DIR/backend.toml" > "$DIR/backend.log" 2>&1 &
pids+=($!)
BASE="http://127.0.0.1:$HTTP_PORT"
for _ in $(seq 1 120); do
  curl -sf "$BASE/livez" >/dev/null && break
  sleep 0.5
done
curl -sf "$BASE/livez" >/dev/null || { cat "$DIR/backend.log"; die "the backend did not come up"; }
TOKEN=$(curl -sf -X POST -H 'content-type: application/json' \
  -d "{\"name\":\"admin\",\"password\":\"$PASSWORD\"}" "$BASE/api/auth/login" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')

say "schemathesis against $BASE/api/openapi.json"
# Run from the scratch dir: schemathesis keeps a cache in its working directory.
(cd "$DIR" && "$ST/bin/schemathesis" run "$BASE/api/openapi.json" \
  -H "Authorization: Bearer $TOKEN" \
  --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
  --max-examples "${KANADE_FUZZ_EXAMPLES:-10}" --seed "${KANADE_FUZZ_SEED:-20261203}" \
  --exclude-path-regex '^/api/(stream|executions/.*/tail)' --exclude-path '/api/agents/{pc}/logs') ||
  { tail -50 "$DIR/backend.log"; die "the API fuzzing found failures (above)"; }
