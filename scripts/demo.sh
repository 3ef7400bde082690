#!/usr/bin/env bash
# The main job: the whole system on this machine (backend, instrumented mlapi, load).
# Arguments go to `mlpulse demo` (e.g. `scripts/demo.sh --with-collector`).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/mlpulse demo "$@"
