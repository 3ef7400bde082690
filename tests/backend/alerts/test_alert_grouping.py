"""Notification grouping with an injected clock: group_wait, group_interval,
repeat_interval with Alertmanager's meaning, one resolution per group, and groups that
survive a restart without duplicate or lost messages."""

from __future__ import annotations

import json

import pytest
from alert_helpers import Clock, Receiver, Script, pipeline, rule

from mlpulse.backend.alerts.engine import AlertEngine
from mlpulse.backend.alerts.rules import parse_config
from mlpulse.backend.alerts.store import AlertStore
from mlpulse.backend.notify.dispatcher import Dispatcher
from mlpulse.backend.notify.ssrf import Policy
from mlpulse.backend.notify.webhook import WebhookSender

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def _config(url: str, n: int = 10, **channel: object) -> dict:
    grouping = {"group_by": ["service"], "group_wait": "30s", "group_interval": "5m"}
    grouping["repeat_interval"] = "1h"
    grouping.update(channel)
    return {
        "channels": [{"name": "team", "type": "webhook", "url": url, **grouping}],
        # Rule r<i> fires once the value passes 10 * i: raising the value fires them in turn.
        "rules": [rule(name=f"r{i}", threshold=10 * i, channels=["team"]) for i in range(n)],
    }


def _messages(receiver: Receiver) -> list[dict]:
    return [json.loads(r["body"]) for r in receiver.requests]


def _at(engine: AlertEngine, clock: Clock, t: float) -> None:
    clock.t = T0 + t
    engine.evaluate_once()
    assert engine.dispatcher is not None and engine.dispatcher.wait_idle(10)


def test_ten_rules_firing_within_group_wait_send_one_message(tmp_path, receivers):
    receiver = Receiver()
    receivers.append(receiver)
    clock = Clock(T0)
    engine, script, dispatcher = pipeline(tmp_path, _config(receiver.url), [receiver.host], clock)
    try:
        for i in range(10):  # one more rule fires every 2 s, from t=0 to t=18
            script.set(10 * i + 5, 100, service="mlapi")
            _at(engine, clock, 2 * i)
        assert len(engine.active()) == 10
        _at(engine, clock, 29.9)
        assert receiver.requests == []  # group_wait runs from the group's first alert
        _at(engine, clock, 30)
        _at(engine, clock, 60)
        _at(engine, clock, 329)
    finally:
        dispatcher.stop()
    (message,) = _messages(receiver)
    assert message["kind"] == "group" and message["status"] == "firing"
    assert message["group_labels"] == {"service": "mlapi"}
    assert sorted(a["rule"] for a in message["alerts"]) == [f"r{i}" for i in range(10)]
    assert {a["status"] for a in message["alerts"]} == {"firing"}
    assert message["firing"] == 10 and message["resolved"] == 0
    # Each alert carries its value at send time.
    assert {a["value"] for a in message["alerts"]} == {95.0}


def test_group_interval_then_repeat_interval_exactly_then_one_resolution(tmp_path, receivers):
    receiver = Receiver()
    receivers.append(receiver)
    clock = Clock(T0)
    engine, script, dispatcher = pipeline(
        tmp_path, _config(receiver.url, n=3), [receiver.host], clock
    )
    try:
        script.set(15.0, 100, service="mlapi")  # r0, r1 fire
        _at(engine, clock, 0)
        _at(engine, clock, 30)  # first message: r0, r1
        script.set(25.0, 100, service="mlapi")  # r2 fires after the first message
        _at(engine, clock, 40)
        _at(engine, clock, 329)
        assert len(receiver.requests) == 1  # changes wait for the next group_interval
        _at(engine, clock, 330)  # second message: r0, r1, r2 (r2 new)
        _at(engine, clock, 630)  # a tick without change: nothing
        _at(engine, clock, 330 + 3599)
        assert len(receiver.requests) == 2
        _at(engine, clock, 330 + 3600)  # repeat_interval after the last message, exactly
        script.set(0.0, 100, service="mlapi")  # all three resolve
        _at(engine, clock, 330 + 3700)
        _at(engine, clock, 330 + 3600 + 299)
        assert len(receiver.requests) == 3
        _at(engine, clock, 330 + 3600 + 300)  # one resolution for the group
        _at(engine, clock, 330 + 3600 + 600)
        _at(engine, clock, 330 + 7200 + 600)
    finally:
        dispatcher.stop()
    first, second, repeat, resolution = _messages(receiver)
    assert sorted(a["rule"] for a in first["alerts"]) == ["r0", "r1"]
    assert sorted(a["rule"] for a in second["alerts"]) == ["r0", "r1", "r2"]
    assert repeat["repeat"] is True and len(repeat["alerts"]) == 3
    assert {a["kind"] for a in repeat["alerts"]} == {"repeat"}
    assert resolution["status"] == "resolved"
    assert sorted(a["rule"] for a in resolution["alerts"]) == ["r0", "r1", "r2"]
    assert {a["status"] for a in resolution["alerts"]} == {"resolved"}
    assert engine.groups() == []  # a resolved group is forgotten once announced


