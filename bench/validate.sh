#!/usr/bin/env bash
# Benchmark `byom validate` against (a) a bare streaming inflate with the same inflater and
# (b) the guide's Python validate_dda_package. Wall time and peak RSS via /usr/bin/time -v.
# Writes nothing to the repository except under target/bench/.
#
#   bench/validate.sh            # uses target/bench/vgg11.tar.gz, generating it if missing
#   RUNS=3 bench/validate.sh     # repeat each measurement (default 2, best is reported)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
RUNS=${RUNS:-2}
PKG=${PKG:-target/bench/vgg11.tar.gz}
command -v /usr/bin/time >/dev/null || { echo "install GNU time: apt-get install time" >&2; exit 2; }

[ -f "$PKG" ] || "$PY" bench/make_package.py "$(dirname "$PKG")"
T=${CARGO_TARGET_DIR:-target}
[ -n "${SKIP_BUILD:-}" ] || { cargo build --release -p byom-cli -q && cargo build --release -p byom-core --example inflate -q; }

measure() { # label, command...
  local label=$1; shift
  local best_wall= best_rss=
  for _ in $(seq "$RUNS"); do
    /usr/bin/time -v "$@" >/dev/null 2>target/bench/time.txt || true
    local wall rss
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' target/bench/time.txt)
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' target/bench/time.txt)
    if [ -z "$best_wall" ] || awk "BEGIN{exit !($wall < $best_wall)}"; then best_wall=$wall; best_rss=$rss; fi
  done
  printf '%-34s %8.2f s %9.1f MiB\n' "$label" "$best_wall" "$(awk "BEGIN{print $best_rss/1024}")"
}

ls -l "$PKG"
cat /dev/null "$PKG" > /dev/null # warm the page cache
printf '%-34s %10s %13s\n' "what" "wall" "peak RSS"
measure "byom validate"                   $T/release/byom validate --no-progress "$PKG"
measure "bare inflate (zlib-rs)"          $T/release/examples/inflate "$PKG" zlib-rs
measure "bare inflate (miniz_oxide)"      $T/release/examples/inflate "$PKG" miniz
measure "guide validate_dda_package (py)" "$PY" bench/guide_validate.py "$PKG"
