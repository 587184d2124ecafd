#!/usr/bin/env bash
# THE test command (README, CI): sets up, then checks, builds and tests everything.
#
#   bash scripts/test.sh
#
# Runs from any working directory. Stops at the first failing step and names it. Steps:
# setup -> rustfmt -> clippy -> build (one feature set for all that follows) -> cargo test ->
# wasm32/web build -> fixtures (real PyTorch) -> pytest -> pytest on PostgreSQL -> browser
# tests. Long steps print a progress line every 30 s when the output is not a terminal
# (BYOM_HEARTBEAT_S).
# Environment knobs (local iteration only; CI uses none): BYOM_SKIP_BROWSER=1 skips the Chromium
# tests; PYTEST_ARGS adds pytest arguments (e.g. PYTEST_ARGS="-k validate"); BYOM_KEEP_GOING=1
# runs every step even after a failure and lists the failed ones at the end (exit 1).

set -euo pipefail

BYOM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$BYOM_ROOT"

T0=$SECONDS
STEP_TIMES=()
CURRENT_STEP=""

on_exit() {
  local rc=$?
  if [ "$rc" != 0 ] && [ -n "$CURRENT_STEP" ]; then
    printf '\n\033[31;1mFAILED at step "%s" (exit %s) after %ss total.\033[0m\n' \
      "$CURRENT_STEP" "$rc" "$((SECONDS - T0))" >&2
    printf 'Re-run just that step to iterate; see its output above.\n' >&2
  fi
}
trap on_exit EXIT

# step NAME CMD...: print a header, run, time it; the EXIT trap names the step on failure.
step() {
  local name="$1"
  shift
  CURRENT_STEP="$name"
  local t=$SECONDS
  printf '\n\033[1;34m=== [test] %s\033[0m\n' "$name"
  printf '    $ %s\n' "$*"
  if [ -n "${BYOM_KEEP_GOING:-}" ]; then
    local rc=0
    byom_long "$name" "$@" || rc=$?
    if [ "$rc" != 0 ]; then
      FAILED_STEPS+=("$name (exit $rc)")
      printf '\033[31;1m--- step "%s" FAILED (exit %s); going on (BYOM_KEEP_GOING)\033[0m\n' "$name" "$rc"
    fi
  else
    byom_long "$name" "$@"
  fi
  STEP_TIMES+=("$(printf '%5ss  %s' "$((SECONDS - t))" "$name")")
  CURRENT_STEP=""
}
FAILED_STEPS=()

CURRENT_STEP="setup"
printf '\033[1;34m=== [test] setup\033[0m\n'
t_setup=$SECONDS
# Sourced so that PATH (.venv/bin first), LIBTORCH_USE_PYTORCH and LD_LIBRARY_PATH carry over.
# shellcheck source=setup.sh
source "$BYOM_ROOT/scripts/setup.sh"
STEP_TIMES+=("$(printf '%5ss  %s' "$((SECONDS - t_setup))" setup)")
CURRENT_STEP=""

step "rustfmt" cargo fmt --all --check
step "clippy" cargo clippy --workspace --all-targets -- -D warnings
# One debug build of everything the later steps run, with one feature set: the whole workspace
# with its dev-dependencies, which is what `cargo test --workspace` resolves. Building the
# binaries with `-p byom-cli -p byom-server` (or the compile example with `-p byom-compile`)
# resolves other features for serde, tokio, sqlx, ... and compiles ~40-60 crates again, tch and
# torch-sys's C++ wrapper among them. The Python and browser tests find the binaries in
# target/debug, the compile example through BYOM_COMPILE_BIN.
step "build (workspace: binaries, tests, examples)" \
  cargo build --workspace --bins --tests --examples
export BYOM_COMPILE_BIN="${CARGO_TARGET_DIR:-$BYOM_ROOT/target}/debug/examples/compile"
step "cargo test" cargo test --workspace
if [ -f scripts/build-wasm.sh ]; then
  # Builds byom-core and byom-wasm for wasm32 (profile "wasm"), so no separate debug wasm32 build.
  step "wasm32 + web build (scripts/build-wasm.sh)" bash scripts/build-wasm.sh
else
  step "wasm32 build (core + wasm crate)" \
    cargo build -p byom-core -p byom-wasm --target wasm32-unknown-unknown
fi

FIXTURES_DIR="$BYOM_ROOT/tests/out/fixtures"
export BYOM_FIXTURES="$FIXTURES_DIR"
step "fixtures (real PyTorch)" python tests/fixtures/make_packages.py "$FIXTURES_DIR"

# Two pytest processes (pytest-xdist), each taking whole files (--dist loadfile keeps a module's
# fixtures and test order together): the compile child runs libtorch on one thread and many
# tests wait on a server or a child process, so one process leaves a core idle much of the time.
# BYOM_PYTEST_WORKERS=1 runs them in one process.
PYTEST_WORKERS="${BYOM_PYTEST_WORKERS:-2}"
pytest_parallel() {
  if [ "$PYTEST_WORKERS" -gt 1 ]; then
    printf '%s\n' -n "$PYTEST_WORKERS" --dist loadfile
  fi
}
run_pytest() {
  # pytest exit 5 means "no tests collected": we do have tests, so that is a failure too.
  # --durations: the slowest tests are listed at the end, to keep the 30-minute budget in view.
  # shellcheck disable=SC2086,SC2046
  python -m pytest tests/ -q -ra --durations=15 $(pytest_parallel) ${PYTEST_ARGS:-}
}
step "pytest" run_pytest

# The server API and compile tests once more, each server on a fresh database of a throwaway
# PostgreSQL (tests/pg.py) and a bucket of a throwaway S3 server (tests/s3.py, moto): the
# cluster configuration answers the same. (The cluster's own
# multi-node test, tests/test_server_cluster.py, runs in the step above.)
run_pytest_postgres() {
  # shellcheck disable=SC2046
  BYOM_TEST_CLUSTER=1 BYOM_TEST_STORAGE=s3 python -m pytest tests/test_server_api.py tests/test_server_compile.py -q -ra \
    $(pytest_parallel)
}
step "pytest on PostgreSQL + S3 (server API + compile)" run_pytest_postgres

if [ -d tests/browser ] && [ -z "${BYOM_SKIP_BROWSER:-}" ]; then
  step "browser tests (node --test, headless Chromium)" node --test tests/browser/
fi

trap - EXIT
printf '\nstep times:\n'
printf '%s\n' "${STEP_TIMES[@]}"
if [ "${#FAILED_STEPS[@]}" -gt 0 ]; then
  printf '\n\033[31;1mFAILED steps (%s) after %ss:\033[0m\n' "${#FAILED_STEPS[@]}" "$((SECONDS - T0))" >&2
  printf '  %s\n' "${FAILED_STEPS[@]}" >&2
  exit 1
fi
printf '\n\033[1;32mALL STEPS PASSED\033[0m in %ss\n' "$((SECONDS - T0))"
