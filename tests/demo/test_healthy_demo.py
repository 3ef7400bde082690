"""A healthy demo stays green: three minutes of `mlpulse demo` traffic with the shipped
rules raise no pending or firing model or cache alert, while those rules have data."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from demo_testing import running_demo, wait_for

pytestmark = pytest.mark.slow

WATCHED = {
    "model_mae_degradation",
    "prediction_drift",
    "low_cache_hit_rate",
    "model_not_reporting",
}


@pytest.mark.timeout(600)
def test_three_minutes_of_healthy_demo_traffic_raise_no_model_or_cache_alert(
    tmp_path: Path,
) -> None:
    with running_demo(tmp_path) as demo:  # the defaults: 8 requests/s, 5 s exports
        rules = {r["name"] for r in demo.get("/alerts/configure")["rules"]}
        assert rules >= WATCHED
        wait_for(lambda: demo.get("/metrics/current")["model_metrics"], timeout_s=30)
        started = time.monotonic()
        seen: list[tuple[float, str, str, object]] = []
        while time.monotonic() - started < 180:
            for alert in demo.alerts():
                if alert["rule"] in WATCHED:
                    seen.append(
                        (time.monotonic() - started, alert["rule"], alert["state"], alert["value"])
                    )
            time.sleep(3)
        assert seen == []

        # Not green for want of data: every watched signal has a value by now.
        current = demo.get("/metrics/current", window="5m")
        for model, m in current["model_metrics"].items():
            assert m["feedback_count"] >= 30, model
            assert m["mae_degradation_lower_percent"] is not None, model
            assert m["mae_degradation_lower_percent"] < 20, (model, m)
            assert m["prediction_psi"] is not None and m["prediction_psi"] < 0.1, (model, m)
            assert m["label_coverage_percent"] >= 5, (model, m)
        hit_rate = demo.get("/metrics/current", window="2m")["cache_metrics"]["hit_rate_percent"]
        assert hit_rate is not None and hit_rate > 30
