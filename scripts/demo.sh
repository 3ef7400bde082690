#!/usr/bin/env bash
# The main job. Until the demo lands, it runs the ML API on :8002.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/mlpulse mlapi "$@"
