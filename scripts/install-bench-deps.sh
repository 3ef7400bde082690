#!/usr/bin/env bash
# Tools the benchmarks need beyond .venv: wrk, the HTTP load generator that drives uvicorn
# from a second process in B1 (bench/instrumentation.py). Chromium (B4, B5) comes from
# scripts/install-system-deps.sh and the collector (B2) from scripts/build-binaries.sh.
# Idempotent: does nothing when wrk is already installed.
set -euo pipefail
if command -v wrk >/dev/null 2>&1; then
    echo "==> wrk: present"
    exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "==> installing wrk"
$SUDO apt-get update -qq || true
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk >/dev/null
echo "==> wrk: $(command -v wrk)"
