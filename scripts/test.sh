#!/usr/bin/env bash
# The full gate, exactly what CI runs: fmt check, clippy, the Windows check of agent + shared,
# and the whole test suite against a real nats-server (and the dashboard in headless Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_cargo
ensure_nats_server
ensure_windows_target
ensure_chromium
say "nats-server: $KANADE_NATS_SERVER ($(nats_version "$KANADE_NATS_SERVER")); target dir: $CARGO_TARGET_DIR"

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "cargo check for x86_64-pc-windows-gnu (agent + shared)"
cargo check --locked --target x86_64-pc-windows-gnu -p kanade-agent -p kanade-shared

say "cargo test --workspace"
cargo test --workspace --locked
