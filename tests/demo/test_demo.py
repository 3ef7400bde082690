"""The one-command demo, started as a user would: `mlpulse demo` in a subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(predicate, timeout_s: float, interval_s: float = 0.5):
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


def test_demo_serves_live_data_fires_an_alert_and_stops_cleanly(tmp_path: Path) -> None:
    backend_port, mlapi_port = _free_port(), _free_port()
    backend = f"http://127.0.0.1:{backend_port}"
    env = {**os.environ, "MLPULSE_API_TOKEN": "demo-test-token", "PYTHONUNBUFFERED": "1"}
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    started = time.monotonic()
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlpulse",
            "demo",
            "--backend-port",
            str(backend_port),
            "--mlapi-port",
            str(mlapi_port),
            "--data-dir",
            str(tmp_path / "data"),
            "--rate",
            "15",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    children: list[psutil.Process] = []
    try:
        # The dashboard answers within 30 s.
        page = _wait_for(lambda: httpx.get(f"{backend}/", timeout=2), timeout_s=30)
        assert page.status_code == 200
        assert "<html" in page.text.lower()
        assert time.monotonic() - started < 30

        # Live traffic shows in /metrics/current within 15 s of the start.
        def live_requests() -> float:
            current = httpx.get(f"{backend}/metrics/current", timeout=2).json()
            return float(current["api_metrics"]["requests_per_minute"] or 0)

        _wait_for(live_requests, timeout_s=max(1.0, 15 - (time.monotonic() - started)))
        assert time.monotonic() - started <= 15.5

        children = psutil.Process(demo.pid).children(recursive=True)
        assert len(children) >= 3  # backend, mlapi, loadgen

        # The error-burst scenario fires the error-rate alert within `for` + 2 evaluations.
        rules = httpx.get(f"{backend}/alerts/configure", timeout=5).json()["rules"]
        rule = next(r for r in rules if r["signal"] == "error_rate_percent")
        for_s = float(rule["for_s"] if "for_s" in rule else rule["for"])
        eval_interval_s = 5.0
        export_interval_s = 5.0
        scenario = subprocess.run(
            [
                sys.executable,
                "-m",
                "mlpulse",
                "scenario",
                "error-burst",
                "--for",
                "3m",
                "--url",
                f"http://127.0.0.1:{mlapi_port}",
                "--token",
                "demo-test-token",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert scenario.returncode == 0, scenario.stdout + scenario.stderr
        burst_at = time.monotonic()

        def firing() -> bool:
            active = httpx.get(f"{backend}/alerts/active", timeout=2).json()
            alerts = active["alerts"] if isinstance(active, dict) else active
            return any(a["rule"] == rule["name"] and a["state"] == "firing" for a in alerts)

        # The errors reach the backend with the next export; from then on the rule is
        # pending for exactly `for`, and fires at the evaluation after that.
        budget = export_interval_s + for_s + 2 * eval_interval_s
        _wait_for(firing, timeout_s=budget + 5)
        assert time.monotonic() - burst_at <= budget + 1
    finally:
        if not children and demo.poll() is None:
            children = psutil.Process(demo.pid).children(recursive=True)
        demo.send_signal(signal.SIGINT)
        try:
            output, _ = demo.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            demo.kill()
            output, _ = demo.communicate()
    assert demo.returncode == 0, output
    assert "stopped" in output
    # SIGINT leaves no child process behind.
    leftovers = [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert leftovers == [], [p.cmdline() for p in leftovers]
