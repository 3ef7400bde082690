"""The fleet routes: stopped instances, rule create/replace/delete with field errors, the
rule preview against the engine replayed, and annotations derived from the data."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from backend_testing import TOKEN, Backend, metric_request, post_otlp

from mlpulse.backend.alerts.engine import AlertEngine
from mlpulse.backend.alerts.rules import AlertConfig, Rule
from mlpulse.backend.alerts.service import signal_source
from mlpulse.backend.alerts.store import AlertStore

AUTH = {"Authorization": f"Bearer {TOKEN}"}
MIB = 2**20


def gauge(backend: Backend, metric: str, points: list[dict[str, Any]], **kw: Any) -> None:
    req = metric_request(metric, kind="gauge", points=points, **kw)
    resp = post_otlp(backend, req.SerializeToString())
    assert resp.status_code == 200, resp.text


def test_a_stopped_instance_leaves_uptime_and_memory(backend_factory: Any) -> None:
    backend: Backend = backend_factory(stale_after_s=30)
    now = time.time()
    for instance, mem, up, last in (("i-1", 100, 100.0, now - 5), ("i-2", 200, 5000.0, now - 60)):
        for t in (last - 20, last - 10, last):
            gauge(backend, "process.memory.usage", [{"value": mem * MIB, "time_s": t}],
                  instance=instance, unit="By")  # fmt: skip
            gauge(backend, "process.uptime", [{"value": up - (last - t), "time_s": t}],
                  instance=instance, unit="s")  # fmt: skip
    system = backend.get("/metrics/current", service="mlapi")["system_metrics"]
    assert system["memory_usage_mb"] == pytest.approx(100.0)
    assert system["uptime_seconds"] == pytest.approx(100.0)
    assert system["stale_after_seconds"] == 30
    both = backend.get("/metrics/current", service="mlapi", instance="i-2")
    assert both["instance"] == "i-2" and both["system_metrics"]["memory_usage_mb"] is None
    (svc,) = backend.get("/metrics/services")["services"]
    assert svc["service"] == "mlapi" and svc["running"] == 1
    states = {i["instance"]: i for i in svc["instances"]}
    assert states["i-1"]["state"] == "running"
    assert states["i-1"]["memory_usage_mb"] == pytest.approx(100.0)
    assert states["i-2"]["state"] == "stopped" and states["i-2"]["memory_usage_mb"] is None
    assert states["i-2"]["last_seen"] == pytest.approx(now - 60, abs=0.01)


def test_rules_are_created_replaced_and_deleted_one_at_a_time(backend: Backend) -> None:
    rule = {"name": "cpu_hot", "signal": "cpu_percent", "comparison": ">", "threshold": 90,
            "window": "1m", "for": "30s", "channels": ["console"]}  # fmt: skip
    assert backend.client.post("/alerts/rules", json=rule).status_code == 401
    resp = backend.client.post("/alerts/rules", json=rule, headers=AUTH)
    assert resp.status_code == 201, resp.text
    assert any(r["name"] == "cpu_hot" and r["for"] == 30 for r in resp.json()["rules"])
    again = backend.client.post("/alerts/rules", json=rule, headers=AUTH)
    assert again.status_code == 422
    assert again.json()["detail"] == [
        {"field": "name", "msg": "a rule named 'cpu_hot' exists already"}
    ]
    bad = backend.client.post(
        "/alerts/rules",
        json={**rule, "name": "cpu_bad", "clear_threshold": 95, "channels": ["nowhere"]},
        headers=AUTH,
    )
    assert bad.status_code == 422
    fields = [e["field"] for e in bad.json()["detail"]]
    assert fields == ["clear_threshold"]  # checked first; the channel after it is fixed
    unknown = backend.client.post(
        "/alerts/rules", json={**rule, "name": "cpu_bad", "channels": ["nowhere"]}, headers=AUTH
    )
    assert [e["field"] for e in unknown.json()["detail"]] == ["channels"]
    renamed = backend.client.put(
        "/alerts/rules/cpu_hot", json={**rule, "name": "cpu_very_hot", "threshold": 95},
        headers=AUTH,
    )  # fmt: skip
    assert renamed.status_code == 200, renamed.text
    names = [r["name"] for r in backend.get("/alerts/configure")["rules"]]
    assert "cpu_very_hot" in names and "cpu_hot" not in names
    assert backend.client.delete("/alerts/rules/cpu_hot", headers=AUTH).status_code == 404
    assert backend.client.delete("/alerts/rules/cpu_very_hot", headers=AUTH).status_code == 200
    assert "cpu_very_hot" not in [r["name"] for r in backend.get("/alerts/configure")["rules"]]


def test_the_preview_is_the_engine_replayed(backend: Backend, tmp_path: Path) -> None:
    now = time.time()
    start = now - 1800
    # CPU 20 %, then 95 % for 8 minutes (from 10 to 18 minutes in), then 20 % again.
    points = [
        {"value": 0.95 if 600 <= t - start < 1080 else 0.2, "time_s": t}
        for t in [start + 10 * k for k in range(180)]
    ]
    for p in points:
        gauge(backend, "system.cpu.utilization", [p], unit="1")
    rule = {"name": "cpu_hot", "signal": "cpu_percent", "comparison": ">", "threshold": 90,
            "clear_threshold": 50, "window": "1m", "for": "2m"}  # fmt: skip
    resp = backend.client.post(
        "/alerts/preview", json={"rule": rule, "from": now - 3600, "to": now}, headers=AUTH
    )
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert doc["step"] == 60
    (interval,) = doc["intervals"]
    # Pending at the first evaluation that sees 95 %, firing 2 minutes later, resolved once
    # the window holds 20 % again.
    assert start + 600 <= interval["pending_at"] <= start + 600 + 60
    assert interval["fired_at"] - interval["pending_at"] == pytest.approx(120)
    assert start + 1080 <= interval["resolved_at"] <= start + 1080 + 120
    # The engine itself, at every minute of the range (the preview skips the empty start).
    clock = [0.0]
    engine = AlertEngine(
        AlertStore(tmp_path / "replay.db"),
        signal_source(backend.app.state.store),
        None,
        clock=lambda: clock[0],
    )
    engine.set_config(AlertConfig(rules=[Rule.model_validate({**rule, "channels": []})]))
    seen = []
    t = doc["from"]
    while t <= doc["to"]:
        clock[0] = t
        seen += [
            {"at": tr.at, "from": str(tr.from_state), "to": str(tr.to_state), "labels": tr.labels}
            for tr in engine.evaluate_once()
        ]
        t += 60
    engine.close()
    assert [{k: tr[k] for k in ("at", "from", "to", "labels")} for tr in doc["transitions"]] == seen
    # Refused input: a 422 naming the field; nothing without the token.
    bad = backend.client.post(
        "/alerts/preview", json={"rule": {**rule, "window": "0s"}}, headers=AUTH
    )
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "window"
    assert backend.client.post("/alerts/preview", json={"rule": rule}).status_code == 401


def test_a_new_model_version_is_an_annotation(backend: Backend) -> None:
    now = time.time()
    for version, times in (("1", range(600, 100, -10)), ("2", range(100, 0, -10))):
        for ago in times:
            gauge(
                backend,
                "ml.model.baseline.mae",
                [{"value": 4.0, "time_s": now - ago,
                  "attributes": {"ml.model.name": "result", "ml.model.version": version}}],
            )  # fmt: skip
    got = backend.get("/annotations", **{"from": str(now - 900), "to": str(now + 1)})
    versions = [a for a in got["annotations"] if a["kind"] == "version"]
    assert len(versions) == 1
    (v,) = versions
    assert v["title"] == "result v2" and v["service"] == "mlapi"
    assert v["text"] == "mlapi: model result now version 2 (was 1)"
    assert v["at"] == (now - 100) // 10 * 10  # its first 10 s bucket
    restarts = [a for a in got["annotations"] if a["kind"] == "restart"]
    assert len(restarts) == 1 and restarts[0]["title"] == "backend started"
    note = backend.client.post("/annotations", json={"title": "deploy 1.5"}, headers=AUTH)
    assert note.status_code == 201
    assert backend.client.post("/annotations", json={"title": ""}, headers=AUTH).status_code == 422
    titles = [a["title"] for a in backend.get("/annotations")["annotations"]]
    assert "deploy 1.5" in titles
    assert backend.get("/annotations", service="other")["annotations"][-1]["title"] == "deploy 1.5"


def test_an_idle_model_says_since_when(backend: Backend) -> None:
    now = time.time()
    attrs = {"ml.model.name": "result", "ml.model.version": "3"}
    for ago in (900, 890, 880):  # predictions a quarter of an hour ago, none since
        req = metric_request(
            "ml.model.predictions",
            points=[{"value": 5, "time_s": now - ago, "start_s": now - ago - 10,
                     "attributes": attrs}],
        )  # fmt: skip
        assert post_otlp(backend, req.SerializeToString()).status_code == 200
    gauge(
        backend, "ml.model.baseline.mae", [{"value": 4.2, "time_s": now - 5, "attributes": attrs}]
    )
    model = backend.get("/metrics/current")["model_metrics"]["result"]
    assert model["predictions_count"] == 0
    assert model["baseline_mae"] == pytest.approx(4.2)
    assert model["last_prediction_at"] == pytest.approx(now - 880, abs=0.01)
