"""An embedded (SQLite) backend that only ingests never loads the heavy optional modules.

The PostgreSQL driver (~20 MiB resident) is for the shared store only, and scipy.special
(~26 MiB) for the model-quality maths (MAE interval, drift): B7's memory bound counts on
neither being loaded by a backend that ingests and evaluates alerts with nobody reading
model quality. The check runs in a fresh interpreter, so other tests' imports don't count.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

_PROBE = """
import json, sys, time
from fastapi.testclient import TestClient
from mlpulse.backend.app import create_app
from mlpulse.backend.config import BackendSettings
from tests.backend.backend_testing import metric_request

app = create_app(BackendSettings(data_dir=sys.argv[1], api_token="t"))
with TestClient(app) as client:
    now = time.time()
    body = metric_request(points=[{"value": 3.0, "time_s": now}]).SerializeToString()
    r = client.post("/v1/metrics", content=body,
                    headers={"Content-Type": "application/x-protobuf"})
    health = client.get("/health").json()
    time.sleep(1.5)  # an alert evaluation cycle and a checkpoint run meanwhile
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"psycopg", "psycopg_pool", "scipy"})
print(json.dumps({"status": r.status_code, "health": health.get("status"), "heavy": heavy}))
"""


def test_an_ingesting_sqlite_backend_loads_neither_the_postgres_driver_nor_scipy(
    tmp_path: Path,
) -> None:
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(tmp_path / "data")],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["status"] == 200
    assert seen["heavy"] == []


def test_the_model_quality_maths_still_loads_scipy_when_used() -> None:
    # The lazy import must not break the maths: the interval is Student's t, so with
    # 3 feedbacks it is wider than the normal approximation's (t(0.975, 2) = 4.303).
    from mlpulse.backend.query.signals import mae_interval

    interval = mae_interval(3.0, 3.0, 5.0)  # |e| = 1, 1, ... mean 1, some spread
    assert interval is not None
    mae, lo, hi = interval
    variance = max(5.0 - 3.0 * 3.0 / 3.0, 0.0) / 2.0
    assert mae == 1.0
    assert abs((hi - mae) - 4.302652729911275 * (variance / 3.0) ** 0.5) < 1e-9
    assert lo == max(mae - (hi - mae), 0.0)
