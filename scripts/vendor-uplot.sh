#!/usr/bin/env bash
# Refresh the vendored uPlot (dashboards/vendor/uplot/) from its npm package at a pinned
# version. The page has no build step, so the ES module build is copied as is, with its
# stylesheet and license. Bump UPLOT_VERSION, run this script, commit the result.
set -euo pipefail
cd "$(dirname "$0")/.."

UPLOT_VERSION=${UPLOT_VERSION:-1.6.32}
dest=dashboards/vendor/uplot

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "==> npm pack uplot@$UPLOT_VERSION"
(cd "$tmp" && npm pack --silent "uplot@$UPLOT_VERSION" >/dev/null)
tar -xzf "$tmp"/uplot-"$UPLOT_VERSION".tgz -C "$tmp"

mkdir -p "$dest"
cp "$tmp/package/dist/uPlot.esm.js" "$dest/uPlot.esm.js"
cp "$tmp/package/dist/uPlot.min.css" "$dest/uPlot.min.css"
cp "$tmp/package/LICENSE" "$dest/LICENSE"
echo "$UPLOT_VERSION" > "$dest/VERSION"
echo "==> uPlot $UPLOT_VERSION in $dest"
