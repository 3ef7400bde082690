#!/usr/bin/env bash
# Run lint, types and every test. Assumes scripts/bootstrap.sh ran (make test does it).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "==> ruff"
.venv/bin/ruff check .
echo "==> mypy"
.venv/bin/mypy
echo "==> pytest"
.venv/bin/pytest "$@"
