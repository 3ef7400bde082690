"""Timing of the state machine, promtool-style: a scripted series, an injected clock,
and the expected state at each evaluation instant."""

from __future__ import annotations

from alert_helpers import Clock, Script, make_config

from mlpulse.backend.alerts.engine import AlertEngine

RULE = {
    "name": "err",
    "signal": "error_rate_percent",
    "comparison": ">",
    "threshold": 5,
    "clear_threshold": 3,
    "window": "1m",
    "for": "1m",
    "min_samples": 20,
    "group_by": "service",
}


def _state(engine: AlertEngine) -> dict[str, str]:
    return {
        ",".join(f"{k}={v}" for k, v in sorted(i.labels.items())): str(i.state)
        for i in engine.instances()
    }


def _run(
    engine: AlertEngine, clock: Clock, script: Script, series: list[float | None], step: float = 15
):
    """Evaluate once per value of ``series``, ``step`` seconds apart; return the states."""
    states = []
    for value in series:
        script.set(value, 100, service="mlapi")
        engine.evaluate_once()
        states.append(_state(engine).get("service=mlapi", "inactive"))
        clock.advance(step)
    return states


def _kinds(engine: AlertEngine) -> list[str]:
    entries, _ = engine.store.history(limit=1000)
    return [n["kind"] for e in reversed(entries) for n in e["notifications"]]


def test_pending_until_exactly_for_has_elapsed(engine, clock, script):
    engine.set_config(make_config(RULE))
    start = clock.t
    # Breaching at t=0, 15, 30, 45 (pending), 60 = exactly `for` (firing).
    states = _run(engine, clock, script, [10, 10, 10, 10, 10, 10])
    assert states == ["pending", "pending", "pending", "pending", "firing", "firing"]
    firing = engine.store.history(state="firing")[0][0]
    assert firing["at"] == start + 60
    assert firing["value"] == 10
    assert firing["samples"] == 100
    assert _kinds(engine) == ["firing"]


def test_pending_one_instant_short_of_for_does_not_fire(engine, clock, script):
    engine.set_config(make_config(RULE))
    script.set(10, service="mlapi")
    engine.evaluate_once()
    clock.advance(59.999)
    engine.evaluate_once()
    assert _state(engine) == {"service=mlapi": "pending"}
    clock.advance(0.001)
    engine.evaluate_once()
    assert _state(engine) == {"service=mlapi": "firing"}


def test_pending_resets_when_the_condition_breaks(engine, clock, script):
    engine.set_config(make_config(RULE))
    # In the band (4 is not > 5) while pending: back to inactive, and `for` restarts.
    states = _run(engine, clock, script, [10, 10, 4, 10, 10, 10, 10, 10])
    assert states == [
        "pending",
        "pending",
        "inactive",
        "pending",
        "pending",
        "pending",
        "pending",
        "firing",
    ]


def test_for_zero_fires_on_first_breach(engine, clock, script):
    engine.set_config(make_config(dict(RULE, **{"for": 0})))
    assert _run(engine, clock, script, [10]) == ["firing"]


def test_keep_firing_for_holds_then_resolves(engine, clock, script):
    engine.set_config(make_config(dict(RULE, **{"for": 0, "keep_firing_for": "45s"})))
    # firing at 0; clear from 15 on; held while < 45 s since then; resolved at 15+45 = 60.
    states = _run(engine, clock, script, [10, 1, 1, 1, 1, 1])
    assert states == ["firing", "firing", "firing", "firing", "resolved", "resolved"]
    resolved = engine.store.history(state="resolved")[0][0]
    assert resolved["value"] == 1
    assert "clear threshold 3" in resolved["reason"]
    assert _kinds(engine) == ["firing", "resolved"]


def test_keep_firing_for_restarts_when_the_value_goes_bad_again(engine, clock, script):
    engine.set_config(make_config(dict(RULE, **{"for": 0, "keep_firing_for": "30s"})))
    states = _run(engine, clock, script, [10, 1, 10, 1, 1, 1])
    assert states == ["firing", "firing", "firing", "firing", "firing", "resolved"]


