"""Where the Go-built collector, Jaeger and Alertmanager live, and how the demo starts them.

`scripts/build-binaries.sh` builds them into `$MLPULSE_BIN_CACHE` (default
`~/.cache/mlpulse/bin`); the configs in `collector-config/` read their ports and
endpoints from `MLPULSE_*` variables with defaults (see collector-config/README.md).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

_REPO = Path(__file__).resolve().parent.parent
_COLLECTOR_METRICS_PORT = 8888
_CONFIG_DIR = _REPO / "collector-config"


@dataclass(frozen=True)
class Binaries:
    """Paths of the two Go binaries."""

    otelcol: Path
    jaeger: Path


def bin_cache() -> Path:
    """The folder the build script writes binaries to."""
    default = Path.home() / ".cache" / "mlpulse" / "bin"
    return Path(os.environ.get("MLPULSE_BIN_CACHE", default))


def find() -> Binaries:
    """Locate both binaries, or explain how to build them."""
    cache = bin_cache()
    otelcol = Path(os.environ.get("MLPULSE_OTELCOL_BIN", cache / "otelcol-mlpulse"))
    jaeger = Path(os.environ.get("MLPULSE_JAEGER_BIN", cache / "jaeger"))
    missing = [str(p) for p in (otelcol, jaeger) if not p.is_file()]
    if missing:
        raise RuntimeError(
            f"not built: {', '.join(missing)}; run `bash scripts/build-binaries.sh` first"
        )
    return Binaries(otelcol=otelcol, jaeger=jaeger)


def alertmanager() -> Path:
    """Locate the Alertmanager binary (tests of the prometheus-alertmanager channel)."""
    path = Path(os.environ.get("MLPULSE_ALERTMANAGER_BIN", bin_cache() / "alertmanager"))
    if not path.is_file():
        raise RuntimeError(
            f"not built: {path}; run `bash scripts/build-binaries.sh alertmanager` first"
        )
    return path


def config_path(name: str) -> Path:
    """A file in collector-config/."""
    return _CONFIG_DIR / name


def collector_config_args() -> list[str]:
    """The base config, then the extras file loaded last."""
    return [
        "--config",
        str(config_path("otelcol.yaml")),
        "--config",
        str(config_path("otelcol-extras.yaml")),
    ]


def collector_env(*, backend_url: str, queue_dir: Path) -> dict[str, str]:
    """The collector's environment: loopback ports, the backend, the persistent queue."""
    queue_dir.mkdir(parents=True, exist_ok=True)
    return {
        "MLPULSE_OTLP_GRPC_ENDPOINT": "127.0.0.1:4317",
        "MLPULSE_OTLP_HTTP_ENDPOINT": "127.0.0.1:4318",
        "MLPULSE_OTELCOL_HEALTH_ENDPOINT": "127.0.0.1:13133",
        "MLPULSE_JAEGER_OTLP_ENDPOINT": "127.0.0.1:14317",
        "MLPULSE_BACKEND_OTLP_ENDPOINT": backend_url,
        "MLPULSE_OTELCOL_STORAGE_DIR": str(queue_dir),
        "MLPULSE_OTELCOL_METRICS_HOST": "127.0.0.1",
        "MLPULSE_OTELCOL_METRICS_PORT": str(_COLLECTOR_METRICS_PORT),
    }


def jaeger_env() -> dict[str, str]:
    """Jaeger on loopback: OTLP on 14317/14318, UI and query API on 16686."""
    return {
        "MLPULSE_JAEGER_HEALTH_ENDPOINT": "127.0.0.1:13134",
        "MLPULSE_JAEGER_QUERY_ENDPOINT": "127.0.0.1:16686",
        "MLPULSE_JAEGER_QUERY_GRPC_ENDPOINT": "127.0.0.1:16685",
        "MLPULSE_JAEGER_METRICS_HOST": "127.0.0.1",
        "MLPULSE_JAEGER_OTLP_GRPC_ENDPOINT": "127.0.0.1:14317",
        "MLPULSE_JAEGER_OTLP_HTTP_ENDPOINT": "127.0.0.1:14318",
    }


def collector_health_url() -> str:
    return "http://127.0.0.1:13133/"


def jaeger_health_url() -> str:
    return "http://127.0.0.1:13134/status"


def _collector_backlog() -> float | None:
    """Items in the collector's sending queues and in flight, from its own metrics."""
    url = f"http://127.0.0.1:{_COLLECTOR_METRICS_PORT}/metrics"
    try:
        body = httpx.get(url, timeout=2.0).text
    except httpx.HTTPError:
        return None
    total = 0.0
    for line in body.splitlines():
        if line.startswith("otelcol_exporter_queue_size"):
            with contextlib.suppress(ValueError):
                total += float(line.rpartition(" ")[2])
    return total


def wait_collector_drained(timeout_s: float) -> bool:
    """Wait until the collector's queues are empty; False on timeout or no answer."""
    # The batch processor holds data up to its timeout (1 s) before queueing it.
    time.sleep(1.5)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        backlog = _collector_backlog()
        if backlog is None:
            return False
        if backlog == 0:
            return True
        time.sleep(0.25)
    return False
