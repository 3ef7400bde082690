"""`uvicorn --workers 2`: each worker is its own service.instance.id, totals are exact.

A real uvicorn with two worker processes serves the small service; the real OTLP/HTTP
exporters send to a local receiver. Each request goes on a new connection, so the
kernel spreads them over both workers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from otlp_receiver import attrs, data_points, otlp_receiver, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

HERE = Path(__file__).resolve().parent
REQUESTS = 120


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _instances(requests: list[Any]) -> set[str]:
    """The service.instance.id of every resource that exported."""
    return {
        str(resource["service.instance.id"])
        for request in requests
        for resource, _ in data_points(request, "mlpulse.instrumentation.series")
    }


def test_two_workers_are_two_instances_with_exact_request_totals() -> None:
    port = _free_port()
    with otlp_receiver() as received:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")} | {
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"{received.url}/v1/metrics",
            "OTEL_METRIC_EXPORT_INTERVAL": "500",
            "PYTHONPATH": os.pathsep.join(
                [str(HERE / "apps"), str(HERE.parent.parent / "instrumentation")]
            ),
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "small_service:create_app", "--factory",
             "--workers", "2", "--host", "127.0.0.1", "--port", str(port),
             "--log-level", "warning"],
            env=env,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"

            def up() -> bool:
                try:
                    return httpx.get(f"{base}/predict/1", timeout=1).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_for(up, timeout_s=60)
            for i in range(REQUESTS - 1):  # the probe above was the first request
                with httpx.Client() as client:  # a new connection per request
                    assert client.get(f"{base}/predict/{i}").status_code == 200

            def both_exported() -> bool:
                return len(_instances(received.metric_requests())) == 2

            wait_for(both_exported, timeout_s=30)
        finally:
            server.send_signal(signal.SIGINT)  # workers run their lifespan shutdown: a last export
            server.wait(timeout=60)
        time.sleep(0.2)
        requests = received.metric_requests()

    # The latest cumulative point of each instance (each worker exports on its own).
    latest: dict[str, tuple[int, int]] = {}
    predictions: dict[str, float] = {}
    for request in requests:
        for resource, point in data_points(request, "http.server.request.duration"):
            if attrs(point.attributes).get("http.route") != "/predict/{item}":
                continue
            instance = str(resource["service.instance.id"])
            if point.time_unix_nano >= latest.get(instance, (0, 0))[0]:
                latest[instance] = (point.time_unix_nano, point.count)
        for resource, point in data_points(request, "ml.model.predictions"):
            predictions[str(resource["service.instance.id"])] = point.as_double or point.as_int
    instances = _instances(requests)
    assert len(instances) == 2
    assert all(r["service.name"] == "small-service" for req in requests
               for r, _ in data_points(req, "mlpulse.instrumentation.series"))  # fmt: skip
    assert sum(count for _, count in latest.values()) == REQUESTS
    assert sum(predictions.values()) == REQUESTS
