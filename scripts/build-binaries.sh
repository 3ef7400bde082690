#!/usr/bin/env bash
# Build the two Go programs mlpulse's pipeline tests and local runs use:
#
#   otelcol-mlpulse  the OpenTelemetry Collector, from collector-config/builder-config.yaml
#                    with the OpenTelemetry Collector Builder (ocb)
#   jaeger           Jaeger v2 (module github.com/jaegertracing/jaeger v1.76.0, cmd/jaeger
#                    = Jaeger v2.13.0), from the wrapper module collector-config/jaeger-build/
#   alertmanager     Prometheus Alertmanager v0.28.1 (go install of its cmd/alertmanager;
#                    newer module versions lack the embedded UI assets and fail to build),
#                    used by the tests of the prometheus-alertmanager notification channel
#
# into a cache folder outside git:  ${MLPULSE_BIN_CACHE:-$HOME/.cache/mlpulse/bin}
#
# A build is skipped when its stamp file (<binary>.stamp, a sha256 of the inputs: the
# manifest or the wrapper's go.mod/go.sum, the Go version, GOOS/GOARCH, the builder
# version and this script's recipe version) matches and the binary is there. So the script
# is idempotent and cheap to call before every test run. The Go module and build caches
# are used as usual, so a rebuild after a version bump only compiles what changed.
#
# Usage:  bash scripts/build-binaries.sh [--force] [otelcol|jaeger|alertmanager ...]
#   --force                 rebuild even when the stamp matches (also MLPULSE_BUILD_FORCE=1)
#   otelcol | jaeger | alertmanager   build only these (default: all three)
# Prints the paths of the binaries at the end; tests find them there, or via
# MLPULSE_OTELCOL_BIN / MLPULSE_JAEGER_BIN / MLPULSE_ALERTMANAGER_BIN.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${MLPULSE_BIN_CACHE:-${HOME:?HOME is unset: set MLPULSE_BIN_CACHE}/.cache/mlpulse/bin}"
CONFIG_DIR="${ROOT}/collector-config"
MANIFEST="${CONFIG_DIR}/builder-config.yaml"
JAEGER_MOD_DIR="${CONFIG_DIR}/jaeger-build"

# Pinned versions. The builder must share the release of the core components listed in
# the manifest (v0.165.0); Jaeger's module version v1.76.0 is the Jaeger v2.13.0 release.
BUILDER_VERSION="v0.165.0"
JAEGER_V2_VERSION="v2.13.0"
ALERTMANAGER_VERSION="v0.28.1"
# Bump when the build commands below change, to invalidate existing stamps.
RECIPE_VERSION="1"

export CGO_ENABLED=0

log() { printf '[build-binaries] %s\n' "$*"; }
die() { printf '[build-binaries] ERROR: %s\n' "$*" >&2; exit 1; }

FORCE="${MLPULSE_BUILD_FORCE:-0}"
TARGETS=()
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    otelcol|jaeger|alertmanager) TARGETS+=("$arg") ;;
    -h|--help) sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $arg (expected --force, otelcol, jaeger, alertmanager)" ;;
  esac
done
[ "${#TARGETS[@]}" -gt 0 ] || TARGETS=(otelcol jaeger alertmanager)

# Go's default install location, for shells whose PATH lacks it.
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export PATH="/usr/local/go/bin:${PATH}"
fi
command -v go >/dev/null 2>&1 || die "go not found on PATH (Go >= 1.24 is needed)"
[ -f "$MANIFEST" ] || die "missing $MANIFEST"
[ -f "${JAEGER_MOD_DIR}/go.mod" ] || die "missing ${JAEGER_MOD_DIR}/go.mod"

mkdir -p "$CACHE"
CACHE="$(cd "$CACHE" && pwd)"

# One build at a time per cache folder (parallel test runs, CI + a developer shell).
if command -v flock >/dev/null 2>&1; then
  exec 9>"${CACHE}/.build.lock"
  if ! flock -n 9; then
    log "another build holds ${CACHE}/.build.lock; waiting"
    flock 9
  fi
fi

GO_VERSION="$(go env GOVERSION)"
GO_PLATFORM="$(go env GOOS)/$(go env GOARCH)"

sha() { sha256sum | cut -d' ' -f1; }

otelcol_hash() {
  {
    echo "recipe=${RECIPE_VERSION} builder=${BUILDER_VERSION} go=${GO_VERSION} platform=${GO_PLATFORM} cgo=${CGO_ENABLED}"
    cat "$MANIFEST"
  } | sha
}

jaeger_hash() {
  {
    echo "recipe=${RECIPE_VERSION} jaeger=${JAEGER_V2_VERSION} go=${GO_VERSION} platform=${GO_PLATFORM} cgo=${CGO_ENABLED}"
    cat "${JAEGER_MOD_DIR}/go.mod" "${JAEGER_MOD_DIR}/go.sum"
  } | sha
}

alertmanager_hash() {
  echo "recipe=${RECIPE_VERSION} alertmanager=${ALERTMANAGER_VERSION} go=${GO_VERSION} platform=${GO_PLATFORM} cgo=${CGO_ENABLED}" | sha
}

