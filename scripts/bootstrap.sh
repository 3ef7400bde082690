#!/usr/bin/env bash
# Make a fresh machine ready: a virtualenv in .venv with mlpulse and its dev tools.
# Idempotent: it reinstalls only when pyproject.toml changed since the last run.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "==> creating virtualenv .venv"
    "$PYTHON" -m venv .venv
fi

stamp=.venv/.mlpulse-installed
want=$(cat pyproject.toml instrumentation/pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "==> installing mlpulse and dev dependencies (first run takes a minute)"
    .venv/bin/python -m pip install --quiet --upgrade pip
    # The build backend talks a lot; its output is kept, and shown only if it fails.
    # The instrumentation library is its own distribution (mlpulse_instrumentation).
    if ! .venv/bin/python -m pip install --quiet -e './instrumentation[grpc]' -e '.[dev]' \
        >.venv/install.log 2>&1; then
        cat .venv/install.log
        exit 1
    fi
    echo "$want" > "$stamp"
else
    echo "==> .venv is up to date"
fi
