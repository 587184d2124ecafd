#!/usr/bin/env bash
# Benchmark `byom validate` against (a) a bare streaming inflate with the same inflater and
# (b) the guide's Python validate_dda_package. Wall time and peak RSS via /usr/bin/time -v.
# Writes nothing to the repository except under target/bench/.
#
#   bench/validate.sh            # uses target/bench/vgg11.tar.gz, generating it if missing
#   RUNS=3 bench/validate.sh     # repeat each measurement (default 2, best is reported)
#   PKG=target/bench/vgg11_compressible.tar.gz bench/validate.sh   # highly compressible weights
#                                  (make it with: bench/make_package.py target/bench compressible)
# Single-core and parallel inflation side by side (`--inflate-threads 0` = all cores), with
# rapidgzip as the reference parallel gunzip when it is on PATH (`pip install rapidgzip`; not a
# test requirement) or $RAPIDGZIP names it.
#   THREADS="2 4 8" bench/validate.sh   # also `--inflate-threads N` and `rapidgzip -P N` for each N,
#                                  with the speed-up over one core (the issue's 4-core goal: >= 3x)
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
  local best_wall= best_rss= best_cpu=
  for _ in $(seq "$RUNS"); do
    /usr/bin/time -v "$@" >/dev/null 2>target/bench/time.txt || true
    local wall rss cpu
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' target/bench/time.txt)
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' target/bench/time.txt)
    # CPU time (user + sys): what the run cost, which other load on the box barely changes.
    cpu=$(awk -F': ' '/User time|System time/ {s+=$2} END {print s}' target/bench/time.txt)
    if [ -z "$best_wall" ] || awk "BEGIN{exit !($wall < $best_wall)}"; then best_wall=$wall; best_rss=$rss; best_cpu=$cpu; fi
  done
  printf '%-34s %8.2f s %8.2f s %9.1f MiB   load %s\n' "$label" "$best_wall" "$best_cpu" \
    "$(awk "BEGIN{print $best_rss/1024}")" "$(cut -d' ' -f1-3 /proc/loadavg)"
  LAST_WALL=$best_wall
}

ls -l "$PKG"
cat /dev/null "$PKG" > /dev/null # warm the page cache
printf '%-34s %10s %10s %13s\n' "what" "wall" "CPU" "peak RSS"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
measure "byom validate --inflate-threads 1" $T/release/byom validate --no-progress --inflate-threads 1 "$PKG"
ONE=$LAST_WALL
for n in ${THREADS:-}; do
  measure "byom validate --inflate-threads $n" $T/release/byom validate --no-progress --inflate-threads "$n" "$PKG"
  echo "  $(awk "BEGIN{printf \"%.2f\", $ONE/$LAST_WALL}")x the one-core run"
done
measure "byom validate (default: all cores)" $T/release/byom validate --no-progress --inflate-threads 0 "$PKG"
BYOM_INFLATE_TRACE=1 $T/release/byom validate --no-progress --inflate-threads 0 "$PKG" 2>&1 >/dev/null | sed 's/^/  /' || true
measure "bare inflate (zlib-rs)"          $T/release/examples/inflate "$PKG" zlib-rs
measure "bare inflate (miniz_oxide)"      $T/release/examples/inflate "$PKG" miniz
measure "guide validate_dda_package (py)" "$PY" bench/guide_validate.py "$PKG"
RG=${RAPIDGZIP:-$(command -v rapidgzip || true)}
if [ -n "$RG" ]; then
  measure "rapidgzip -P 1 (reference)"      "$RG" -d -c -P 1 "$PKG"
  measure "rapidgzip -P $(nproc) (reference)" "$RG" -d -c -P "$(nproc)" "$PKG"
  for n in ${THREADS:-}; do measure "rapidgzip -P $n (reference)" "$RG" -d -c -P "$n" "$PKG"; done
else
  echo "rapidgzip not found: pip install rapidgzip (or set RAPIDGZIP) for the parallel reference"
fi
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
