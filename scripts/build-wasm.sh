#!/usr/bin/env bash
# Build the browser validator: byom-wasm → web/pkg/ (ES module + .wasm + TypeScript typings),
# twice from the same source: web/pkg/ with WebAssembly SIMD128 (zlib-rs copies its window and
# memchr scans the .pt 16 bytes at a time) and web/pkg/nosimd/ without, for engines that lack
# SIMD. web/wasm.js picks one at load time by feature detection; only that one is downloaded.
#
#   scripts/build-wasm.sh            # cargo (profile "wasm": opt-level s, fat LTO) + wasm-bindgen
#   BYOM_WASM_OPT=0 scripts/...      # skip wasm-opt even if it is available
#   BYOM_WASM_NAMES=1 scripts/...    # keep function names (wasm-opt -g), for a CPU profile
#                                    # (bench/web_validate.mjs --profile)
#
# The SIMD build has its own cargo target dir (target/wasm-simd): RUSTFLAGS differ, and one
# shared dir would rebuild every crate each time the other variant is built.
#
# wasm-opt comes from the npm `binaryen` package installed by tests/browser (npm ci) when present;
# without it the build is still complete, just larger. Idempotent; prints the .wasm size.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

crate_version=$(sed -n 's/^wasm-bindgen = "=\(.*\)"/\1/p' crates/byom-wasm/Cargo.toml)
bindgen="${WASM_BINDGEN:-$(command -v wasm-bindgen || echo "$HOME/.cargo/bin/wasm-bindgen")}"
if [ ! -x "$bindgen" ]; then
  echo "wasm-bindgen CLI not found; install it with: cargo install wasm-bindgen-cli --version $crate_version" >&2
  exit 2
fi
cli_version=$("$bindgen" --version | awk '{print $2}')
if [ "$cli_version" != "$crate_version" ]; then
  echo "wasm-bindgen CLI $cli_version does not match the crate's =$crate_version;" \
       "run: cargo install wasm-bindgen-cli --version $crate_version" >&2
  exit 2
fi

target_dir="${CARGO_TARGET_DIR:-$root/target}"

wasm_opt="${WASM_OPT:-}"
if [ -z "$wasm_opt" ] && [ -x tests/browser/node_modules/.bin/wasm-opt ]; then
  wasm_opt=tests/browser/node_modules/.bin/wasm-opt
fi
if [ -z "$wasm_opt" ]; then wasm_opt=$(command -v wasm-opt || true); fi
[ "${BYOM_WASM_OPT:-1}" != "0" ] || wasm_opt=""
names="${BYOM_WASM_NAMES:-0}"

# build VARIANT CARGO_TARGET_DIR RUSTFLAGS WASM_OPT_FEATURES → $target_dir/wasm-web/VARIANT/
# (bindgen output, optimised). Nothing is redone when that dir was made by these same tools from
# this same module: a second scripts/serve.sh then starts in seconds.
build() {
  local variant=$1 cargo_dir=$2 rustflags=$3 features=$4
  CARGO_TARGET_DIR="$cargo_dir" CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="$rustflags" \
    cargo build -p byom-wasm --target wasm32-unknown-unknown --profile wasm
  local raw="$cargo_dir/wasm32-unknown-unknown/wasm/byom_wasm.wasm"
  local dir="$target_dir/wasm-web/$variant"
  local out="$dir/byom_wasm_bg.wasm" stamp="$dir.stamp"
  local want
  want="$(sha256sum "$raw" | cut -c1-64) bindgen=$cli_version opt=${wasm_opt:+$("$wasm_opt" --version 2>/dev/null | head -n 1)} names=$names"
  if [ -f "$out" ] && [ -f "$dir/byom_wasm.js" ] && [ -f "$stamp" ] &&
    [ "$(head -n 1 "$stamp")" = "$want" ] && [ "$(sed -n 2p "$stamp")" = "$(sha256sum "$out" | cut -c1-64)" ]; then
    echo "$variant: up to date ($(stat -c %s "$out") bytes): nothing to rebuild"
    return
  fi
  rm -rf "$stamp" "$dir"
  "$bindgen" --target web --typescript --out-dir "$dir" "$raw"
  local before after
  before=$(stat -c %s "$out")
  if [ -n "$wasm_opt" ]; then
    # -O3 rather than -Oz: the validator is throughput-bound (inflate), and the size gain of -Oz
    # is small next to the speed it costs. The feature flags match what rustc emits by default
    # (plus SIMD for the SIMD build).
    # shellcheck disable=SC2086
    "$wasm_opt" -O3 $([ "$names" = 1 ] && echo -g) --enable-bulk-memory --enable-nontrapping-float-to-int \
      --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue $features \
      "$out" -o "$out.opt"
    mv "$out.opt" "$out"
    after=$(stat -c %s "$out")
    echo "$variant: wasm-opt: $before → $after bytes"
  else
    echo "wasm-opt not found (npm i in tests/browser provides it); keeping the unoptimised module"
  fi
  printf '%s\n%s\n' "$want" "$(sha256sum "$out" | cut -c1-64)" >"$stamp"
}

# The two variants side by side: each ends in a long single-threaded step (fat LTO with one
# codegen unit, then wasm-opt), so one after the other leaves a core idle for most of the build.
# Each writes its own log, printed whole when both are done.
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
build simd "$target_dir/wasm-simd" "-C target-feature=+simd128" "--enable-simd" >"$logs/simd" 2>&1 &
simd_pid=$!
build nosimd "$target_dir" "" "" >"$logs/nosimd" 2>&1 &
nosimd_pid=$!
failed=0
wait "$simd_pid" || failed=1
wait "$nosimd_pid" || failed=1
for variant in simd nosimd; do
  echo "--- $variant build:"
  cat "$logs/$variant"
done
[ "$failed" = 0 ] || { echo "a wasm build failed (see above)" >&2; exit 1; }

# web/pkg = the SIMD build, web/pkg/nosimd = the plain one (assembled afresh: a copy of ~2 MB).
rm -rf web/pkg.new
cp -r "$target_dir/wasm-web/simd" web/pkg.new
cp -r "$target_dir/wasm-web/nosimd" web/pkg.new/nosimd
rm -rf web/pkg
mv web/pkg.new web/pkg
for variant in simd nosimd; do
  f=web/pkg/byom_wasm_bg.wasm
  [ "$variant" = simd ] || f=web/pkg/nosimd/byom_wasm_bg.wasm
  echo "$f ($variant): $(stat -c %s "$f") bytes ($(gzip -9 -c "$f" | wc -c) gzipped)"
done
