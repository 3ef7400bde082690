"""Helpers shared by the benchmarks: servers in child processes, statistics, machine facts.

The machine is shared and noisy, so every benchmark interleaves its variants and reports
medians and ratios; these helpers keep that cheap to do.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TOKEN = "bench-token"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class Skip(Exception):
    """A benchmark (or one of its figures) cannot run here; the message says why."""


# ---------------------------------------------------------------- statistics


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100), linear interpolation (numpy's default)."""
    if not values:
        return None
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def iqr(values: Sequence[float]) -> list[float | None]:
    return [percentile(values, 25), percentile(values, 75)]


def rnd(x: float | None, digits: int = 4) -> float | None:
    if x is None:
        return None
    return float(f"{x:.{digits}g}")


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(
    port: int, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout} s")


def wait_http(url: str, timeout: float = 90.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {last}")
        try:
            r = httpx.get(url, timeout=2.0)
            if r.status_code == 200:
                return
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout} s: {last}")


class Child:
    """A server in a child process; `cpu_s()` and `rss()` read it (and its children)."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log: Path | None = None,
        cwd: Path = REPO,
    ) -> None:
        self.argv = list(argv)
        full_env = {**os.environ, **(env or {})}
        full_env.setdefault("PYTHONPATH", str(REPO))
        self.log_path = log
        out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.argv, env=full_env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT
        )
        if log:
            out.close()  # type: ignore[union-attr]
        self.ps = psutil.Process(self.proc.pid)

    def cpu_s(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def rss(self) -> int:
        return int(self.ps.memory_info().rss)

    def log_tail(self, n: int = 2000) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")[-n:]
        return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def backend_child(data_dir: Path, port: int, log: Path | None = None, **env: str) -> Child:
    """Start the backend (uvicorn, one process) on `port` with its data in `data_dir`."""
    # What `mlpulse backend` runs, without the CLI's imports (it pulls in scikit-learn).
    code = (
        "import uvicorn; from mlpulse.backend.app import create_app; "
        f"uvicorn.run(create_app(), host='127.0.0.1', port={port}, log_level='warning')"
    )
    child = Child(
        [PYTHON, "-c", code],
        env={
            "MLPULSE_DATA_DIR": str(data_dir),
            "MLPULSE_API_TOKEN": TOKEN,
            "OTEL_SDK_DISABLED": "true",
            **env,
        },
        log=log,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc=child.proc)
    except Exception:
        tail = child.log_tail()
        child.stop()
        raise RuntimeError(f"backend did not start: {tail}") from None
    return child


# ---------------------------------------------------------------- an OTLP sink


class _SinkHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        n = int(self.headers.get("content-length") or 0)
        self.rfile.read(n)
        sink: Sink = self.server.sink  # type: ignore[attr-defined]
        with sink.lock:
            sink.requests[self.path] = sink.requests.get(self.path, 0) + 1
            sink.bytes += n
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


class Sink:
    """A local OTLP/HTTP endpoint that accepts and discards (the 'real but cheap' exporter
    target): exporters serialise and send for real, the sink answers 200 with an empty
    ExportServiceResponse."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[str, int] = {}
        self.bytes = 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SinkHandler)
        self.server.daemon_threads = True
        self.server.sink = self  # type: ignore[attr-defined]
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- machine and versions


def _cmd_version(argv: Sequence[str]) -> str | None:
    if not shutil.which(argv[0]) and not Path(argv[0]).exists():
        return None
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0].strip() if text else None


def otelcol_path() -> Path:
    from mlpulse._binaries import bin_cache

    return Path(os.environ.get("MLPULSE_OTELCOL_BIN", bin_cache() / "otelcol-mlpulse"))


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions: dict[str, str | None] = {}
    for pkg in (
        "opentelemetry-sdk",
        "opentelemetry-instrumentation-fastapi",
        "fastapi",
        "starlette",
        "uvicorn",
        "protobuf",
        "numpy",
        "playwright",
    ):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    import sqlite3

    versions["sqlite"] = sqlite3.sqlite_version
    versions["python"] = platform.python_version()
    wrk = _cmd_version(["wrk", "--version"])
    versions["wrk"] = " ".join(wrk.split()[:2]) if wrk else None
    chromium = _cmd_version([CHROMIUM, "--version"])
    versions["chromium"] = " ".join(chromium.split()[:2]) if chromium else None
    versions["otelcol"] = _cmd_version([str(otelcol_path()), "--version"])
    commit = _cmd_version(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    load = os.getloadavg()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in load],
        "git_commit": commit,
        "versions": versions,
    }


def dump(path: Path, doc: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")


@contextlib.contextmanager
def timed() -> Iterator[dict[str, float]]:
    box: dict[str, float] = {}
    t0 = time.perf_counter()
    try:
        yield box
    finally:
        box["s"] = time.perf_counter() - t0


def fig(
    figure: str,
    value: float | None,
    unit: str = "",
    *,
    at_most: float | None = None,
    at_least: float | None = None,
    target: str | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """One reported figure; with a target, its ratio (value ÷ target) and whether it is met."""
    out: dict[str, Any] = {"figure": figure, "value": rnd(value, 5), "unit": unit}
    bound = at_most if at_most is not None else at_least
    if bound is not None:
        out["target"] = target or (f"≤ {bound:g}" if at_most is not None else f"≥ {bound:g}")
        if value is not None and bound:
            out["ratio"] = rnd(value / bound, 4)
            out["ok"] = value <= bound if at_most is not None else value >= bound
        else:
            out["ok"] = None
    elif target:
        out["target"] = target
    if note:
        out["note"] = note
    return out
