#!/usr/bin/env bash
# Installs everything byom's build and tests need, and nothing twice.
#
# Works on a fresh Debian machine (run as root, or with sudo) where only the package registries
# (crates.io, PyPI, npm, Debian apt) are reachable. Every step checks first and skips what is
# already there, so a re-run takes a second or two.
#
#   bash scripts/setup.sh              # everything (build, tests, browser)
#   BYOM_SETUP=runtime bash scripts/setup.sh   # what serving needs: no Chromium, no `time`
#
# On a fresh machine the slow steps (compiling wasm-bindgen-cli, downloading the torch wheels,
# npm) run side by side after the apt packages, each into a log under target/setup-logs/, with a
# progress line every 30 s saying what each is doing (BYOM_HEARTBEAT_S sets the interval). A job
# that fails has its log's end shown; the others finish (their work is kept) and set-up stops.
#
# May also be *sourced* (scripts/test.sh and scripts/serve.sh do): then the exports at the end
# (PATH with .venv/bin first, LIBTORCH_USE_PYTORCH=1, LD_LIBRARY_PATH for libtorch) stay in
# force for the caller. tch's build script finds libtorch by running the venv's python.

# When sourced we must not leave `set -e` games to the caller, but the caller (test.sh) uses
# strict mode anyway; when executed, strict mode applies here.
set -euo pipefail

BYOM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BYOM_SETUP="${BYOM_SETUP:-all}"
# The wasm-bindgen CLI must match the crate version exactly; read it from Cargo.lock.
BYOM_WASM_BINDGEN_VERSION="$(
  awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' \
    "$BYOM_ROOT/Cargo.lock" 2>/dev/null || true
)"
BYOM_WASM_BINDGEN_VERSION="${BYOM_WASM_BINDGEN_VERSION:-0.2.130}"

_setup_step() { printf '\033[1m==> [setup] %s\033[0m\n' "$*"; }
_setup_skip() { printf '    [setup] %s\n' "$*"; }
_setup_die() {
  printf '\033[31m[setup] ERROR: %s\033[0m\n' "$*" >&2
  exit 1
}

