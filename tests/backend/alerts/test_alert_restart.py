"""A restart while an alert fires: state and history survive, nothing is sent twice."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
from alert_helpers import Receiver, Script, Server, rule

from mlpulse.backend.alerts.config import AlertSettings
from mlpulse.backend.alerts.store import AlertStore
from mlpulse.backend.app import create_app
from mlpulse.backend.config import BackendSettings
from mlpulse.backend.notify.dispatcher import Dispatcher
from mlpulse.backend.notify.ssrf import Policy
from mlpulse.backend.notify.webhook import WebhookSender

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _start(data_dir: Path, receiver: Receiver) -> tuple[Server, httpx.Client]:
    app = create_app(BackendSettings(data_dir=data_dir, api_token=TOKEN))
    app.state.alert_settings = AlertSettings(
        alert_enabled=False, webhook_allowed_hosts=[receiver.host]
    )
    server = Server(app)
    return server, httpx.Client(base_url=server.start(), timeout=10)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_restart_while_firing_sends_nothing_twice_and_keeps_history(tmp_path, receivers):
    receiver = Receiver([200])
    receivers.append(receiver)
    data_dir = tmp_path / "data"
    jsonl = data_dir / "alerts" / "alerts.jsonl"  # the file channels' folder
    script = Script()
    script.set(42.0, 100, service="mlapi")

    server, client = _start(data_dir, receiver)
    try:
        config = {
            "replace": True,
            "channels": [
                {"name": "file", "type": "file", "path": "alerts.jsonl"},
                {"name": "hook", "type": "webhook", "url": receiver.url, "secret": "s"},
            ],
            "rules": [rule(name="err", channels=["file", "hook"], repeat_interval="1h")],
        }
        assert client.post("/alerts/configure", json=config, headers=AUTH).status_code == 200
        engine = server.app.state.alerts
        engine.source = script
        engine.evaluate_once()
        engine.evaluate_once()
        assert engine.dispatcher.wait_idle(10)
        before = client.get("/alerts/history").json()
        active_before = client.get("/alerts/active").json()["alerts"]
    finally:
        client.close()
        server.stop()
    assert [a["state"] for a in active_before] == ["firing"]
    assert len(receiver.requests) == 1
    assert [line["kind"] for line in _lines(jsonl)] == ["firing"]
    assert before["total"] == 1
    assert {n["status"] for n in before["entries"][0]["notifications"]} == {"delivered"}

    # Restart on the same data directory: the rule set edited through the API, the firing
    # alert and its history are all back; evaluating again sends nothing.
    server, client = _start(data_dir, receiver)
    try:
        engine = server.app.state.alerts
        rules = client.get("/alerts/configure").json()["rules"]
        assert [r["name"] for r in rules] == ["err"]
        active_after = client.get("/alerts/active").json()["alerts"]
        assert active_after[0]["id"] == active_before[0]["id"]
        assert active_after[0]["fired_at"] == active_before[0]["fired_at"]
        assert active_after[0]["state"] == "firing"
        engine.source = script
        for _ in range(3):
            engine.evaluate_once()
        assert engine.dispatcher.wait_idle(10)
        time.sleep(0.1)
        assert len(receiver.requests) == 1
        assert len(_lines(jsonl)) == 1
        assert client.get("/alerts/history").json() == before

        # It resolves once, with one resolve notification per channel.
        script.set(0.5, 100, service="mlapi")
        engine.evaluate_once()
        engine.evaluate_once()
        assert engine.dispatcher.wait_idle(10)
        after = client.get("/alerts/history").json()
    finally:
        client.close()
        server.stop()
    assert [json.loads(r["body"])["kind"] for r in receiver.requests] == ["firing", "resolved"]
    assert [line["kind"] for line in _lines(jsonl)] == ["firing", "resolved"]
    assert after["total"] == 2
    assert after["entries"][1] == before["entries"][0]  # the firing entry, unchanged
    assert after["entries"][0]["to"] == "resolved"
    assert after["entries"][0]["value"] == 0.5


def test_notifications_queued_at_shutdown_are_delivered_after_restart(tmp_path, receivers):
    receiver = Receiver([200])
    receivers.append(receiver)
    store = AlertStore(tmp_path / "alerts.db")
    from mlpulse.backend.alerts.rules import parse_config

    config = parse_config({"channels": [{"name": "hook", "type": "webhook", "url": receiver.url}]})
    note = store.add_notification(
        1, {"channel": "hook", "kind": "firing", "payload": {"rule": "x"}, "created_at": 1.0}
    )
    dispatcher = Dispatcher(
        store, config.channel, tmp_path, webhook=WebhookSender(Policy.of(False, [receiver.host]))
    )
    dispatcher.start()  # picks up the queued receipt left by the previous process
    try:
        assert dispatcher.wait_idle(10)
    finally:
        dispatcher.stop()
    assert len(receiver.requests) == 1
    receipt = store.notification(note)
    assert receipt is not None
    assert receipt["status"] == "delivered"
    store.close()
