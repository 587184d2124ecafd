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

_setup_sha256() { sha256sum "$@" | sha256sum | cut -c1-64; }

# --- system packages --------------------------------------------------------------------
_setup_step "system packages (C/C++ compiler, python venv, chromium, time)"
_byom_missing=()
command -v cc >/dev/null 2>&1 && command -v c++ >/dev/null 2>&1 || _byom_missing+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || _byom_missing+=(pkg-config)
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
if command -v rustup >/dev/null 2>&1; then
  _byom_components="$(rustup component list --installed 2>/dev/null || true)"
  for c in rustfmt clippy; do
    if ! grep -q "^$c" <<<"$_byom_components"; then
      _setup_step "rustup component add $c"
      rustup component add "$c"
    fi
  done
  if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    _setup_step "rustup target add wasm32-unknown-unknown"
    rustup target add wasm32-unknown-unknown
  else
    _setup_skip "wasm32-unknown-unknown target present"
  fi
fi

# --- wasm-bindgen CLI (must equal the crate's version) -------------------------------------
_setup_step "wasm-bindgen CLI $BYOM_WASM_BINDGEN_VERSION"
_byom_wb="$(wasm-bindgen --version 2>/dev/null || true)"
if [ "$_byom_wb" != "wasm-bindgen $BYOM_WASM_BINDGEN_VERSION" ]; then
  _setup_step "cargo install wasm-bindgen-cli --version =$BYOM_WASM_BINDGEN_VERSION (was: '${_byom_wb:-none}')"
  cargo install wasm-bindgen-cli --version "=$BYOM_WASM_BINDGEN_VERSION"
else
  _setup_skip "$_byom_wb present"
fi

# --- Python venv: torch (libtorch for tch), torchvision, test tools --------------------------
_setup_step "python venv .venv (tests/requirements.txt)"
_byom_venv="$BYOM_ROOT/.venv"
_byom_stamp="$_byom_venv/.byom-requirements.sha256"
_byom_req_hash="$(_setup_sha256 "$BYOM_ROOT/tests/requirements.txt")"
if [ ! -x "$_byom_venv/bin/python" ]; then
  _setup_step "python3 -m venv .venv"
  python3 -m venv "$_byom_venv"
fi
if [ "$(cat "$_byom_stamp" 2>/dev/null || true)" != "$_byom_req_hash" ]; then
  _setup_step "pip install -r tests/requirements.txt (torch is large: several minutes cold)"
  "$_byom_venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  "$_byom_venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off \
    -r "$BYOM_ROOT/tests/requirements.txt"
  echo "$_byom_req_hash" >"$_byom_stamp"
else
  _setup_skip "requirements unchanged (stamp $(cut -c1-12 "$_byom_stamp"))"
fi

# --- browser test dependencies (tests/browser is the web engineer's) -------------------------
if [ -f "$BYOM_ROOT/tests/browser/package.json" ]; then
  _setup_step "npm dependencies in tests/browser (playwright-core, binaryen wasm-opt)"
  _byom_nm="$BYOM_ROOT/tests/browser/node_modules"
  _byom_npm_hash="$(cd "$BYOM_ROOT/tests/browser" && _setup_sha256 package.json $(ls package-lock.json 2>/dev/null))"
  if [ "$(cat "$_byom_nm/.byom-stamp" 2>/dev/null || true)" != "$_byom_npm_hash" ]; then
    if [ -f "$BYOM_ROOT/tests/browser/package-lock.json" ]; then
      (cd "$BYOM_ROOT/tests/browser" && npm ci --no-audit --no-fund)
    else
      (cd "$BYOM_ROOT/tests/browser" && npm install --no-audit --no-fund)
    fi
    mkdir -p "$_byom_nm"
    # Hash again: `npm install` may have written a lock file.
    (cd "$BYOM_ROOT/tests/browser" && _setup_sha256 package.json $(ls package-lock.json 2>/dev/null)) >"$_byom_nm/.byom-stamp"
  else
    _setup_skip "node_modules up to date"
  fi
fi

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