# up_to_date NAME HASH: the binary exists and its stamp holds HASH.
up_to_date() {
  local bin="${CACHE}/$1" stamp="${CACHE}/$1.stamp"
  [ "$FORCE" != "1" ] && [ -x "$bin" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$2" ]
}

# install_binary SRC NAME HASH: atomic replace, then the stamp (a crash leaves no stale stamp).
install_binary() {
  local src="$1" name="$2" hash="$3"
  rm -f "${CACHE}/${name}.stamp"
  cp "$src" "${CACHE}/.${name}.tmp"
  chmod 0755 "${CACHE}/.${name}.tmp"
  mv -f "${CACHE}/.${name}.tmp" "${CACHE}/${name}"
  printf '%s\n' "$hash" > "${CACHE}/${name}.stamp"
}

build_otelcol() {
  local hash; hash="$(otelcol_hash)"
  if up_to_date otelcol-mlpulse "$hash"; then
    log "otelcol-mlpulse: up to date (stamp ${hash:0:12}), skipping"
    return 0
  fi
  local start=$SECONDS
  log "otelcol-mlpulse: building with ocb ${BUILDER_VERSION}, ${GO_VERSION} ${GO_PLATFORM}, CGO_ENABLED=0"

  local tools="${CACHE}/tools" builder="${CACHE}/tools/builder-${BUILDER_VERSION}"
  if [ ! -x "$builder" ]; then
    log "otelcol-mlpulse: installing go.opentelemetry.io/collector/cmd/builder@${BUILDER_VERSION}"
    mkdir -p "$tools"
    GOBIN="$tools" go install "go.opentelemetry.io/collector/cmd/builder@${BUILDER_VERSION}"
    mv -f "${tools}/builder" "$builder"
  fi

  # The builder writes its generated sources to dist.output_path, relative to its working
  # directory: keep them in the cache, out of the git tree.
  local work="${CACHE}/work/otelcol"
  mkdir -p "$work"
  (
    cd "$work"
    "$builder" --config "$MANIFEST" > "${work}/builder.log" 2>&1
  ) || { tail -n 40 "${work}/builder.log" >&2; die "otelcol-mlpulse: the builder failed (full log: ${work}/builder.log)"; }

  local out="${work}/otelcol-mlpulse-src/otelcol-mlpulse"
  [ -x "$out" ] || die "otelcol-mlpulse: the builder reported success but ${out} is missing"
  "$out" validate --config "${CONFIG_DIR}/otelcol.yaml" --config "${CONFIG_DIR}/otelcol-extras.yaml" \
    || die "otelcol-mlpulse: the new binary rejects collector-config/otelcol.yaml"
  install_binary "$out" otelcol-mlpulse "$hash"
  log "otelcol-mlpulse: built in $((SECONDS - start))s -> ${CACHE}/otelcol-mlpulse"
}

build_jaeger() {
  local hash; hash="$(jaeger_hash)"
  if up_to_date jaeger "$hash"; then
    log "jaeger: up to date (stamp ${hash:0:12}), skipping"
    return 0
  fi
  local start=$SECONDS
  log "jaeger: building github.com/jaegertracing/jaeger/cmd/jaeger (Jaeger ${JAEGER_V2_VERSION}), ${GO_VERSION} ${GO_PLATFORM}, CGO_ENABLED=0"
  local tmp="${CACHE}/.jaeger.build"
  (
    cd "$JAEGER_MOD_DIR"
    go build -trimpath \
      -ldflags "-s -w -X github.com/jaegertracing/jaeger/internal/version.latestVersion=${JAEGER_V2_VERSION}" \
      -o "$tmp" github.com/jaegertracing/jaeger/cmd/jaeger
  ) || die "jaeger: go build failed"
  install_binary "$tmp" jaeger "$hash"
  rm -f "$tmp"
  log "jaeger: built in $((SECONDS - start))s -> ${CACHE}/jaeger"
}

build_alertmanager() {
  local hash; hash="$(alertmanager_hash)"
  if up_to_date alertmanager "$hash"; then
    log "alertmanager: up to date (stamp ${hash:0:12}), skipping"
    return 0
  fi
  local start=$SECONDS
  log "alertmanager: go install github.com/prometheus/alertmanager/cmd/alertmanager@${ALERTMANAGER_VERSION}, ${GO_VERSION} ${GO_PLATFORM}, CGO_ENABLED=0"
  # go install writes into GOBIN; a private folder keeps a half-written binary out of the cache.
  local gobin="${CACHE}/.alertmanager.build"
  rm -rf "$gobin"
  mkdir -p "$gobin"
  GOBIN="$gobin" go install -trimpath -ldflags "-s -w" \
    "github.com/prometheus/alertmanager/cmd/alertmanager@${ALERTMANAGER_VERSION}" \
    || die "alertmanager: go install failed"
  "${gobin}/alertmanager" --version >/dev/null 2>&1 || die "alertmanager: the new binary does not run"
  install_binary "${gobin}/alertmanager" alertmanager "$hash"
  rm -rf "$gobin"
  log "alertmanager: built in $((SECONDS - start))s -> ${CACHE}/alertmanager"
}

total_start=$SECONDS
for t in "${TARGETS[@]}"; do
  case "$t" in
    otelcol) build_otelcol ;;
    jaeger) build_jaeger ;;
    alertmanager) build_alertmanager ;;
  esac
done
log "done in $((SECONDS - total_start))s; binaries in ${CACHE}"
for t in "${TARGETS[@]}"; do
  case "$t" in
    otelcol) log "  MLPULSE_OTELCOL_BIN=${CACHE}/otelcol-mlpulse" ;;
    jaeger) log "  MLPULSE_JAEGER_BIN=${CACHE}/jaeger" ;;
    alertmanager) log "  MLPULSE_ALERTMANAGER_BIN=${CACHE}/alertmanager" ;;
  esac
done
