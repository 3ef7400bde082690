"""`mlpulse demo`: the whole system on one machine, with load and fault scenarios.

The embedded default needs nothing but Python: the backend (SQLite in a data folder),
mlapi exporting metrics straight to the backend's /v1/metrics, and the load generator.
`--with-collector` puts the real OpenTelemetry Collector and Jaeger in between when their
binaries have been built (`bash scripts/build-binaries.sh`): traces go to Jaeger, which
serves the real Jaeger UI from collector-config/jaeger-ui/, and the backend gets
MLPULSE_JAEGER_UI_URL, so the dashboard's exemplars and latency alerts link into it.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from mlpulse import _binaries
from mlpulse._process import ManagedProcess

log = logging.getLogger("mlpulse.demo")

_JAEGER_UI_ASSETS = _binaries.config_path("jaeger-ui")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the demo's options."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument("--backend-port", type=int, default=8003, help="default %(default)s")
    parser.add_argument("--mlapi-port", type=int, default=8002, help="default %(default)s")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("MLPULSE_DATA_DIR", ".data/demo")),
        help="the backend's data folder: SQLite database, token, logs (default %(default)s)",
    )
    parser.add_argument(
        "--rate", type=float, default=8.0, help="load: requests per second (default %(default)s)"
    )
    parser.add_argument("--no-load", action="store_true", help="start without the load generator")
    parser.add_argument(
        "--with-collector",
        action="store_true",
        help="route telemetry through the real OTel Collector and Jaeger (built binaries)",
    )
    parser.add_argument(
        "--export-interval",
        type=float,
        default=5.0,
        help="mlapi's metric export interval in seconds (default %(default)s)",
    )


def _say(message: str) -> None:
    print(message, flush=True)


def _progress(label: str) -> Callable[[float], None]:
    """A callback printing `label ... Ns` about every 2 s while a step waits."""
    last = [0.0]

    def tick(elapsed: float) -> None:
        if elapsed - last[0] >= 2.0:
            last[0] = elapsed
            _say(f"    ... {label} ({elapsed:.0f} s)")

    return tick


def _read_or_make_token(data_dir: Path) -> str:
    token = os.environ.get("MLPULSE_API_TOKEN")
    if token:
        return token
    path = data_dir / "api-token"
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(24)
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token


def run(args: argparse.Namespace) -> int:
    """Start every part, print where to look, and stop everything on Ctrl-C."""
    data_dir: Path = args.data_dir.resolve()
    log_dir = data_dir / "logs"
    data_dir.mkdir(parents=True, exist_ok=True)
    token = _read_or_make_token(data_dir)
    backend_url = f"http://{args.host}:{args.backend_port}"
    mlapi_url = f"http://{args.host}:{args.mlapi_port}"
    python = sys.executable
    common_env = {"MLPULSE_API_TOKEN": token, "PYTHONUNBUFFERED": "1"}

    procs: list[ManagedProcess] = []
    stop_requested = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop_requested.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    started = time.monotonic()
    try:
        _say(f"==> mlpulse demo: data in {data_dir}, logs in {log_dir}")
        mlapi_env: dict[str, str] = {
            **common_env,
            "OTEL_SERVICE_NAME": "mlapi",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=demo",
            "OTEL_METRIC_EXPORT_INTERVAL": str(int(args.export_interval * 1000)),
            "MLPULSE_BACKEND_URL": backend_url,
        }
        jaeger_ui = ""
        if args.with_collector:
            jaeger_ui, collector_endpoint = _start_collector_and_jaeger(
                args, data_dir, log_dir, backend_url, procs
            )
            mlapi_env["OTEL_EXPORTER_OTLP_ENDPOINT"] = collector_endpoint
            mlapi_env["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf"

        # Both start at once: mlapi trains its models while the backend opens its store.
        _say(f"==> starting the backend on {backend_url}")
        backend = ManagedProcess(
            "backend",
            [
                python,
                "-m",
                "mlpulse",
                "backend",
                "--host",
                args.host,
                "--port",
                str(args.backend_port),
            ],
            log_dir=log_dir,
            env={
                **common_env,
                "MLPULSE_DATA_DIR": str(data_dir),
                "MLPULSE_MLAPI_URL": mlapi_url,
                **({"MLPULSE_JAEGER_UI_URL": jaeger_ui} if jaeger_ui else {}),
            },
        )
        procs.append(backend)
        backend.start()
        _say(f"==> training the models and starting mlapi on {mlapi_url}")
        mlapi = ManagedProcess(
            "mlapi",
            [python, "-m", "mlpulse", "mlapi", "--host", args.host, "--port", str(args.mlapi_port)],
            log_dir=log_dir,
            env=mlapi_env,
        )
        procs.append(mlapi)
        mlapi.start()
        if not args.no_load:
            # The load generator waits for mlapi's /health itself, so it starts now too.
            _say(f"==> starting the load generator at {args.rate:g} requests/s")
            loadgen = ManagedProcess(
                "loadgen",
                [python, "-m", "mlpulse", "loadgen", "--url", mlapi_url, "--rate", str(args.rate)],
                log_dir=log_dir,
                env=common_env,
            )
            procs.append(loadgen)
            loadgen.start()

        backend.wait_healthy(
            f"{backend_url}/health", timeout_s=60, progress=_progress("backend starting")
        )
        _say("    backend ready")
        mlapi.wait_healthy(
            f"{mlapi_url}/health", timeout_s=120, progress=_progress("training models")
        )
        _say("    mlapi ready (models trained)")

        _banner(backend_url, mlapi_url, jaeger_ui, data_dir, time.monotonic() - started)
        while not stop_requested.wait(0.5):
            for proc in procs:
                code = proc.exit_code()
                if code is not None:
                    _say(f"!!  {proc.name} exited with code {code}; see {proc.log_path}")
                    return 1
        return 0
    except (RuntimeError, TimeoutError) as exc:
        _say(f"!!  {exc}")
        return 1
    finally:
        _stop_all(procs)


def _stop_all(procs: list[ManagedProcess]) -> None:
    """Stop producers first, let the collector's queue drain, then the stores."""
    _say("==> stopping (the backend last, so the final exports land)")
    by_name = {proc.name: proc for proc in procs}
    for name in ("loadgen", "mlapi"):
        if name in by_name:
            by_name[name].stop()
    collector = by_name.get("otelcol")
    # mlapi's last export sits in the collector's batch and queue: hand it to the
    # backend before either stops, or it would wait on disk for the next start.
    if (
        collector is not None
        and collector.exit_code() is None
        and "backend" in by_name
        and not _binaries.wait_collector_drained(timeout_s=15.0)
    ):
        _say("    the collector's queue did not drain; it stays on disk for next time")
    for name in ("otelcol", "backend", "jaeger"):
        if name in by_name:
            by_name[name].stop()
    _say("==> stopped; nothing left running")


