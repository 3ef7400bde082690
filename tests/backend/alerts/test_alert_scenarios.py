"""Each seed rule fires on a scenario exported with the real OTel SDK (MeterProvider +
OTLP/HTTP exporter → /v1/metrics under uvicorn) and resolves when the scenario ends.

The seed rules keep their signal, comparison, threshold, clear threshold, minimum sample
count and grouping; only their timing is shortened (``for`` 0, a 10 s window — the finest
stored resolution) so the test runs in seconds. ``for`` and ``keep_firing_for`` timing is
covered by test_alert_timing.py with an injected clock. The no-data rules (a producer
silent for 2 minutes) are left out here: test_no_data_alerts.py covers them.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import pytest
from backend_testing import meter_provider

from mlpulse.backend.alerts.engine import AlertEngine
from mlpulse.backend.alerts.rules import read_rules_file

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MODEL = {"ml.model.name": "result", "ml.model.version": "3"}
BUCKET_S = 10  # the finest stored resolution
NO_DATA_SIGNALS = ("report_age_s", "model_report_age_s")
REFERENCE = np.random.default_rng(1).lognormal(3.0, 0.4, 2000)


class Mlapi:
    """The instruments of docs/contracts.md, as the instrumentation defines them."""

    def __init__(self, meter: Any) -> None:
        self.duration = meter.create_histogram("http.server.request.duration", unit="s")
        self.feedback = meter.create_counter("ml.model.feedback")
        self.err_abs = meter.create_counter("ml.model.error.absolute")
        self.err_sq = meter.create_counter("ml.model.error.squared")
        self.actual = meter.create_up_down_counter("ml.model.actual")
        self.actual_sq = meter.create_counter("ml.model.actual.squared")
        self.baseline = meter.create_gauge("ml.model.baseline.mae")
        self.predictions = meter.create_counter("ml.model.predictions")
        self.values = meter.create_histogram("ml.model.prediction.value")
        self.reference = meter.create_histogram("ml.model.reference.prediction.value")
        self.lookups = meter.create_counter("ml.cache.lookups")
        self.cpu = meter.create_gauge("system.cpu.utilization", unit="1")
        self.memory = meter.create_gauge("system.memory.utilization", unit="1")
        self.disk = meter.create_gauge("system.filesystem.utilization", unit="1")

    def requests(self, ok: int, failed: int, seconds: float) -> None:
        for status, n in ((200, ok), (500, failed)):
            attrs: dict[str, Any] = {
                "http.request.method": "POST",
                "http.route": "/predict",
                "http.response.status_code": status,
            }
            if status >= 500:
                attrs["error.type"] = "500"
            for _ in range(n):
                self.duration.record(seconds, attrs)

    def feedbacks(self, n: int, abs_error: float, actual: float = 100.0) -> None:
        for _ in range(n):
            self.feedback.add(1, MODEL)
            self.err_abs.add(abs_error, MODEL)
            self.err_sq.add(abs_error**2, MODEL)
            self.actual.add(actual, MODEL)
            self.actual_sq.add(actual**2, MODEL)
        self.baseline.set(4.0, MODEL)

    def predict(self, values: np.ndarray) -> None:
        self.predictions.add(len(values), {**MODEL, "ml.prediction.cache_hit": False})
        for v in values.tolist():
            self.values.record(v, MODEL)

    def publish_reference(self) -> None:
        for v in REFERENCE.tolist():
            self.reference.record(v, MODEL)

    def cache(self, hits: int, misses: int) -> None:
        self.lookups.add(hits, {"ml.cache.result": "hit", "ml.model.name": "result"})
        self.lookups.add(misses, {"ml.cache.result": "miss", "ml.model.name": "result"})

    def system(self, cpu: float, memory: float, disk: float) -> None:
        self.cpu.set(cpu)
        self.memory.set(memory)
        self.disk.set(disk, {"system.filesystem.mountpoint": "/"})


def _states(engine: AlertEngine) -> dict[str, tuple[str, dict[str, str], float | None]]:
    return {i.rule: (str(i.state), i.labels, i.value) for i in engine.instances()}


@pytest.mark.slow
def test_each_seed_rule_fires_on_its_scenario_and_resolves_when_it_ends(alert_backend):
    backend = alert_backend()
    _, seed = read_rules_file(None)
    rules = [
        r.model_copy(update={"for_": 0.0, "keep_firing_for": 0.0, "window": float(BUCKET_S)})
        for r in seed.rules
        if r.signal not in NO_DATA_SIGNALS
    ]
    body = {
        "replace": True,
        "channels": [c.model_dump(mode="json") for c in seed.channels],
        "rules": [r.model_dump(mode="json", by_alias=True) for r in rules],
    }
    resp = backend.client.post("/alerts/configure", json=body, headers=AUTH)
    assert resp.status_code == 200, resp.text
    engine: AlertEngine = backend.app.state.alerts
    names = {r.signal: r.name for r in rules}
    assert len(names) == 8

    provider = meter_provider(backend.url)
    app = Mlapi(provider.get_meter("mlapi"))
    try:
        # The scenario: 10 % errors, slow requests, a degraded and drifting model, a cold
        # cache, a hot host.
        app.requests(ok=90, failed=10, seconds=0.8)
        app.publish_reference()
        app.predict(REFERENCE[:300] * 1.6)  # predictions 60 % higher than at training
        # MAE 6 against a baseline of 4: +50 %, with no spread, so its interval too.
        app.feedbacks(40, abs_error=6.0)
        app.cache(hits=100, misses=900)
        app.system(cpu=0.93, memory=0.91, disk=0.88)
        assert provider.force_flush(10_000)
        bad_at = time.time()
        engine.evaluate_once()
        states = _states(engine)
        assert {rule: s[0] for rule, s in states.items()} == dict.fromkeys(names.values(), "firing")
        assert states[names["error_rate_percent"]][2] == pytest.approx(10.0)
        assert states[names["error_rate_percent"]][1] == {"service": "mlapi"}
        p95 = states[names["p95_latency_ms"]][2]
        assert p95 is not None
        assert 800 * 0.95 < p95 < 800 * 1.05  # within the exponential histogram's error
        assert states[names["mae_degradation_lower_percent"]][2] == pytest.approx(50.0)
        # The seed's model rules alert per model version.
        assert states[names["mae_degradation_lower_percent"]][1] == {
            "model": "result",
            "version": "3",
        }
        psi = states[names["prediction_psi"]][2]
        assert psi is not None and psi > 0.25
        assert states[names["cache_hit_rate_percent"]][2] == pytest.approx(10.0)
        assert states[names["cpu_percent"]][2] == pytest.approx(93.0)
        assert states[names["memory_percent"]][2] == pytest.approx(91.0)
        assert states[names["disk_percent"]][2] == pytest.approx(88.0)
        active = backend.get("/alerts/active")["alerts"]
        assert {a["rule"] for a in active} == set(names.values())

        # The scenario ends. Once the window no longer reaches back into the scenario's
        # bucket, healthy traffic resolves every alert.
        clean_from = (math.floor(bad_at / BUCKET_S) + 2) * BUCKET_S + 0.2
        time.sleep(max(0.0, clean_from - time.time()))
        app.requests(ok=100, failed=0, seconds=0.05)
        app.predict(REFERENCE[300:600])  # back to the training distribution
        app.feedbacks(40, abs_error=3.0)  # MAE 3: 25 % better than the baseline
        app.cache(hits=700, misses=300)
        app.system(cpu=0.2, memory=0.4, disk=0.5)
        assert provider.force_flush(10_000)
        engine.evaluate_once()
    finally:
        provider.shutdown()
    states = _states(engine)
    assert {rule: s[0] for rule, s in states.items()} == dict.fromkeys(names.values(), "resolved")
    assert states[names["error_rate_percent"]][2] == 0.0
    assert states[names["cache_hit_rate_percent"]][2] == pytest.approx(70.0)
    assert states[names["mae_degradation_lower_percent"]][2] == pytest.approx(-25.0)
    psi = states[names["prediction_psi"]][2]
    assert psi is not None and psi < 0.1
    assert states[names["cpu_percent"]][2] == pytest.approx(20.0)
    assert backend.get("/alerts/active")["alerts"] == []

    # The history holds both transitions of every rule with the values behind them, and
    # the seed's file channel received a firing and a resolved notification for each.
    history = backend.get("/alerts/history", limit=100)
    assert history["total"] == 16
    by_rule: dict[str, list[str]] = {}
    for entry in reversed(history["entries"]):
        by_rule.setdefault(entry["rule"], []).append(entry["to"])
        assert entry["value"] is not None
        assert entry["samples"] >= 1
    assert by_rule == {name: ["firing", "resolved"] for name in names.values()}
    assert engine.dispatcher is not None
    assert engine.dispatcher.wait_idle(10)
    lines = (backend.settings.data_dir / "alerts" / "alerts.jsonl").read_text().splitlines()
    assert len(lines) == 16