def test_oscillation_inside_the_hysteresis_band_neither_resolves_nor_refires(engine, clock, script):
    engine.set_config(make_config(dict(RULE, **{"for": 0})))
    # threshold 5, clear 3: 4 is inside the band, 6 above the threshold.
    states = _run(engine, clock, script, [6, 4, 6, 4, 6, 4, 3.5, 6, 4])
    assert set(states) == {"firing"}
    _, total = engine.store.history(limit=100)
    assert total == 1  # the one inactive → firing transition
    assert _kinds(engine) == ["firing"]
    # Crossing the clear threshold resolves; then 4 (in the band) does not start pending.
    assert _run(engine, clock, script, [2.9, 4, 4]) == ["resolved", "resolved", "resolved"]
    assert _kinds(engine) == ["firing", "resolved"]


def test_below_min_samples_nothing_fires(engine, clock, script):
    engine.set_config(make_config(dict(RULE, **{"for": 0})))
    for _ in range(5):
        script.set(90.0, 19, service="mlapi")  # 19 < min_samples 20
        engine.evaluate_once()
        clock.advance(15)
    assert _state(engine).get("service=mlapi", "inactive") == "inactive"
    assert engine.store.history()[1] == 0
    script.set(90.0, 20, service="mlapi")
    engine.evaluate_once()
    assert _state(engine) == {"service=mlapi": "firing"}


def test_no_data_resolves_a_firing_alert(engine, clock, script):
    engine.set_config(make_config(dict(RULE, **{"for": 0})))
    _run(engine, clock, script, [10])
    script.clear()
    engine.evaluate_once()
    assert _state(engine) == {"service=mlapi": "resolved"}


def test_one_instance_per_group(engine, clock, script):
    engine.set_config(make_config(dict(RULE, **{"for": 0})))
    script.set(10, service="a")
    script.set(1, service="b")
    script.set(7, service="c")
    engine.evaluate_once()
    assert _state(engine) == {"service=a": "firing", "service=b": "inactive", "service=c": "firing"}
    assert sorted(a["labels"]["service"] for a in engine.active()) == ["a", "c"]


def test_lower_than_comparison_with_hysteresis(engine, clock, script):
    rule = dict(RULE, comparison="<", threshold=50, clear_threshold=55, **{"for": 0})
    engine.set_config(make_config(rule))
    assert _run(engine, clock, script, [60, 49, 53, 49, 56]) == [
        "inactive",
        "firing",
        "firing",
        "firing",
        "resolved",
    ]


def test_repeat_interval_renotifies_while_firing(engine, clock, script):
    engine.set_config(make_config(dict(RULE, **{"for": 0, "repeat_interval": "1m"})))
    _run(engine, clock, script, [10] * 9)  # t = 0 .. 120
    assert _kinds(engine) == ["firing", "repeat", "repeat"]


def test_acknowledged_alert_is_not_repeated(engine, clock, script):
    engine.set_config(make_config(dict(RULE, **{"for": 0, "repeat_interval": "1m"})))
    _run(engine, clock, script, [10])
    (alert,) = engine.active()
    assert engine.acknowledge(alert["id"], "oncall", "looking") is not None
    _run(engine, clock, script, [10] * 8)
    assert _kinds(engine) == ["firing"]
    assert engine.active()[0]["acknowledged_by"] == "oncall"
    # The acknowledgement ends with the episode: resolve, fire again → notified.
    _run(engine, clock, script, [1, 10])
    assert _kinds(engine) == ["firing", "resolved", "firing"]
    assert engine.active()[0]["acknowledged_at"] is None


def test_silence_suppresses_notifications_but_not_state(engine, clock, script):
    engine.set_config(make_config(dict(RULE, **{"for": 0})))
    silence = engine.add_silence(
        {
            "matchers": [{"name": "alertname", "op": "=", "value": "err"}],
            "starts_at": clock.t,
            "ends_at": clock.t + 30,
            "created_by": "test",
            "comment": "deploy",
            "created_at": clock.t,
        }
    )
    states = _run(engine, clock, script, [10])  # t=0: fires, silenced
    assert engine.active()[0]["silenced_by"] == silence["id"]
    states += _run(engine, clock, script, [10])  # t=15: still silenced
    assert states == ["firing", "firing"]
    assert _kinds(engine) == []
    firing = engine.store.history(state="firing")[0][-1]
    assert firing["silenced_by"] == silence["id"]
    _run(engine, clock, script, [10])  # t=30: silence over → the firing notification goes out
    assert _kinds(engine) == ["firing"]


