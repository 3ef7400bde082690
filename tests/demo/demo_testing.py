"""Helpers for tests that run `mlpulse demo` as a user would: ports, waiting, the demo."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")
TOKEN = "demo-test-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], T], timeout_s: float, interval_s: float = 0.5) -> T:
    """Call `predicate` until it returns a truthy value; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            last_error = exc
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s} s (last error: {last_error})")


@dataclass
class Demo:
    backend: str
    mlapi: str
    data_dir: Path

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.backend}{path}", params=params, timeout=10)
        response.raise_for_status()
        return response.json()

    def alerts(self) -> list[dict[str, Any]]:
        active = self.get("/alerts/active")
        alerts: list[dict[str, Any]] = active["alerts"] if isinstance(active, dict) else active
        return alerts

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run `mlpulse <args>` against this demo's mlapi, as a user would."""
        return subprocess.run(
            [sys.executable, "-m", "mlpulse", *args, "--url", self.mlapi, "--token", TOKEN],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


@contextmanager
def running_demo(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Demo]:
    """`mlpulse demo` on free ports in `tmp_path`, stopped with Ctrl-C at the end."""
    backend_port, mlapi_port = free_port(), free_port()
    full_env = {**os.environ, "MLPULSE_API_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    data_dir = tmp_path / "data"
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "mlpulse", "demo",
            "--backend-port", str(backend_port), "--mlapi-port", str(mlapi_port),
            "--data-dir", str(data_dir), *args,
        ],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    demo = Demo(f"http://127.0.0.1:{backend_port}", f"http://127.0.0.1:{mlapi_port}", data_dir)
    try:
        wait_for(lambda: httpx.get(f"{demo.mlapi}/health", timeout=2).status_code == 200, 120)
        wait_for(lambda: httpx.get(f"{demo.backend}/health", timeout=2).status_code == 200, 60)
        yield demo
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
