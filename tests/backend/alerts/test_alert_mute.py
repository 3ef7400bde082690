"""Mute time intervals with an injected clock: notifications inside them are held and
released when the interval ends, or dropped; the page's data says "muted until"."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from alert_helpers import Clock, Receiver, pipeline, rule

from mlpulse.backend.alerts.rules import ConfigError, parse_config
from mlpulse.backend.alerts.timeintervals import TimeInterval, muted_until

BERLIN = ZoneInfo("Europe/Berlin")


def _berlin(*args: int) -> float:
    return datetime(*args, tzinfo=BERLIN).timestamp()


NIGHT_START = _berlin(2026, 1, 6, 23, 0)  # a Tuesday, 22:00 UTC
NIGHT_END = _berlin(2026, 1, 7, 6, 0)  # Wednesday 06:00 in Berlin

NIGHTS = {
    "name": "nights",
    "time_zone": "Europe/Berlin",
    "weekdays": ["monday:friday"],
    "times": [{"start": "22:00", "end": "24:00"}, {"start": "00:00", "end": "06:00"}],
}


def _config(url: str, action: str, *, grouped: bool, on: str) -> dict:
    channel: dict = {"name": "team", "type": "webhook", "url": url}
    if grouped:
        channel.update(group_by=["service"], group_wait="30s", group_interval="5m")
    if on == "channel":
        channel["mute_time_intervals"] = ["nights"]
    return {
        "time_intervals": [{**NIGHTS, "action": action}],
        "channels": [channel],
        "rules": [rule(channels=["team"], mute_time_intervals=["nights"] if on == "rule" else [])],
    }


def _run(engine, clock, t: float) -> None:
    clock.t = t
    engine.evaluate_once()
    assert engine.dispatcher.wait_idle(10)


@pytest.mark.parametrize("grouped", [True, False], ids=["grouped", "ungrouped"])
def test_hold_releases_the_notification_when_the_interval_ends(tmp_path, receivers, grouped):
    receiver = Receiver()
    receivers.append(receiver)
    clock = Clock(NIGHT_START)
    config = _config(receiver.url, "hold", grouped=grouped, on="channel")
    engine, script, dispatcher = pipeline(tmp_path, config, [receiver.host], clock)
    try:
        script.set(50.0, 100, service="mlapi")
        _run(engine, clock, NIGHT_START)
        (alert,) = engine.active()
        assert alert["state"] == "firing"  # muted alerts still change state
        assert alert["muted_until"] == NIGHT_END
        assert alert["muted_by"] == ["nights"]
        _run(engine, clock, NIGHT_START + 3600)  # Wednesday 00:00: the next range
        _run(engine, clock, NIGHT_END - 1)
        assert receiver.requests == []
        _run(engine, clock, NIGHT_END)
        assert engine.active()[0]["muted_until"] is None
        _run(engine, clock, NIGHT_END + 600)
    finally:
        dispatcher.stop()
    (request,) = receiver.requests
    body = json.loads(request["body"])
    alerts = body["alerts"] if grouped else [body]
    assert [(a["rule"], a["status"]) for a in alerts] == [("err", "firing")]


@pytest.mark.parametrize("grouped", [True, False], ids=["grouped", "ungrouped"])
def test_drop_discards_what_falls_inside_the_interval(tmp_path, receivers, grouped):
    receiver = Receiver()
    receivers.append(receiver)
    clock = Clock(NIGHT_START)
    config = _config(receiver.url, "drop", grouped=grouped, on="rule")
    engine, script, dispatcher = pipeline(tmp_path, config, [receiver.host], clock)
    try:
        script.set(50.0, 100, service="mlapi")
        _run(engine, clock, NIGHT_START)
        _run(engine, clock, NIGHT_START + 60)
        _run(engine, clock, NIGHT_END + 60)
        _run(engine, clock, NIGHT_END + 4000)  # past the 1 h repeat interval
        script.set(1.0, 100, service="mlapi")
        _run(engine, clock, NIGHT_END + 5000)
        _run(engine, clock, NIGHT_END + 6000)
    finally:
        dispatcher.stop()
    receipts = engine.store.notifications()
    dropped = [r for r in receipts if r["status"] == "dropped"]
    assert len(dropped) == 1
    assert dropped[0]["last_error"] == "dropped: muted by time interval nights"
    if grouped:
        # The dropped firing is never announced later, nor its resolution.
        assert receiver.requests == []
    else:
        # Without grouping the firing is gone, but the repeat reminders after the
        # interval (1 h apart) and the resolution are sent.
        kinds = [json.loads(r["body"])["kind"] for r in receiver.requests]
        assert kinds == ["repeat", "repeat", "resolved"]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_held_receipt_says_until_when(tmp_path, receivers, request, database):
    receiver = Receiver()
    receivers.append(receiver)
    clock = Clock(NIGHT_START)
    config = _config(receiver.url, "hold", grouped=False, on="rule")
    url = request.getfixturevalue("postgres_url") if database == "postgresql" else None
    engine, script, dispatcher = pipeline(tmp_path, config, [receiver.host], clock, store=url)
    try:
        script.set(50.0, 100, service="mlapi")
        _run(engine, clock, NIGHT_START)
        (held,) = engine.store.notifications()
        assert held["status"] == "held"
        assert held["last_error"] == "held until 2026-01-07T05:00:00Z by time interval nights"
        _run(engine, clock, NIGHT_END)
        (sent,) = engine.store.notifications()
    finally:
        dispatcher.stop()
        engine.close()
    assert sent["status"] == "delivered" and sent["id"] == held["id"]


def test_interval_boundaries_weekdays_and_time_zone():
    nights = TimeInterval.model_validate(NIGHTS)
    assert nights.active(_berlin(2026, 1, 6, 22, 0))  # start inclusive
    assert not nights.active(_berlin(2026, 1, 6, 21, 59, 59))
    assert not nights.active(_berlin(2026, 1, 7, 6, 0))  # end exclusive
    assert not nights.active(_berlin(2026, 1, 10, 23, 0))  # Saturday
    # 22:30 in Berlin is 21:30 UTC, outside the same ranges in UTC: the zone decides.
    utc = TimeInterval.model_validate({**NIGHTS, "time_zone": "UTC"})
    assert not utc.active(_berlin(2026, 1, 6, 22, 30))
    assert utc.active(_berlin(2026, 1, 6, 23, 30))
    # Across the spring DST change (Sunday 29 March 02:00 -> 03:00) the night is 7 h of
    # wall clock but 6 h of real time, and ends at 06:00 summer time.
    every_night = TimeInterval.model_validate({**NIGHTS, "weekdays": []})
    start = _berlin(2026, 3, 28, 23, 0)
    end = muted_until([every_night], start)
    assert end == _berlin(2026, 3, 29, 6, 0)
    assert end - start == 6 * 3600


def test_weekday_ranges_are_inclusive_and_days_outside_are_free():
    nights = TimeInterval.model_validate(NIGHTS)
    assert nights.active(_berlin(2026, 1, 9, 23, 30))  # Friday night
    assert not nights.active(_berlin(2026, 1, 10, 0, 30))  # Saturday 00:30: a Saturday
    assert nights.active(_berlin(2026, 1, 12, 0, 30))  # Monday 00:30
    # Friday 22:00 to Saturday 00:00 is muted; Saturday 00:00 frees it.
    assert muted_until([nights], _berlin(2026, 1, 9, 23, 0)) == _berlin(2026, 1, 10, 0, 0)
    # Back-to-back ranges are one mute: Tuesday 23:00 → Wednesday 06:00.
    assert muted_until([nights], NIGHT_START) == NIGHT_END
    assert muted_until([nights], _berlin(2026, 1, 7, 12, 0)) is None
    weekend = TimeInterval.model_validate(
        {"name": "weekend", "time_zone": "Europe/Berlin", "weekdays": ["saturday:sunday"]}
    )
    # The union chains: Friday night, the weekend, then Monday's 00:00-06:00 range.
    until = muted_until([nights, weekend], _berlin(2026, 1, 9, 23, 0))
    assert until == _berlin(2026, 1, 12, 6, 0)
    # A weekend in UTC starts an hour after Friday night ends in Berlin: a gap.
    weekend_utc = TimeInterval.model_validate({"name": "w", "weekdays": ["saturday:sunday"]})
    assert muted_until([nights, weekend_utc], _berlin(2026, 1, 9, 23, 0)) == _berlin(
        2026, 1, 10, 0, 0
    )


@pytest.mark.parametrize(
    ("interval", "message"),
    [
        ({"time_zone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"weekdays": ["funday"]}, "unknown weekday 'funday'"),
        ({"weekdays": ["friday:monday"]}, "runs backwards"),
        ({"times": [{"start": "22:00", "end": "06:00"}]}, "must be before end"),
        ({"times": [{"start": "25:00", "end": "26:00"}]}, "invalid time '25:00'"),
    ],
)
def test_bad_intervals_are_refused_with_the_field(interval, message):
    with pytest.raises(ConfigError, match=r"time_intervals\[0\]") as caught:
        parse_config({"time_intervals": [{"name": "x", **interval}]})
    assert message in str(caught.value)


def test_unknown_interval_references_are_refused():
    with pytest.raises(ConfigError, match=r"rules\[0\].mute_time_intervals: 'err' names unknown"):
        parse_config(
            {
                "channels": [{"name": "console", "type": "console"}],
                "rules": [rule(mute_time_intervals=["lunch"])],
            }
        )


def test_grouped_drop_keeps_what_was_announced_before_and_counts_each_drop_once(
    tmp_path, receivers
):
    receiver = Receiver()
    receivers.append(receiver)
    evening = NIGHT_START - 2 * 3600  # Tuesday 21:00 in Berlin: not muted yet
    clock = Clock(evening)
    config = _config(receiver.url, "drop", grouped=True, on="channel")
    config["rules"].append(rule(name="late", threshold=60, channels=["team"]))
    engine, script, dispatcher = pipeline(tmp_path, config, [receiver.host], clock)
    try:
        script.set(50.0, 100, service="mlapi")  # err fires; late (> 60) does not
        _run(engine, clock, evening)
        _run(engine, clock, evening + 30)  # announced before the night
        script.set(70.0, 100, service="mlapi")  # late fires at night: dropped
        for minutes in range(0, 7 * 60, 5):  # the whole night, every 5 minutes
            _run(engine, clock, NIGHT_START + 60 * minutes)
        script.set(1.0, 100, service="mlapi")  # both recover in the morning
        _run(engine, clock, NIGHT_END + 600)
        _run(engine, clock, NIGHT_END + 1200)
    finally:
        dispatcher.stop()
    dropped = [r for r in engine.store.notifications(limit=1000) if r["status"] == "dropped"]
    assert len(dropped) == 1  # late, once; err was announced before the night
    bodies = [json.loads(r["body"]) for r in receiver.requests]
    assert [(b["status"], sorted(a["rule"] for a in b["alerts"])) for b in bodies] == [
        ("firing", ["err"]),
        ("resolved", ["err"]),  # late's firing was dropped: its resolution is not news
    ]
