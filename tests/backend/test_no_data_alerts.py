"""No-data alerting through the real SDK and `/v1/metrics`: a service or a model that
stops reporting fires its rule instead of silently resolving, and resolves when it is
back."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from backend_testing import Backend, meter_provider
from opentelemetry.sdk.metrics import MeterProvider

from mlpulse.backend.alerts.engine import AlertEngine
from mlpulse.backend.alerts.rules import load_yaml, read_rules_file
from mlpulse.backend.alerts.service import signal_source
from mlpulse.backend.alerts.store import AlertStore
from mlpulse.backend.query.signals import evaluate

RULES = """
channels: [{name: console, type: console}]
rules:
  - {name: service_not_reporting, signal: report_age_s, comparison: ">", threshold: 3,
     clear_threshold: 1.5, window: 10m, for: 0s, group_by: service, channels: [console]}
  - {name: model_not_reporting, signal: model_report_age_s, comparison: ">", threshold: 3,
     clear_threshold: 1.5, window: 10m, for: 0s, group_by: model, channels: [console]}
"""


def _report(backend: Backend, service: str, model: str) -> MeterProvider:
    provider = meter_provider(backend.url, service=service, instance=f"{service}-1")
    meter = provider.get_meter(service)
    meter.create_gauge("process.uptime", unit="s").set(12.0)
    meter.create_gauge("ml.model.baseline.mae").set(
        8.0, {"ml.model.name": model, "ml.model.version": "v1"}
    )
    assert provider.force_flush()
    return provider


def _states(engine: AlertEngine) -> dict[tuple[str, str], str]:
    engine.evaluate_once()
    return {
        (i.rule, next(iter(i.labels.values()), "")): i.state.value
        for i in engine.instances()
        if i.state.value != "inactive"
    }


def test_a_service_and_a_model_that_stop_reporting_fire_then_resolve_when_back(
    backend: Backend, tmp_path: Path
) -> None:
    store = backend.app.state.store
    engine = AlertEngine(AlertStore(tmp_path / "alerts.db"), signal_source(store))
    engine.set_config(load_yaml(RULES))

    dead = _report(backend, "scorer", "fraud")
    dead.shutdown()  # its exporter dies
    alive = _report(backend, "mlapi", "result")
    assert _states(engine) == {}  # everything just reported

    time.sleep(4.5)
    alive.force_flush()  # still reporting
    now = time.time()
    ages = {v.labels["service"]: v.value for v in evaluate(store, "report_age_s", now - 600, now)}
    assert ages["scorer"] is not None and ages["scorer"] > 3
    assert ages["mlapi"] is not None and ages["mlapi"] < 1.5
    assert _states(engine) == {
        ("service_not_reporting", "scorer"): "firing",
        ("model_not_reporting", "fraud"): "firing",
    }

    back = _report(backend, "scorer", "fraud")  # restarted
    states = _states(engine)
    assert states[("service_not_reporting", "scorer")] == "resolved"
    assert states[("model_not_reporting", "fraud")] == "resolved"
    back.shutdown()
    alive.shutdown()


def test_the_seed_rules_watch_services_and_models_for_silence() -> None:
    _, config = read_rules_file(None)
    service = config.rule("service_not_reporting")
    model = config.rule("model_not_reporting")
    assert service is not None and model is not None
    assert (service.signal, service.group_by, service.threshold) == ("report_age_s", "service", 120)
    assert (model.signal, model.group_by) == ("model_report_age_s", "model")
    # The window outlasts the silence it watches, so the group stays known meanwhile.
    assert service.window >= 3600 and model.window >= 3600


@pytest.mark.parametrize("signal", ["report_age_s", "model_report_age_s"])
def test_age_is_null_without_any_report(backend: Backend, signal: str) -> None:
    now = time.time()
    (value,) = evaluate(backend.app.state.store, signal, now - 60, now, [])
    assert value.value is None


def test_an_instance_that_stops_reporting_fires_while_its_service_still_reports(
    backend: Backend, tmp_path: Path
) -> None:
    rules = """
channels: [{name: console, type: console}]
rules:
  - {name: instance_not_reporting, signal: report_age_s, comparison: ">", threshold: 3,
     clear_threshold: 1.5, window: 10m, for: 0s, group_by: instance, channels: [console]}
  - {name: service_not_reporting, signal: report_age_s, comparison: ">", threshold: 3,
     clear_threshold: 1.5, window: 10m, for: 0s, group_by: service, channels: [console]}
"""
    store = backend.app.state.store
    engine = AlertEngine(AlertStore(tmp_path / "alerts.db"), signal_source(store))
    engine.set_config(load_yaml(rules))

    def replica(name: str) -> MeterProvider:
        provider = meter_provider(backend.url, service="ranker", instance=name)
        provider.get_meter("ranker").create_gauge("process.uptime", unit="s").set(5.0)
        assert provider.force_flush()
        return provider

    replica("ranker-a").shutdown()  # this replica's exporter dies
    alive = replica("ranker-b")
    time.sleep(4.5)
    alive.force_flush()
    engine.evaluate_once()
    active = {(a["rule"], tuple(sorted(a["labels"].items()))): a["state"] for a in engine.active()}
    assert active == {
        ("instance_not_reporting", (("instance", "ranker-a"), ("service", "ranker"))): "firing"
    }
    alive.shutdown()
