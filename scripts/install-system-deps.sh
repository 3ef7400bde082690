#!/usr/bin/env bash
# Debian packages the tests need: Chromium for the browser tests (a browser download
# cannot work here) and PostgreSQL for the scale-out store's tests (a throwaway cluster
# in a temp folder; see mlpulse/_pgcluster.py). Idempotent: installs only what is missing.
set -euo pipefail
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing Debian's ${missing[*]} (a few minutes the first time)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "==> chromium: $(/usr/bin/chromium --version 2>/dev/null || echo present)"
echo "==> postgresql: $(ls -d /usr/lib/postgresql/*/bin | head -1)"
