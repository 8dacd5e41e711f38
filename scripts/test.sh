#!/usr/bin/env bash
# The full gate, exactly what CI runs: fmt check, clippy (Linux and Windows), the Windows build
# of every binary (the wine tests run that agent), and the whole test suite against a real
# nats-server and Postgres (the dashboard in headless Chromium, the Windows agent under wine), then the
# README's Try it block against ./scripts/dev-up.sh, after fuzzing the API against its OpenAPI
# document.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_cargo
ensure_nats_server
ensure_windows_target
ensure_wine
ensure_chromium
ensure_postgres
# The enrolment test pipes the served install.sh from curl into sh, as a PC would.
command -v curl >/dev/null || apt_install curl
say "nats-server: $KANADE_NATS_SERVER ($(nats_version "$KANADE_NATS_SERVER")); target dir: $CARGO_TARGET_DIR"

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "cargo clippy for x86_64-pc-windows-gnu (the Windows-only code)"
cargo clippy --locked --target x86_64-pc-windows-gnu -p kanade-agent -p kanade-shared -p kanade-backend -p kanade \
  --bins --lib -- -D warnings

# Built once here; tests/wine.rs runs this kanade-agent.exe under wine.
say "cargo build for x86_64-pc-windows-gnu (agent, backend, CLI)"
cargo build --locked --target x86_64-pc-windows-gnu -p kanade-agent -p kanade-backend -p kanade --bins

say "cargo test --workspace"
cargo test --workspace --locked

# One suite, two engines: the store's own tests run on both by themselves; the backend's API,
# pipeline, scheduler, cleanup and accounts suites run again with the store on Postgres.
say "the backend's suites again on Postgres (KANADE_TEST_DB=postgres)"
KANADE_TEST_DB=postgres cargo test --locked -p kanade-backend \
  --test api --test auth --test cleanup --test pipeline --test scheduler --test stream --test publish \
  --test telemetry --test compliance --test notifications

# Every route fuzzed against the OpenAPI document (schemathesis, bounded).
say "API fuzzing (scripts/fuzz-api.sh)"
./scripts/fuzz-api.sh

# The README's quick start, pasted as a new admin would, against ./scripts/dev-up.sh.
say "README's Try it against dev-up.sh"
./scripts/try-readme.sh