def test_group_by_splits_groups_and_alerts_resolving_before_the_first_message_stay_quiet(
    tmp_path, receivers
):
    receiver = Receiver()
    receivers.append(receiver)
    clock = Clock(T0)
    engine, script, dispatcher = pipeline(
        tmp_path, _config(receiver.url, n=2), [receiver.host], clock
    )
    try:
        script.set(15.0, 100, service="mlapi")
        script.set(15.0, 100, service="search")
        _at(engine, clock, 0)
        script.set(0.0, 100, service="search")  # search recovers within group_wait
        _at(engine, clock, 10)
        _at(engine, clock, 30)
        _at(engine, clock, 400)
    finally:
        dispatcher.stop()
    (message,) = _messages(receiver)
    assert message["group_labels"] == {"service": "mlapi"}
    assert sorted(a["rule"] for a in message["alerts"]) == ["r0", "r1"]
    assert [g.labels for g in engine.groups()] == [{"service": "mlapi"}]


def _engine(tmp_path, receiver: Receiver, clock: Clock, script: Script) -> AlertEngine:
    store = AlertStore(tmp_path / "alerts.db")
    engine = AlertEngine(store, script, clock=clock, repeat_interval=3600)
    engine.dispatcher = Dispatcher(
        store,
        engine.channel,
        tmp_path,
        webhook=WebhookSender(Policy.of(False, [receiver.host]), max_attempts=2),
        workers=1,
    )
    return engine


def test_groups_survive_restarts_without_duplicate_or_lost_messages(tmp_path, receivers):
    receiver = Receiver()
    receivers.append(receiver)
    clock = Clock(T0)
    script = Script()
    script.set(25.0, 100, service="mlapi")
    config = parse_config(_config(receiver.url, n=3))

    first = _engine(tmp_path, receiver, clock, script)
    first.set_config(config)
    first.dispatcher.start()
    _at(first, clock, 0)  # three alerts wait in their group
    first.dispatcher.stop()
    first.close()
    assert receiver.requests == []

    second = _engine(tmp_path, receiver, clock, script)
    second.set_config(config)
    second.dispatcher.start()
    _at(second, clock, 29)
    assert receiver.requests == []  # the timer kept its start: not sent early
    _at(second, clock, 30)
    assert len(receiver.requests) == 1
    second.dispatcher.stop()
    second.close()

    third = _engine(tmp_path, receiver, clock, script)
    third.set_config(config)
    third.dispatcher.start()
    _at(third, clock, 31)
    _at(third, clock, 30 + 3599)
    assert len(receiver.requests) == 1  # no duplicate of the first message
    _at(third, clock, 30 + 3600)
    third.dispatcher.stop()
    third.close()
    first_message, repeat = _messages(receiver)
    assert len(first_message["alerts"]) == 3 and first_message["repeat"] is False
    assert repeat["repeat"] is True and len(repeat["alerts"]) == 3


def test_acknowledged_alerts_stop_the_group_repeating(tmp_path, receivers):
    receiver = Receiver()
    receivers.append(receiver)
    clock = Clock(T0)
    engine, script, dispatcher = pipeline(
        tmp_path, _config(receiver.url, n=1), [receiver.host], clock
    )
    try:
        script.set(5.0, 100, service="mlapi")
        _at(engine, clock, 0)
        _at(engine, clock, 30)
        (alert,) = engine.active()
        assert engine.acknowledge(alert["id"], "oncall", "looking") is not None
        _at(engine, clock, 30 + 3600)
        _at(engine, clock, 30 + 7200)
    finally:
        dispatcher.stop()
    assert len(receiver.requests) == 1


def test_a_group_by_change_still_resolves_the_old_group_once(tmp_path, receivers):
    receiver = Receiver()
    receivers.append(receiver)
    clock = Clock(T0)
    engine, script, dispatcher = pipeline(
        tmp_path, _config(receiver.url, n=1), [receiver.host], clock
    )
    try:
        script.set(5.0, 100, service="mlapi")
        _at(engine, clock, 0)
        _at(engine, clock, 30)  # announced in the {service} group
        engine.set_config(parse_config(_config(receiver.url, n=1, group_by=["alertname"])))
        script.set(0.0, 100, service="mlapi")
        _at(engine, clock, 60)  # resolves: the new grouping has no group holding it
        _at(engine, clock, 330)
        _at(engine, clock, 330 + 7200)
    finally:
        dispatcher.stop()
    first, resolution = _messages(receiver)
    assert first["status"] == "firing" and first["group_labels"] == {"service": "mlapi"}
    assert resolution["group_labels"] == {"service": "mlapi"}
    assert [a["status"] for a in resolution["alerts"]] == ["resolved"]
    assert engine.groups() == []


