#!/usr/bin/env bash
# Build the browser validator: byom-wasm → web/pkg/ (ES module + .wasm + TypeScript typings).
#
#   scripts/build-wasm.sh            # cargo (profile "wasm": opt-level s, fat LTO) + wasm-bindgen
#   BYOM_WASM_OPT=0 scripts/...      # skip wasm-opt even if it is available
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
cargo build -p byom-wasm --target wasm32-unknown-unknown --profile wasm
raw="$target_dir/wasm32-unknown-unknown/wasm/byom_wasm.wasm"

wasm_opt="${WASM_OPT:-}"
if [ -z "$wasm_opt" ] && [ -x tests/browser/node_modules/.bin/wasm-opt ]; then
  wasm_opt=tests/browser/node_modules/.bin/wasm-opt
fi
if [ -z "$wasm_opt" ]; then wasm_opt=$(command -v wasm-opt || true); fi
[ "${BYOM_WASM_OPT:-1}" != "0" ] || wasm_opt=""

# Nothing to redo when web/pkg was made by these same tools from this same module: a second
# scripts/serve.sh then starts in seconds instead of re-running wasm-bindgen and wasm-opt -O3.
stamp="$target_dir/wasm32-unknown-unknown/wasm/web-pkg.stamp"
out=web/pkg/byom_wasm_bg.wasm
want="$(sha256sum "$raw" | cut -c1-64) bindgen=$cli_version opt=${wasm_opt:+$("$wasm_opt" --version 2>/dev/null | head -n 1)}"
if [ -f "$out" ] && [ -f web/pkg/byom_wasm.js ] && [ -f "$stamp" ] &&
  [ "$(head -n 1 "$stamp")" = "$want" ] && [ "$(sed -n 2p "$stamp")" = "$(sha256sum "$out" | cut -c1-64)" ]; then
  echo "web/pkg is up to date ($(stat -c %s "$out") bytes): nothing to rebuild"
  exit 0
fi
rm -f "$stamp"

rm -rf web/pkg
"$bindgen" --target web --typescript --out-dir web/pkg "$raw"
before=$(stat -c %s "$out")

if [ -n "$wasm_opt" ]; then
  # -O3 rather than -Oz: the validator is throughput-bound (inflate), and the size gain of -Oz
  # is small next to the speed it costs. The feature flags match what rustc emits by default.
  "$wasm_opt" -O3 --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
    --enable-mutable-globals --enable-reference-types --enable-multivalue \
    "$out" -o "$out.opt"
  mv "$out.opt" "$out"
  after=$(stat -c %s "$out")
  echo "wasm-opt: $before → $after bytes"
else
  echo "wasm-opt not found (npm i in tests/browser provides it); keeping the unoptimised module"
fi
size=$(stat -c %s "$out")
gz=$(gzip -9 -c "$out" | wc -c)
echo "web/pkg/byom_wasm_bg.wasm: $size bytes ($gz gzipped)"
printf '%s\n%s\n' "$want" "$(sha256sum "$out" | cut -c1-64)" >"$stamp"
