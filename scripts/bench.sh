#!/usr/bin/env bash
# Every benchmark, one command: builds release binaries, runs the fleet scenarios (nats-server +
# backend + simulated agents), the projector ingest bench and the real agent bench, and writes
# BENCHMARKS.md with the machine description. Takes ~15 minutes at 10,000 agents on 2 cores.
#   KANADE_BENCH_AGENTS (10000), KANADE_BENCH_SIZES (1000,5000,10000), KANADE_BENCH_REPEAT (5)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_cargo
ensure_nats_server
AGENTS="${KANADE_BENCH_AGENTS:-10000}"
SIZES="${KANADE_BENCH_SIZES:-1000,5000,10000}"
REPEAT="${KANADE_BENCH_REPEAT:-5}"
OUT="$CARGO_TARGET_DIR/bench"
mkdir -p "$OUT"

say "building release binaries"
cargo build --release --locked -p kanade-backend -p kanade-sim -p kanade-agent -p kanade

say "fleet scenarios with $AGENTS simulated agents"
"$CARGO_TARGET_DIR/release/kanade-bench" --agents "$AGENTS" --sizes "$SIZES" --repeat "$REPEAT" --out "$OUT/fleet.md" \
  || say "the fleet run ended early; BENCHMARKS.md keeps what it measured"

say "projector ingest"
cargo bench --locked -p kanade-backend --bench ingest > "$OUT/ingest.md"

say "the real kanade-agent binary"
cargo bench --locked -p kanade-agent --bench agent > "$OUT/agent.md"

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
mem=$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
{
  echo "# kanade benchmarks"
  echo
  echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores ($cpu), $mem RAM, $(uname -sr),"
  echo "nats-server $(nats_version "$KANADE_NATS_SERVER"), kanade $(git describe --always --dirty 2>/dev/null || echo unknown)."
  echo "nats-server, the backend and the simulator share the same cores. Reproduce with:"
  echo
  echo '```sh'
  echo "KANADE_BENCH_AGENTS=$AGENTS KANADE_BENCH_SIZES=$SIZES KANADE_BENCH_REPEAT=$REPEAT ./scripts/bench.sh"
  echo '```'
  echo
  echo "## Fleet (simulated agents)"
  echo
  cat "$OUT/fleet.md"
  echo
  echo "## 2. Result ingest (RESULTS projector vs raw SQLite batch insert, same run)"
  echo
  cat "$OUT/ingest.md"
  echo
  echo "## 6. The real kanade-agent binary (idle 60 s; \`kanade run\`-style round trips)"
  echo
  cat "$OUT/agent.md"
} > BENCHMARKS.md
say "wrote BENCHMARKS.md"