def test_the_alertmanager_channel_always_groups():
    from mlpulse.backend.alerts.rules import ConfigError

    channel = {"name": "am", "type": "prometheus-alertmanager", "url": "http://am:9093"}
    assert parse_config({"channels": [channel]}).channels[0].group_by == []
    with pytest.raises(ConfigError, match=r"channels\[0\]: group_by: this channel always groups"):
        parse_config({"channels": [{**channel, "group_by": None}]})
    with pytest.raises(ConfigError, match=r"channels\[0\]: repeat_interval: must be > 0"):
        parse_config({"channels": [{**channel, "repeat_interval": "0s"}]})


def test_groups_on_postgresql_pass_to_a_new_evaluator(postgres_url, tmp_path, receivers):
    """Replicas share the alert tables: the evaluator that takes over a pending group
    (after `refresh`) sends its one message at the end of group_wait, once."""
    receiver = Receiver()
    receivers.append(receiver)
    clock = Clock(T0)
    script = Script()
    script.set(25.0, 100, service="mlapi")
    config = parse_config(_config(receiver.url, n=3))

    def replica() -> AlertEngine:
        store = AlertStore(postgres_url)
        engine = AlertEngine(store, script, clock=clock, repeat_interval=3600)
        engine.dispatcher = Dispatcher(
            store,
            engine.channel,
            tmp_path,
            webhook=WebhookSender(Policy.of(False, [receiver.host]), max_attempts=2),
            workers=1,
        )
        engine.set_config(config)
        engine.dispatcher.start()
        return engine

    first, second = replica(), replica()
    try:
        _at(first, clock, 0)  # the first evaluator: three alerts wait in their group
        second.refresh()  # the first one dies; the second takes the lease and refreshes
        assert [len(g.alerts) for g in second.groups()] == [3]
        _at(second, clock, 29)
        assert receiver.requests == []
        _at(second, clock, 30)
        _at(second, clock, 60)
    finally:
        for engine in (first, second):
            engine.dispatcher.stop()
            engine.close()
    (message,) = _messages(receiver)
    assert sorted(a["rule"] for a in message["alerts"]) == ["r0", "r1", "r2"]


def test_an_alert_whose_rule_leaves_the_channel_stops_repeating_there(tmp_path, receivers):
    receiver = Receiver()
    receivers.append(receiver)
    clock = Clock(T0)
    config = _config(receiver.url, n=2)
    engine, script, dispatcher = pipeline(tmp_path, config, [receiver.host], clock)
    try:
        script.set(15.0, 100, service="mlapi")
        _at(engine, clock, 0)
        _at(engine, clock, 30)  # r0 and r1 announced
        config["channels"].append({"name": "console", "type": "console"})
        config["rules"][1]["channels"] = ["console"]  # r1 now notifies elsewhere
        engine.set_config(parse_config(config))
        _at(engine, clock, 30 + 3600)  # the repeat lists r0 only
    finally:
        dispatcher.stop()
    first, repeat = _messages(receiver)
    assert sorted(a["rule"] for a in first["alerts"]) == ["r0", "r1"]
    assert [a["rule"] for a in repeat["alerts"]] == ["r0"]


@pytest.mark.parametrize("grouped", [True, False], ids=["grouped", "ungrouped"])
def test_send_resolved_false_announces_firing_only(tmp_path, receivers, grouped):
    receiver = Receiver()
    receivers.append(receiver)
    clock = Clock(T0)
    config = _config(receiver.url, n=2, send_resolved=False)
    if not grouped:
        for key in ("group_by", "group_wait", "group_interval", "repeat_interval"):
            config["channels"][0].pop(key)
    engine, script, dispatcher = pipeline(tmp_path, config, [receiver.host], clock)
    try:
        script.set(15.0, 100, service="mlapi")
        _at(engine, clock, 0)
        _at(engine, clock, 30)
        script.set(0.0, 100, service="mlapi")
        _at(engine, clock, 60)
        _at(engine, clock, 400)
    finally:
        dispatcher.stop()
    statuses = [json.loads(r["body"])["status"] for r in receiver.requests]
    assert statuses == (["firing"] if grouped else ["firing", "firing"])
    assert engine.groups() == []