# Root runs apt directly; anyone else goes through sudo when it exists.
_setup_apt() {
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || _setup_die "need root (or sudo) to apt-get install $*"
    sudo="sudo"
  fi
  if [ -z "${_BYOM_APT_UPDATED:-}" ]; then
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
    _BYOM_APT_UPDATED=1
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

# Of the contents only (not the paths), so that a checkout moved elsewhere keeps its stamps.
_setup_sha256() { cat "$@" | sha256sum | cut -c1-64; }

# byom_busy PID: what the processes under PID are compiling right now (rustc crate names, C/C++
# files), so that a long build says more than "still running". Empty without `ps`.
byom_busy() {
  command -v ps >/dev/null 2>&1 || return 0
  ps -e -o pid=,ppid=,args= 2>/dev/null | awk -v root="$1" '
    { pid = $1; parent[pid] = $2; $1 = ""; $2 = ""; cmd[pid] = $0 }
    END {
      for (p in cmd) {
        q = p; under = 0
        for (i = 0; i < 64 && q > 1; i++) { if (q == root) { under = 1; break }; q = parent[q] }
        if (!under) continue
        a = cmd[p]; n = ""
        if (match(a, /--crate-name [A-Za-z0-9_]+/)) n = substr(a, RSTART + 13, RLENGTH - 13)
        else if (a ~ /cc1plus|cc1 / && match(a, /[^ \/]+\.(cpp|cc|c) /)) n = substr(a, RSTART, RLENGTH - 1)
        if (n != "" && n != "build_script_build" && !(n in seen)) { seen[n] = 1; out = out (out == "" ? "" : ", ") n }
      }
      print out
    }'
}

# byom_elapsed SECONDS -> "4m05s"
byom_elapsed() { printf '%dm%02ds' "$(($1 / 60))" "$(($1 % 60))"; }

# byom_long LABEL CMD...: runs CMD in the foreground and, when stderr is not a terminal (where
# cargo draws its own progress bar), prints every BYOM_HEARTBEAT_S (30) seconds how long it has
# run and what it is compiling: a cold release build is silent for minutes inside tch otherwise.
byom_long() {
  local label="$1" rc=0 hb="" t0=$SECONDS
  shift
  if [ ! -t 2 ] || [ -n "${BYOM_HEARTBEAT:-}" ]; then
    (
      while sleep "${BYOM_HEARTBEAT_S:-30}"; do
        busy="$(byom_busy "$$")"
        printf '    [%s] %s%s\n' "$label" "$(byom_elapsed $((SECONDS - t0)))" "${busy:+: compiling $busy}"
      done
    ) &
    hb=$!
  fi
  "$@" || rc=$?
  if [ -n "$hb" ]; then
    kill "$hb" 2>/dev/null || true
    wait "$hb" 2>/dev/null || true
  fi
  return "$rc"
}

# --- system packages --------------------------------------------------------------------
_setup_step "system packages (C/C++ compiler, python venv, chromium, time, postgresql)"
_byom_missing=()
command -v cc >/dev/null 2>&1 && command -v c++ >/dev/null 2>&1 || _byom_missing+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || _byom_missing+=(pkg-config)
# ps: the progress lines name what a long build is compiling.
command -v ps >/dev/null 2>&1 || _byom_missing+=(procps)
command -v curl >/dev/null 2>&1 || _byom_missing+=(curl ca-certificates)
command -v python3 >/dev/null 2>&1 || _byom_missing+=(python3)
# Debian splits venv/ensurepip out of python3; a pyenv python has them built in.
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  _byom_missing+=(python3-venv)
fi
if [ "$BYOM_SETUP" = all ]; then
  [ -x /usr/bin/chromium ] || _byom_missing+=(chromium)
  [ -x /usr/bin/chromedriver ] || _byom_missing+=(chromium-driver)
  [ -x /usr/bin/time ] || _byom_missing+=(time)
  # The cluster tests start a throwaway PostgreSQL of their own (tests/pg.py): only the
  # binaries are needed (initdb, postgres); the packaged system cluster is not used.
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || _byom_missing+=(postgresql)
fi
# npm brings the browser tests' driver and binaryen's wasm-opt (scripts/build-wasm.sh uses it),
# so serving needs it too: the page served is then the one the tests checked.
if [ -f "$BYOM_ROOT/tests/browser/package.json" ]; then
  command -v node >/dev/null 2>&1 || _byom_missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || _byom_missing+=(npm)
fi
if [ "${#_byom_missing[@]}" -gt 0 ]; then
  _setup_step "apt-get install ${_byom_missing[*]}"
  _setup_apt "${_byom_missing[@]}"
else
  _setup_skip "all present"
fi

# --- Rust toolchain ---------------------------------------------------------------------
_setup_step "Rust toolchain"
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo >/dev/null 2>&1; then
  if ! command -v rustup >/dev/null 2>&1; then
    # Debian 12 has no rustup package; static.rust-lang.org is where rustup itself lives.
    _setup_step "installing rustup (stable, minimal profile)"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
      sh -s -- -y --profile minimal --default-toolchain stable
  fi
fi
command -v cargo >/dev/null 2>&1 || _setup_die "cargo not found after installing rustup"

# --- the slow steps, side by side ---------------------------------------------------------
# Each job is independent of the others (CPU: compiling wasm-bindgen-cli; network: the torch
# wheels, npm), so on a fresh machine the set-up takes as long as the longest, not the sum.
# A job that has nothing to do prints one "present" line and ends at once.

# rustup components and the wasm target, then the wasm-bindgen CLI (must equal the crate's version).
_setup_job_rust() {
  if command -v rustup >/dev/null 2>&1; then
    local components c
    components="$(rustup component list --installed 2>/dev/null || true)"
    # clippy and rustfmt are for the test command only.
    if [ "$BYOM_SETUP" = all ]; then
      for c in rustfmt clippy; do
        if ! grep -q "^$c" <<<"$components"; then
          _setup_step "rustup component add $c"
          rustup component add "$c"
        fi
      done
    fi
    if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
      _setup_step "rustup target add wasm32-unknown-unknown"
      rustup target add wasm32-unknown-unknown
    else
      _setup_skip "wasm32-unknown-unknown target present"
    fi
  fi
  local wb
  wb="$(wasm-bindgen --version 2>/dev/null || true)"
  if [ "$wb" != "wasm-bindgen $BYOM_WASM_BINDGEN_VERSION" ]; then
    _setup_step "cargo install wasm-bindgen-cli --version =$BYOM_WASM_BINDGEN_VERSION --bin wasm-bindgen (was: '${wb:-none}')"
    # No registry ships a prebuilt CLI, so it is compiled: only the one binary the page build
    # uses, at opt-level 1: 234 CPU-s (2 min 18 s on 2 cores), and its output is byte-identical
    # to an opt-level 3 build's, in the same 0.1 s.
    CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_DEBUG=false \
      CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
      cargo install wasm-bindgen-cli --version "=$BYOM_WASM_BINDGEN_VERSION" --bin wasm-bindgen
  else
    _setup_skip "$wb present"
  fi
}

# Python venv: torch (libtorch for tch), torchvision, timm (the zoo table's pinned versions), test tools.
_setup_job_venv() {
  local venv="$BYOM_ROOT/.venv"
  local stamp="$venv/.byom-requirements.sha256" req_hash
  req_hash="$(_setup_sha256 "$BYOM_ROOT/tests/requirements.txt" "$BYOM_ROOT/tests/requirements-nodeps.txt")"
  if [ ! -x "$venv/bin/python" ]; then
    _setup_step "python3 -m venv .venv"
    python3 -m venv "$venv"
  fi
  if [ "$(cat "$stamp" 2>/dev/null || true)" != "$req_hash" ]; then
    _setup_step "pip install -r tests/requirements.txt (torch with its CUDA libraries: ~2.6 GB to download)"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    "$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off \
      -r "$BYOM_ROOT/tests/requirements.txt"
    # Without their declared dependencies (see the file): what the tests use of them needs only
    # what requirements.txt installed.
    "$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off --no-deps \
      -r "$BYOM_ROOT/tests/requirements-nodeps.txt"
    echo "$req_hash" >"$stamp"
  else
    _setup_skip "python venv: requirements unchanged (stamp $(cut -c1-12 "$stamp"))"
  fi
}

# Browser test dependencies (tests/browser is the web engineer's); binaryen's wasm-opt is also
# what scripts/build-wasm.sh optimises the page's module with, so serving wants it too.
_setup_job_npm() {
  local nm="$BYOM_ROOT/tests/browser/node_modules" npm_hash inputs=(package.json)
  [ ! -f "$BYOM_ROOT/tests/browser/package-lock.json" ] || inputs+=(package-lock.json)
  npm_hash="$(cd "$BYOM_ROOT/tests/browser" && _setup_sha256 "${inputs[@]}")"
  if [ "$(cat "$nm/.byom-stamp" 2>/dev/null || true)" != "$npm_hash" ]; then
    _setup_step "npm dependencies in tests/browser (playwright-core, binaryen wasm-opt)"
    if [ -f "$BYOM_ROOT/tests/browser/package-lock.json" ]; then
      (cd "$BYOM_ROOT/tests/browser" && npm ci --no-audit --no-fund)
    else
      (cd "$BYOM_ROOT/tests/browser" && npm install --no-audit --no-fund)
    fi
    mkdir -p "$nm"
    # Hash again: `npm install` may have written a lock file.
    inputs=(package.json)
    [ ! -f "$BYOM_ROOT/tests/browser/package-lock.json" ] || inputs+=(package-lock.json)
    (cd "$BYOM_ROOT/tests/browser" && _setup_sha256 "${inputs[@]}") >"$nm/.byom-stamp"
  else
    _setup_skip "npm: node_modules up to date"
  fi
}

_setup_step "wasm-bindgen CLI $BYOM_WASM_BINDGEN_VERSION, python venv (torch), npm deps: in parallel"
_byom_logs="$BYOM_ROOT/target/setup-logs"
mkdir -p "$_byom_logs"
_byom_jobs=(rust venv)
[ -f "$BYOM_ROOT/tests/browser/package.json" ] && _byom_jobs+=(npm)
declare -A _byom_pid=()
for _byom_j in "${_byom_jobs[@]}"; do
  # set -e inside each job: the first failing command ends that job with its status.
  (set -euo pipefail; "_setup_job_$_byom_j") >"$_byom_logs/$_byom_j.log" 2>&1 &
  _byom_pid[$_byom_j]=$!
done
_byom_t0=$SECONDS
_byom_failed=""
_byom_beat=$SECONDS
while :; do
  _byom_running=()
  for _byom_j in "${_byom_jobs[@]}"; do
    [ -n "${_byom_pid[$_byom_j]}" ] || continue
    if kill -0 "${_byom_pid[$_byom_j]}" 2>/dev/null; then
      _byom_running+=("$_byom_j")
      continue
    fi
    _byom_rc=0
    wait "${_byom_pid[$_byom_j]}" || _byom_rc=$?
    _byom_pid[$_byom_j]=""
    if [ "$_byom_rc" != 0 ]; then
      printf '\033[31m    [setup] %s failed (exit %s) after %s; the end of its log (%s):\033[0m\n' \
        "$_byom_j" "$_byom_rc" "$(byom_elapsed $((SECONDS - _byom_t0)))" "$_byom_logs/$_byom_j.log" >&2
      tail -n 40 "$_byom_logs/$_byom_j.log" >&2
      _byom_failed+=" $_byom_j"
      # The others go on: what they finish is kept (every step is idempotent).
    elif [ "$(wc -l <"$_byom_logs/$_byom_j.log")" -le 3 ]; then
      cat "$_byom_logs/$_byom_j.log"
    else
      printf '    [setup] %s done in %s (log: %s)\n' "$_byom_j" \
        "$(byom_elapsed $((SECONDS - _byom_t0)))" "$_byom_logs/$_byom_j.log"
    fi
  done
  if [ "${#_byom_running[@]}" -eq 0 ]; then
    [ -z "$_byom_failed" ] || _setup_die "set-up step(s)$_byom_failed failed (see above); fix and run again"
    break
  fi
  if [ $((SECONDS - _byom_beat)) -ge "${BYOM_HEARTBEAT_S:-30}" ]; then
    _byom_beat=$SECONDS
    _byom_line=""
    for _byom_j in "${_byom_running[@]}"; do
      _byom_busy="$(byom_busy "${_byom_pid[$_byom_j]}")"
      _byom_last="$(tail -n 1 "$_byom_logs/$_byom_j.log" 2>/dev/null | tr -d '\r' | cut -c1-70)"
      _byom_line+=" | $_byom_j: ${_byom_busy:+compiling $_byom_busy}"
      [ -n "$_byom_busy" ] || _byom_line+="$_byom_last"
    done
    printf '    [setup] %s%s\n' "$(byom_elapsed $((SECONDS - _byom_t0)))" "$_byom_line" | cut -c1-200
  fi
  # Poll fast at first: on a machine already set up every job ends within a second.
  if [ $((SECONDS - _byom_t0)) -lt 5 ]; then sleep 0.1; else sleep 1; fi
done
_byom_venv="$BYOM_ROOT/.venv"

# --- environment for the build and test steps that follow ------------------------------------
export PATH="$_byom_venv/bin:$HOME/.cargo/bin:$PATH"
export VIRTUAL_ENV="$_byom_venv"
# tch (torch-sys) asks this python for torch's install dir and links that libtorch.
export LIBTORCH_USE_PYTORCH=1
for _byom_lib in "$_byom_venv"/lib/python3*/site-packages/torch/lib; do
  if [ -d "$_byom_lib" ]; then
    export LD_LIBRARY_PATH="$_byom_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
done
export BYOM_ROOT
_setup_step "environment ready: LIBTORCH_USE_PYTORCH=1, python=$(command -v python)"
