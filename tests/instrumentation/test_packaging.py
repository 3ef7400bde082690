"""The instrumentation installs alone (OpenTelemetry + psutil) into a fresh virtualenv,
instruments a small FastAPI app there and exports to a local OTLP receiver; and its test
suite passes against the oldest and the newest opentelemetry-sdk of its range."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import venvs
from otlp_receiver import attrs, data_points, otlp_receiver

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

HERE = Path(__file__).resolve().parent

_SCRIPT = """
import asyncio, importlib.util, sys
for name in ("sklearn", "numpy", "backend", "mlapi", "mlpulse"):
    assert importlib.util.find_spec(name) is None, name
from small_service import create_app
from mlpulse_instrumentation import get_telemetry

app = create_app()

async def call(path):
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "headers": [],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    sent = []
    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}
    async def send(message):
        sent.append(message)
    await app(scope, receive, send)
    return sent[0]["status"]

async def main():
    statuses = [await call(f"/predict/{i}") for i in range(7)]
    assert statuses == [200] * 7, statuses

asyncio.run(main())
get_telemetry(app).shutdown()
print("ok")
"""


def test_the_distribution_installs_alone_and_exports_over_otlp(tmp_path: Path) -> None:
    python = venvs.create(tmp_path / "venv")
    # The user's service brings FastAPI; the distribution brings the rest.
    venvs.pip_install(python, [str(venvs.DISTRIBUTION), "fastapi"])
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format", "json"],
        capture_output=True, text=True, check=True, env=venvs.pip_env(),
    )  # fmt: skip
    installed = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert "mlpulse-instrumentation" in installed
    assert not installed & {"scikit-learn", "numpy", "mlpulse", "scipy", "grpcio"}

    work = tmp_path / "service"
    work.mkdir()
    shutil.copy(HERE / "apps" / "small_service.py", work)
    (work / "run.py").write_text(_SCRIPT)
    with otlp_receiver() as received:
        env = venvs.pip_env() | {
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"{received.url}/v1/metrics",
            "PYTHONSAFEPATH": "1",  # not the checkout: only what the venv installed
            "PYTHONPATH": str(work),
        }
        result = subprocess.run(
            [str(python), "run.py"], cwd=work, capture_output=True, text=True, env=env, timeout=120
        )
        assert result.returncode == 0, result.stdout + result.stderr
        requests = received.metric_requests()
    durations = [
        (resource, point)
        for request in requests
        for resource, point in data_points(request, "http.server.request.duration")
    ]
    (resource, point), *_ = durations
    assert resource["service.name"] == "small-service"
    assert attrs(point.attributes)["http.route"] == "/predict/{item}"
    assert point.count == 7
    (prediction,) = [p for r in requests for _, p in data_points(r, "ml.model.predictions")]
    assert prediction.as_int == 7 or prediction.as_double == 7


# The two ends of the supported range.
SDK_RANGE = {"oldest": "1.40.0", "newest": "1.45.2"}


@pytest.mark.parametrize("end", sorted(SDK_RANGE))
def test_instrumentation_tests_pass_at_both_ends_of_the_sdk_range(end: str) -> None:
    if os.environ.get("MLPULSE_SDK_RANGE_RUN"):
        pytest.skip("already inside a range run")
    sdk = SDK_RANGE[end]
    python = venvs.cached_venv(
        f"sdk-{sdk}",
        [
            f"opentelemetry-api=={sdk}",
            f"opentelemetry-sdk=={sdk}",
            f"opentelemetry-exporter-otlp-proto-http=={sdk}",
            f"opentelemetry-exporter-otlp-proto-grpc=={sdk}",  # the [grpc] extra
            # what the tests themselves use
            "pytest>=8,<10", "pytest-timeout>=2.3,<3", "fastapi>=0.115,<1", "httpx>=0.27,<1",
            "numpy>=2,<3", "uvicorn>=0.30,<1",
        ],
    )  # fmt: skip
    probe = "from importlib.metadata import version; print(version('opentelemetry-sdk'))"
    version = subprocess.run(
        [str(python), "-c", probe],
        capture_output=True, text=True, check=True, env=venvs.pip_env(),
    ).stdout.strip()  # fmt: skip
    assert version == sdk
    result = subprocess.run(
        [str(python), "-m", "pytest", "tests/instrumentation", "-q", "-p", "no:cacheprovider",
         "-m", "not slow", "-x"],
        cwd=venvs.REPO, capture_output=True, text=True, timeout=600,
        env=venvs.pip_env() | {"MLPULSE_SDK_RANGE_RUN": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout
