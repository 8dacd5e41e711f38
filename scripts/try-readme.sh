#!/usr/bin/env bash
# The README's "Try it" block, run as written against ./scripts/dev-up.sh: every command must
# succeed, and the stack must start and stop without a warning. Only what a script cannot do is
# changed: the password prompt reads stdin, the endless live stream is cut after 2 s, and the
# dev state and CLI login live in a scratch dir (a developer's own are left alone).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

# The block uses curl and python3 the way a new admin would.
command -v curl >/dev/null || apt_install curl
command -v python3 >/dev/null || apt_install python3
SCRATCH=$(mktemp -d)
LOG="$SCRATCH/dev-up.log"
export KANADE_DEV_DIR="$SCRATCH/dev" XDG_CONFIG_HOME="$SCRATCH/config"
./scripts/dev-up.sh > "$LOG" 2>&1 &
UP=$!
stop() {
  kill -TERM "$UP" 2>/dev/null || true
  wait "$UP" 2>/dev/null || true
}
trap 'stop; rm -rf "$SCRATCH"' EXIT
for _ in $(seq 1 600); do
  grep -q "kanade is running" "$LOG" && break
  kill -0 "$UP" 2>/dev/null || { cat "$LOG"; die "dev-up.sh stopped before the stack was up"; }
  sleep 0.5
done
grep -q "kanade is running" "$LOG" || { cat "$LOG"; die "the stack was not up within 5 minutes"; }

BLOCK="$SCRATCH/try-it.sh"
awk '/^## Try it/ { on = 1 } on && /^```sh/ { code = 1; next } code && /^```/ { exit } code' README.md \
  | sed -e 's|^\$K login --user admin .*|echo kanade-dev-admin \| $K login --user admin --password-stdin|' \
        -e "s|^K=~/.cache/kanade/target/|K=$CARGO_TARGET_DIR/|" \
        -e 's|^curl -sN \([^#]*\)#.*$|timeout 2 curl -sN \1 \|\| [ $? -eq 124 ]|' \
        -e "s|\$PWD/\.kanade-dev|$KANADE_DEV_DIR|g" -e "s|\.kanade-dev|$KANADE_DEV_DIR|g" \
  > "$BLOCK"
[ -s "$BLOCK" ] || die "README.md has no Try it code block"
say "running README's Try it ($(wc -l < "$BLOCK") lines)"
# Its own bash with -e: the first line that fails stops it (an `if` around a subshell would
# silently turn -e off).
bash -e "$BLOCK" > "$SCRATCH/try-it.out" 2>&1 || {
  cat "$SCRATCH/try-it.out"
  die "README's Try it failed at the last command above"
}
stop
if grep -E " (WARN|ERROR) |\[(WRN|ERR)\]" "$LOG"; then
  die "the dev stack logged warnings or errors (above)"
fi
cut -c1-160 "$SCRATCH/try-it.out"
say "README's Try it ran clean"