def test_deleted_silence_stops_applying(engine, clock, script):
    engine.set_config(make_config(dict(RULE, **{"for": 0})))
    silence = engine.add_silence(
        {
            "matchers": [{"name": "service", "op": "=~", "value": "ml.*"}],
            "starts_at": clock.t,
            "ends_at": clock.t + 3600,
            "created_by": "test",
            "comment": "",
            "created_at": clock.t,
        }
    )
    _run(engine, clock, script, [10])
    assert _kinds(engine) == []
    assert engine.delete_silence(silence["id"])
    _run(engine, clock, script, [10])
    assert _kinds(engine) == ["firing"]


def test_disabling_a_rule_resolves_its_alerts(engine, clock, script):
    engine.set_config(make_config(dict(RULE, **{"for": 0})))
    _run(engine, clock, script, [10])
    engine.set_config(make_config(dict(RULE, **{"for": 0, "enabled": False})))
    engine.evaluate_once()
    assert _state(engine) == {"service=mlapi": "resolved"}
    assert engine.store.history(limit=1)[0][0]["reason"] == "rule disabled"


def test_transitions_publish_live_events(store, script, clock):
    events = []
    engine = AlertEngine(
        store, script, None, clock=clock, publish=lambda e, d: events.append((e, d))
    )
    engine.set_config(make_config(dict(RULE, **{"for": "15s"})))
    _run(engine, clock, script, [10, 10, 1])
    assert [(e, d["from"], d["to"], d["value"]) for e, d in events] == [
        ("alert", "inactive", "pending", 10),
        ("alert", "pending", "firing", 10),
        ("alert", "firing", "resolved", 1),
    ]
    assert events[0][1]["labels"] == {"service": "mlapi"}
    assert events[1][1]["at"] == clock.t - 30


def test_a_failing_signal_query_keeps_the_state(store, clock):
    calls = {"n": 0}

    def source(rule, now):
        calls["n"] += 1
        if calls["n"] > 1:
            raise RuntimeError("database is locked")
        from mlpulse.backend.alerts.engine import Sample

        return [Sample({"service": "mlapi"}, 10.0, 100)]

    engine = AlertEngine(store, source, None, clock=clock)
    engine.set_config(make_config(dict(RULE, **{"for": 0})))
    engine.evaluate_once()
    clock.advance(15)
    engine.evaluate_once()
    assert engine.active()[0]["state"] == "firing"
    assert "database is locked" in engine.rule_errors["err"]


def test_prune_deletes_old_history_only(engine, clock, script):
    engine.set_config(make_config(dict(RULE, **{"for": 0})))
    _run(engine, clock, script, [10, 1])  # two entries at t0 and t0+15
    clock.advance(86400)
    _run(engine, clock, script, [10])  # one entry a day later
    assert engine.store.history()[1] == 3
    assert engine.store.prune(clock.t - 3600) == 2
    entries, total = engine.store.history()
    assert total == 1
    assert entries[0]["to"] == "firing"
    assert entries[0]["notifications"][0]["kind"] == "firing"


def test_rules_file_seeds_then_api_edits_persist_until_the_file_changes(store, script, tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(
        "channels: [{name: console, type: console}]\n"
        "rules: [{name: a, signal: cpu_percent, comparison: '>', threshold: 80}]\n"
    )
    engine = AlertEngine(store, script)
    engine.load(path)
    assert [r.name for r in engine.config.rules] == ["a"]
    engine.set_config(make_config(dict(RULE, name="edited")))
    # A restart with the same file keeps the API edit.
    again = AlertEngine(store, script)
    again.load(path)
    assert [r.name for r in again.config.rules] == ["edited"]
    # A changed file wins.
    path.write_text(path.read_text().replace("threshold: 80", "threshold: 90"))
    third = AlertEngine(store, script)
    third.load(path)
    assert [(r.name, r.threshold) for r in third.config.rules] == [("a", 90)]
    # An unreadable saved configuration falls back to the file.
    store.set_meta({"config": '{"rules": "garbage"}'})
    fourth = AlertEngine(store, script)
    fourth.load(path)
    assert [r.name for r in fourth.config.rules] == ["a"]
