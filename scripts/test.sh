#!/usr/bin/env bash
# THE test command (README, CI): sets up, then checks, builds and tests everything.
#
#   bash scripts/test.sh
#
# Runs from any working directory. Stops at the first failing step and names it. Steps:
# setup -> rustfmt -> clippy -> cargo test -> wasm32 build -> web build -> byom/byom-server
# build -> fixtures (real PyTorch) -> pytest -> browser tests.
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
    "$@" || rc=$?
    if [ "$rc" != 0 ]; then
      FAILED_STEPS+=("$name (exit $rc)")
      printf '\033[31;1m--- step "%s" FAILED (exit %s); going on (BYOM_KEEP_GOING)\033[0m\n' "$name" "$rc"
    fi
  else
    "$@"
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
step "cargo test" cargo test --workspace
step "wasm32 build (core + wasm crate)" \
  cargo build -p byom-core -p byom-wasm --target wasm32-unknown-unknown
if [ -f scripts/build-wasm.sh ]; then
  step "web build (scripts/build-wasm.sh)" bash scripts/build-wasm.sh
fi
# Debug builds: what the Python and browser tests drive (tests find them in target/debug).
step "build byom + byom-server" cargo build -p byom-cli -p byom-server

FIXTURES_DIR="$BYOM_ROOT/tests/out/fixtures"
export BYOM_FIXTURES="$FIXTURES_DIR"
step "fixtures (real PyTorch)" python tests/fixtures/make_packages.py "$FIXTURES_DIR"

run_pytest() {
  # pytest exit 5 means "no tests collected": we do have tests, so that is a failure too.
  # shellcheck disable=SC2086
  python -m pytest tests/ -q -ra ${PYTEST_ARGS:-}
}
step "pytest" run_pytest

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
