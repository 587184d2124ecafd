#!/usr/bin/env bash
# THE serve command (README): builds the portal page and the server, then runs the server.
#
#   bash scripts/serve.sh                          # http://127.0.0.1:8080, data in ./data
#   bash scripts/serve.sh --listen 0.0.0.0:8080    # any `byom-server serve` flag passes through
#
# Defaults: data directory ./data (relative to the repository root), listen 127.0.0.1:8080,
# page from ./web. The first admin token is BYOM_ADMIN_TOKEN when set; otherwise the server
# generates one on first start into DATA_DIR/admin-token and prints that path.

set -euo pipefail

BYOM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$BYOM_ROOT"

# Serving needs Rust, the wasm tools and the venv's libtorch, not Chromium or test tools.
# shellcheck disable=SC2034 # read by setup.sh
BYOM_SETUP=runtime
# shellcheck source=setup.sh
source "$BYOM_ROOT/scripts/setup.sh"

# Each build is incremental: cargo and build-wasm.sh redo nothing when no source changed, so a
# second serve.sh starts the server within seconds.
t_page=$SECONDS
printf '\033[1m==> [serve] building the page (wasm)\033[0m\n'
if [ -f scripts/build-wasm.sh ]; then
  byom_long "serve: page" bash scripts/build-wasm.sh
else
  echo "    scripts/build-wasm.sh not present yet: the page will lack its wasm validator" >&2
fi
printf '    [serve] page ready in %s\n' "$(byom_elapsed $((SECONDS - t_page)))"

# Profile "serve" (Cargo.toml): release without LTO and with cheap tch/torch-sys bindings, so a
# fresh machine compiles it in a fraction of `--release`'s time; binaries in target/serve/.
t_build=$SECONDS
printf '\033[1m==> [serve] cargo build --profile serve -p byom-server -p byom-cli\033[0m\n'
byom_long "serve: build" cargo build --profile serve -p byom-server -p byom-cli
printf '    [serve] server built in %s\n' "$(byom_elapsed $((SECONDS - t_build)))"
BYOM_BIN="${CARGO_TARGET_DIR:-$BYOM_ROOT/target}/serve"

DATA_DIR="${BYOM_DATA_DIR:-$BYOM_ROOT/data}"
LISTEN="${BYOM_LISTEN:-127.0.0.1:8080}"
# Show what will really be used when the caller passes --listen/--data-dir.
prev=""
for a in "$@"; do
  case "$prev" in --listen) LISTEN="$a" ;; --data-dir) DATA_DIR="$a" ;; esac
  case "$a" in --listen=*) LISTEN="${a#--listen=}" ;; --data-dir=*) DATA_DIR="${a#--data-dir=}" ;; esac
  prev="$a"
done
mkdir -p "$DATA_DIR"

printf '\n\033[1;32mbyom server: http://%s/\033[0m\n' "$LISTEN"
printf '  data directory: %s\n' "$DATA_DIR"
if [ -n "${BYOM_ADMIN_TOKEN:-}" ]; then
  printf '  admin token:    the value of BYOM_ADMIN_TOKEN\n'
else
  printf '  admin token:    %s/admin-token (written on first start; the server prints the path)\n' "$DATA_DIR"
fi
printf '  CLI:            %s/byom push model.tar.gz --server http://%s --token <token>\n\n' "$BYOM_BIN" "$LISTEN"

# Defaults only for flags the caller did not give (clap refuses a flag given twice).
has_flag() {
  local flag="$1" a
  shift
  for a in "$@"; do
    case "$a" in "$flag" | "$flag"=*) return 0 ;; esac
  done
  return 1
}
defaults=()
has_flag --data-dir "$@" || defaults+=(--data-dir "$DATA_DIR")
has_flag --listen "$@" || defaults+=(--listen "$LISTEN")
has_flag --web-dir "$@" || defaults+=(--web-dir "$BYOM_ROOT/web")
exec "$BYOM_BIN/byom-server" serve "${defaults[@]}" "$@"
