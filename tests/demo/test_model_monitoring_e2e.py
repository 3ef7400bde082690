"""Model monitoring end to end, on real processes: `mlpulse demo` (backend, mlapi, loadgen)
and `mlpulse scenario`, read through the backend's HTTP API.

- in-distribution traffic keeps `prediction_psi` < 0.1 for both models;
- `mlpulse scenario model-drift` drives it above 0.25 and the `prediction_drift` rule
  fires, and the interval-based `model_mae_degradation` too (the seed rules, with their
  window and `for` shortened so the test takes minutes: 1 m and 20 s instead of 5 m / 5 m
  and 15 m / 5 m);
- a retrain produces v2 with its own baseline and a version marker, the v1 drift and MAE
  alerts (per model version) resolve, and both versions show side by side.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import yaml
from demo_testing import TOKEN, Demo, running_demo, wait_for

from mlpulse.backend.alerts.rules import default_rules_text

pytestmark = pytest.mark.slow
MODELS = ("duration", "result")


def _rules_file(tmp_path: Path) -> Path:
    rules = yaml.safe_load(default_rules_text())
    for rule in rules["rules"]:
        if rule["name"] == "prediction_drift":
            rule.update({"window": "1m", "for": "20s", "min_samples": 100})
        if rule["name"] == "model_mae_degradation":
            rule.update({"window": "1m", "for": "20s"})
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    return path


def _psi(demo: Demo, window: str = "1m") -> dict[str, tuple[float | None, float]]:
    models = demo.get("/metrics/current", window=window)["model_metrics"]
    return {m: (models[m]["prediction_psi"], models[m]["predictions_count"]) for m in MODELS}


def _drift_alerts(demo: Demo, rule: str = "prediction_drift") -> dict[str, str]:
    return {a["labels"].get("model", ""): a["state"] for a in demo.alerts() if a["rule"] == rule}


@pytest.mark.timeout(900)
def test_drift_fires_on_model_drift_and_a_retrain_starts_a_new_version(tmp_path: Path) -> None:
    env = {
        "MLPULSE_ALERT_RULES_FILE": str(_rules_file(tmp_path)),
        "MLPULSE_ALERT_EVAL_INTERVAL": "2",
    }
    with running_demo(tmp_path, "--rate", "15", "--export-interval", "1", env=env) as demo:
        # In distribution: 500 predictions per model, PSI stable (< 0.1) for both.
        wait_for(lambda: all(n >= 500 for _, n in _psi(demo, "2m").values()), timeout_s=180)
        for _ in range(3):
            for model, (psi, n) in _psi(demo, "2m").items():
                assert psi is not None and psi < 0.1, (model, psi, n)
            assert _drift_alerts(demo) == {}
            time.sleep(10)

        started = demo.cli("scenario", "model-drift", "--for", "5m")
        assert started.returncode == 0, started.stdout + started.stderr

        def fired(rule: str = "prediction_drift") -> bool:
            return _drift_alerts(demo, rule) == dict.fromkeys(MODELS, "firing")

        wait_for(fired, timeout_s=150, interval_s=2)
        wait_for(lambda: fired("model_mae_degradation"), timeout_s=120, interval_s=2)
        for model, (psi, _) in _psi(demo).items():
            assert psi is not None and psi > 0.25, (model, psi)
        assert demo.cli("scenario", "stop").returncode == 0

        # Retrain through the backend's admin proxy: v2, with its own baseline.
        retrain = httpx.post(
            f"{demo.backend}/admin/retrain",
            headers={"Authorization": f"Bearer {TOKEN}"},
            json={},
            timeout=120,
        )
        assert retrain.status_code == 200, retrain.text
        retrained_at = time.time()

        def markers() -> dict[str, float]:
            found = demo.get("/metrics/versions", **{"from": "now-30m"})["markers"]
            return {m["model"]: m["time"] for m in found if m["version"] == "v2"}

        marks = wait_for(lambda: len(markers()) == 2 and markers(), timeout_s=30)
        for model in MODELS:
            assert retrained_at - 30 <= marks[model] <= retrained_at + 15

        def versions() -> dict[str, list[dict[str, object]]]:
            models = demo.get("/metrics/current", window="2m")["model_metrics"]
            return {m: models[m]["versions"] for m in MODELS}

        def both_versions() -> bool:
            return all(
                [v["version"] for v in entries] == ["v1", "v2"]
                and all(v["baseline_mae"] is not None for v in entries)
                for entries in versions().values()
            )

        wait_for(both_versions, timeout_s=60, interval_s=2)
        diagnostics = httpx.get(
            f"{demo.mlapi}/admin/diagnostics",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        ).json()["models"]
        for model, entries in versions().items():
            trained = {v["version"]: v["baseline_mae"] for v in diagnostics[model]["versions"]}
            assert {v["version"]: v["baseline_mae"] for v in entries} == pytest.approx(trained)
            assert trained["v1"] != trained["v2"]
            assert demo.get("/metrics/current")["model_metrics"][model]["version"] == "v2"

        # v2 serves in distribution: v1's drift and MAE alerts (one per model version)
        # resolve once v1 stops serving, instead of lingering; v2's never start.
        wait_for(lambda: _drift_alerts(demo) == {}, timeout_s=150, interval_s=2)
        wait_for(
            lambda: _drift_alerts(demo, "model_mae_degradation") == {}, timeout_s=60, interval_s=2
        )
        for rule in ("prediction_drift", "model_mae_degradation"):
            history = demo.get("/alerts/history", rule=rule, state="resolved")
            resolved = {(e["labels"]["model"], e["labels"]["version"]) for e in history["entries"]}
            assert resolved == {(m, "v1") for m in MODELS}, (rule, history["entries"])
