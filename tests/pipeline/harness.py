"""Harness of the pipeline tests: the real collector and Jaeger binaries, on free ports.

The fixtures are registered by conftest.py; the tests import the helpers from here.

The binaries come from ``scripts/build-binaries.sh`` (cache folder
``${MLPULSE_BIN_CACHE:-~/.cache/mlpulse/bin}``) or from ``MLPULSE_OTELCOL_BIN`` /
``MLPULSE_JAEGER_BIN``. When one is missing the tests fail under CI (``CI`` set) and are
skipped elsewhere, with the command that builds them.

Every process gets its own temporary folder and free ports, logs to a file, and is always
stopped (SIGTERM, then SIGKILL) when its fixture ends; a failure message carries the tail
of its log. The stand-in for the backend (and for a vendor) is a real HTTP server that
decodes OTLP/HTTP protobuf (gzip or not) with opentelemetry-proto and can be taken down
and brought back on the same port, to simulate an outage.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "collector-config"
JAEGER_UI_ASSETS = CONFIG_DIR / "jaeger-ui"  # the real Jaeger UI (see its ORIGIN.md)
BUILD_HINT = "build them with: bash scripts/build-binaries.sh"


# --------------------------------------------------------------------------- binaries


@dataclass(frozen=True)
class Binaries:
    otelcol: Path
    jaeger: Path


def bin_cache() -> Path:
    env = os.environ.get("MLPULSE_BIN_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "mlpulse" / "bin"


def _find_binary(env_name: str, default_name: str) -> tuple[Path | None, str]:
    env = os.environ.get(env_name)
    path = Path(env) if env else bin_cache() / default_name
    where = f"{env_name}={env}" if env else f"default path {path} (override with {env_name})"
    if path.is_file() and os.access(path, os.X_OK):
        return path, where
    return None, where


@pytest.fixture(scope="session")
def binaries() -> Binaries:
    otelcol, otelcol_where = _find_binary("MLPULSE_OTELCOL_BIN", "otelcol-mlpulse")
    jaeger, jaeger_where = _find_binary("MLPULSE_JAEGER_BIN", "jaeger")
    missing = []
    if otelcol is None:
        missing.append(f"collector binary not found at {otelcol_where}")
    if jaeger is None:
        missing.append(f"jaeger binary not found at {jaeger_where}")
    if missing:
        msg = "; ".join(missing) + f"; {BUILD_HINT}"
        if os.environ.get("CI"):
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    assert otelcol is not None and jaeger is not None
    return Binaries(otelcol=otelcol, jaeger=jaeger)


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # loopback only
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
        exc.close()
        return int(exc.code), body


def http_get_json(url: str, timeout: float = 2.0) -> Any:
    status, body = http_get(url, timeout)
    assert status == 200, f"GET {url} -> {status}: {body[:300]!r}"
    return json.loads(body)


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.2
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class Proc:
    """A child process with a log file; stop() is idempotent and always reaps it."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            argv,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def describe(self) -> str:
        return f"{self.name} (pid {self.popen.pid}) log tail:\n{self.log_tail()}"

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> int:
        """SIGKILL (a crash: no flush, no clean shutdown), reap, close the log."""
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=10)
        return self.stop()

    def stop(self, timeout: float = 15.0) -> int:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        if not self._log.closed:
            self._log.close()
        return int(self.popen.returncode)

    def wait_healthy(self, url: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(
                    f"{self.name} exited with {self.popen.returncode} before it was healthy; "
                    + self.describe()
                )
            try:
                status, body = http_get(url, timeout=1.0)
                if status == 200:
                    return
                last = f"{status} {body[:200]!r}"
            except OSError as exc:
                last = repr(exc)
            time.sleep(0.1)
        raise AssertionError(
            f"{self.name} not healthy at {url} after {timeout:.0f}s ({last}); " + self.describe()
        )


# --------------------------------------------------------------------------- OTLP sink


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    message: ExportMetricsServiceRequest | ExportTraceServiceRequest


@dataclass
class OtlpSink:
    """A real OTLP/HTTP receiver (protobuf, gzip) standing in for the backend or a vendor."""

    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self._server is None, "sink already running"
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if self.headers.get("Content-Encoding", "").lower() == "gzip":
                    body = gzip.decompress(body)
                msg: ExportMetricsServiceRequest | ExportTraceServiceRequest
                if self.path == "/v1/metrics":
                    msg, resp = ExportMetricsServiceRequest(), ExportMetricsServiceResponse()
                elif self.path == "/v1/traces":
                    msg, resp = ExportTraceServiceRequest(), ExportTraceServiceResponse()
                else:
                    self.send_error(404)
                    return
                msg.ParseFromString(body)
                with sink._lock:
                    sink.received.append(
                        Received(
                            path=self.path,
                            headers={k.lower(): v for k, v in self.headers.items()},
                            message=msg,
                        )
                    )
                out = resp.SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="otlp-sink", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Take the sink down: the port refuses connections until start() again."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def metric_points(self, service: str, metric: str) -> list[int]:
        """Integer values of every Sum data point of `metric` sent by `service`."""
        return [value for _, value in self.metric_points_timed(service, metric)]

    def metric_points_timed(self, service: str, metric: str) -> list[tuple[int, int]]:
        """(time_unix_nano, value) of every Sum data point, in the order received."""
        values: list[tuple[int, int]] = []
        for rec in self.snapshot():
            if not isinstance(rec.message, ExportMetricsServiceRequest):
                continue
            for rm in rec.message.resource_metrics:
                attrs = {a.key: a.value.string_value for a in rm.resource.attributes}
                if attrs.get("service.name") != service:
                    continue
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        if m.name == metric:
                            values.extend(
                                (int(p.time_unix_nano), int(p.as_int)) for p in m.sum.data_points
                            )
        return values

    def span_names(self, service: str) -> list[str]:
        names: list[str] = []
        for rec in self.snapshot():
            if not isinstance(rec.message, ExportTraceServiceRequest):
                continue
            for rs in rec.message.resource_spans:
                attrs = {a.key: a.value.string_value for a in rs.resource.attributes}
                if attrs.get("service.name") != service:
                    continue
                for ss in rs.scope_spans:
                    names.extend(s.name for s in ss.spans)
        return names


@pytest.fixture
def make_sink() -> Iterator[Callable[[], OtlpSink]]:
    sinks: list[OtlpSink] = []

    def make() -> OtlpSink:
        sink = OtlpSink()
        sink.start()
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink.stop()


# --------------------------------------------------------------------------- Jaeger


@dataclass
class Jaeger:
    """A Jaeger v2 process: OTLP in on `otlp_grpc`, query API and UI at `query_url`."""

    proc: Proc
    otlp_grpc: str
    query_url: str


@pytest.fixture(scope="module")
def jaeger(binaries: Binaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jaeger]:
    workdir = tmp_path_factory.mktemp("jaeger")
    # A port picked free may be taken by another process before Jaeger binds it (the
    # ephemeral range is shared): then start again on new ports, up to three times.
    for attempt in range(3):
        ports = {
            name: free_port()
            for name in ("otlp_grpc", "otlp_http", "query", "query_grpc", "health", "metrics")
        }
        env = {
            **os.environ,
            "MLPULSE_JAEGER_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{ports['otlp_grpc']}",
            "MLPULSE_JAEGER_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{ports['otlp_http']}",
            "MLPULSE_JAEGER_QUERY_ENDPOINT": f"127.0.0.1:{ports['query']}",
            "MLPULSE_JAEGER_QUERY_GRPC_ENDPOINT": f"127.0.0.1:{ports['query_grpc']}",
            "MLPULSE_JAEGER_HEALTH_ENDPOINT": f"127.0.0.1:{ports['health']}",
            "MLPULSE_JAEGER_METRICS_HOST": "127.0.0.1",
            "MLPULSE_JAEGER_METRICS_PORT": str(ports["metrics"]),
            "MLPULSE_JAEGER_UI_ASSETS": str(JAEGER_UI_ASSETS),
        }
        proc = Proc(
            "jaeger",
            [str(binaries.jaeger), "--config", str(CONFIG_DIR / "jaeger.yaml")],
            env,
            workdir,
        )
        try:
            proc.wait_healthy(f"http://127.0.0.1:{ports['health']}/status")
            break
        except AssertionError as exc:
            proc.stop()
            if attempt == 2 or "address already in use" not in str(exc):
                raise
    try:
        yield Jaeger(
            proc=proc,
            otlp_grpc=f"127.0.0.1:{ports['otlp_grpc']}",
            query_url=f"http://127.0.0.1:{ports['query']}",
        )
    finally:
        proc.stop()


# --------------------------------------------------------------------------- collector


@dataclass
class Collector:
    proc: Proc
    otlp_http: str
    otlp_grpc: str
    health_url: str
    storage_dir: Path
    metrics_url: str = ""  # the collector's own Prometheus metrics

    def stop(self) -> int:
        return self.proc.stop()

    def own_metric(self, name: str, **labels: str) -> float:
        """Sum of the collector's own metric `name` over the series matching `labels`
        (`name` with or without the `_total` suffix, which versions add or not)."""
        _, body = http_get(self.metrics_url, timeout=5.0)
        total = 0.0
        for line in body.decode(errors="replace").splitlines():
            if not line.startswith(name) or line.startswith("#"):
                continue
            head, _, value = line.rpartition(" ")
            metric, _, label_text = head.partition("{")
            if metric not in (name, f"{name}_total"):
                continue
            if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
                total += float(value)
        return total


class CollectorFactory:
    """Starts collectors with collector-config/otelcol.yaml (+ extras) on free ports."""

    def __init__(self, binaries: Binaries, tmp_path: Path) -> None:
        self.binaries = binaries
        self.tmp_path = tmp_path
        self.started: list[Collector] = []

    def start(
        self,
        *,
        jaeger_otlp: str,
        backend_endpoint: str,
        storage_dir: Path | None = None,
        extra_configs: tuple[str, ...] = ("otelcol-extras.yaml",),
        extra_env: dict[str, str] | None = None,
    ) -> Collector:
        n = len(self.started)
        storage = storage_dir or (self.tmp_path / f"queue-{n}")
        # A port free_port() found can be taken by another process's outgoing connection
        # before the collector binds it (CI saw "address already in use"): try new ports.
        for attempt in range(3):
            workdir = self.tmp_path / f"collector-{n}" / f"attempt-{attempt}"
            workdir.mkdir(parents=True)
            try:
                return self._start(
                    n, workdir, storage, jaeger_otlp, backend_endpoint, extra_configs, extra_env
                )
            except AssertionError as exc:
                if "address already in use" not in str(exc) or attempt == 2:
                    raise
                self.started.pop().stop()
        raise AssertionError("unreachable")

    def _start(
        self,
        n: int,
        workdir: Path,
        storage: Path,
        jaeger_otlp: str,
        backend_endpoint: str,
        extra_configs: tuple[str, ...],
        extra_env: dict[str, str] | None,
    ) -> Collector:
        ports = {name: free_port() for name in ("grpc", "http", "health", "metrics")}
        env = {
            **os.environ,
            "MLPULSE_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{ports['grpc']}",
            "MLPULSE_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{ports['http']}",
            "MLPULSE_JAEGER_OTLP_ENDPOINT": jaeger_otlp,
            "MLPULSE_BACKEND_OTLP_ENDPOINT": backend_endpoint,
            "MLPULSE_OTELCOL_STORAGE_DIR": str(storage),
            "MLPULSE_OTELCOL_HEALTH_ENDPOINT": f"127.0.0.1:{ports['health']}",
            "MLPULSE_OTELCOL_METRICS_PORT": str(ports["metrics"]),
            # Fast retries so an outage's end is noticed within a second or two.
            "MLPULSE_OTELCOL_RETRY_MAX_INTERVAL": "1s",
            "MLPULSE_OTELCOL_BATCH_TIMEOUT": "200ms",
            **(extra_env or {}),
        }
        argv = [str(self.binaries.otelcol), "--config", str(CONFIG_DIR / "otelcol.yaml")]
        for name in extra_configs:
            argv += ["--config", str(CONFIG_DIR / name)]
        proc = Proc(f"collector-{n}", argv, env, workdir)
        collector = Collector(
            proc=proc,
            otlp_http=f"http://127.0.0.1:{ports['http']}",
            otlp_grpc=f"127.0.0.1:{ports['grpc']}",
            health_url=f"http://127.0.0.1:{ports['health']}/",
            storage_dir=storage,
            metrics_url=f"http://127.0.0.1:{ports['metrics']}/metrics",
        )
        self.started.append(collector)
        proc.wait_healthy(collector.health_url)
        return collector

    def stop_all(self) -> None:
        for c in self.started:
            c.stop()


@pytest.fixture
def collectors(binaries: Binaries, tmp_path: Path) -> Iterator[CollectorFactory]:
    factory = CollectorFactory(binaries, tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()