def _start_collector_and_jaeger(
    args: argparse.Namespace,
    data_dir: Path,
    log_dir: Path,
    backend_url: str,
    procs: list[ManagedProcess],
) -> tuple[str, str]:
    """Start Jaeger and the collector; return (Jaeger UI URL, collector OTLP/HTTP URL)."""
    binaries = _binaries.find()
    _say("==> starting Jaeger (traces) on http://127.0.0.1:16686")
    jaeger = ManagedProcess(
        "jaeger",
        [str(binaries.jaeger), "--config", str(_binaries.config_path("jaeger.yaml"))],
        log_dir=log_dir,
        # The real Jaeger UI, kept built in collector-config/jaeger-ui/ (its ORIGIN.md).
        env={**_binaries.jaeger_env(), "MLPULSE_JAEGER_UI_ASSETS": str(_JAEGER_UI_ASSETS)},
    )
    procs.append(jaeger)
    jaeger.start()
    jaeger.wait_healthy(_binaries.jaeger_health_url(), timeout_s=60, progress=_progress("jaeger"))

    _say("==> starting the OpenTelemetry Collector on :4317 (gRPC) and :4318 (HTTP)")
    collector = ManagedProcess(
        "otelcol",
        [str(binaries.otelcol), *_binaries.collector_config_args()],
        log_dir=log_dir,
        env=_binaries.collector_env(backend_url=backend_url, queue_dir=data_dir / "otelcol-queue"),
    )
    procs.append(collector)
    collector.start()
    collector.wait_healthy(
        _binaries.collector_health_url(), timeout_s=60, progress=_progress("collector")
    )
    return "http://127.0.0.1:16686", "http://127.0.0.1:4318"


def _command() -> str:
    """How the user runs `mlpulse` from here: `.venv/bin/mlpulse` in a checkout."""
    script = Path(sys.executable).parent / "mlpulse"
    if not script.exists():
        return "mlpulse"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return "mlpulse" if shutil.which("mlpulse") == str(script) else str(script)


def _banner(
    backend_url: str, mlapi_url: str, jaeger_ui: str, data_dir: Path, elapsed: float
) -> None:
    lines = [
        "",
        f"mlpulse is running (started in {elapsed:.1f} s)",
        "",
        f"  Dashboard     {backend_url}/",
        f"  ML API        {mlapi_url}/docs",
        f"  Backend API   {backend_url}/docs",
    ]
    if jaeger_ui:
        lines.append(f"  Jaeger UI     {jaeger_ui}/search?service=mlapi (traces)")
    lines += [
        f"  Admin token   in {data_dir / 'api-token'} (or $MLPULSE_API_TOKEN)",
        "",
        f"  Provoke an alert:   {_command()} scenario error-burst --for 2m",
        "  (also latency-spike, model-drift, cache-flush, cpu-burn; or the dashboard's Admin tab)",
        "",
        "  Ctrl-C stops everything.",
        "",
    ]
    _say("\n".join(lines))
