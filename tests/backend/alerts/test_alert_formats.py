"""Webhook formats against real HTTP receivers that validate bodies like the real ones:
an Alertmanager v4 webhook receiver, a Slack incoming webhook, PagerDuty Events v2."""

from __future__ import annotations

import json
from datetime import datetime

import jsonschema
from alert_helpers import Clock, Receiver, pipeline, rule

RFC3339 = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}

# The Alertmanager webhook payload, version 4 (prometheus/alertmanager notify/webhook
# Message + template.Data), every field required and typed; nothing else allowed.
ALERTMANAGER_V4 = {
    "type": "object",
    "additionalProperties": False,
    "required": [
        "version",
        "groupKey",
        "truncatedAlerts",
        "receiver",
        "status",
        "alerts",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "externalURL",
    ],
    "properties": {
        "version": {"const": "4"},
        "groupKey": {"type": "string", "minLength": 1},
        "truncatedAlerts": {"type": "integer", "minimum": 0},
        "receiver": {"type": "string", "minLength": 1},
        "status": {"enum": ["firing", "resolved"]},
        "groupLabels": _STRINGS,
        "commonLabels": _STRINGS,
        "commonAnnotations": _STRINGS,
        "externalURL": {"type": "string", "pattern": "^https?://"},
        "alerts": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": [
                    "status",
                    "labels",
                    "annotations",
                    "startsAt",
                    "endsAt",
                    "generatorURL",
                    "fingerprint",
                ],
                "properties": {
                    "status": {"enum": ["firing", "resolved"]},
                    "labels": {**_STRINGS, "required": ["alertname"]},
                    "annotations": _STRINGS,
                    "startsAt": {"type": "string", "pattern": RFC3339},
                    "endsAt": {"type": "string", "pattern": RFC3339},
                    "generatorURL": {"type": "string", "pattern": "^https?://"},
                    "fingerprint": {"type": "string", "pattern": "^[0-9a-f]{16}$"},
                },
            },
        },
    },
}


def _check_alertmanager(body: bytes) -> str | None:
    try:
        jsonschema.validate(json.loads(body), ALERTMANAGER_V4)
    except (ValueError, jsonschema.ValidationError) as exc:
        return f"invalid alertmanager payload: {getattr(exc, 'message', exc)}"
    return None


def _check_slack(body: bytes) -> str | None:
    """What hooks.slack.com answers 400 for: no ``text`` (nor blocks with text)."""
    try:
        data = json.loads(body)
    except ValueError:
        return "invalid_payload"
    if not isinstance(data, dict) or not isinstance(data.get("text"), str) or not data["text"]:
        return "no_text"
    for block in data.get("blocks", []):
        if block.get("type") not in ("section", "context", "header", "divider"):
            return "invalid_blocks"
    return None


def _check_pagerduty(body: bytes) -> str | None:
    """PagerDuty Events API v2's required fields (events.pagerduty.com/v2/enqueue)."""
    data = json.loads(body)
    if not data.get("routing_key") or len(data["routing_key"]) != 32:
        return "Invalid routing key"
    if data.get("event_action") not in ("trigger", "acknowledge", "resolve"):
        return "Invalid event_action"
    if not data.get("dedup_key") or len(data["dedup_key"]) > 255:
        return "Invalid dedup_key"
    if data["event_action"] == "trigger":
        payload = data.get("payload") or {}
        for field in ("summary", "source", "severity"):
            if not payload.get(field):
                return f"payload.{field} is missing"
        if payload["severity"] not in ("critical", "error", "warning", "info"):
            return "Invalid severity"
        if len(payload["summary"]) > 1024:
            return "summary too long"
    return None


def _bodies(receiver: Receiver) -> list[dict]:
    return [json.loads(r["body"]) for r in receiver.requests]


def test_alertmanager_format_passes_a_v4_schema_receiver(tmp_path, receivers):
    receiver = Receiver(check=_check_alertmanager)
    receivers.append(receiver)
    clock = Clock(1_767_225_600.0)  # 2026-01-01T00:00:00Z
    engine, script, dispatcher = pipeline(
        tmp_path,
        {
            "channels": [
                {"name": "am", "type": "webhook", "url": receiver.url, "format": "alertmanager"}
            ],
            "rules": [
                rule(
                    channels=["am"],
                    severity="critical",
                    title="errors {{ value | round(1) }}% on {{ labels.service }}",
                )
            ],
        },
        [receiver.host],
        clock,
    )
    try:
        script.set(12.345, 100, service="mlapi")
        engine.evaluate_once()
        assert dispatcher.wait_idle(10)
        clock.advance(90)
        script.set(1.0, 100, service="mlapi")
        engine.evaluate_once()
        assert dispatcher.wait_idle(10)
    finally:
        dispatcher.stop()
    assert receiver.rejected == []
    firing, resolved = _bodies(receiver)
    (alert,) = firing["alerts"]
    assert firing["status"] == "firing" and firing["receiver"] == "am"
    assert alert["labels"] == {"alertname": "err", "severity": "critical", "service": "mlapi"}
    assert alert["annotations"]["summary"] == "errors 12.3% on mlapi"
    assert alert["annotations"]["value"] == "12.345"
    assert alert["annotations"]["threshold"] == "> 5"
    assert alert["startsAt"] == "2026-01-01T00:00:00.000Z"
    assert alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert alert["fingerprint"] == engine.instances()[0].id
    assert (
        alert["generatorURL"] == f"http://mlpulse.example:8003/#alerts?alert={alert['fingerprint']}"
    )
    assert firing["externalURL"] == "http://mlpulse.example:8003"
    assert firing["commonLabels"] == alert["labels"]
    assert firing["truncatedAlerts"] == 0
    (done,) = resolved["alerts"]
    assert resolved["status"] == "resolved" and done["status"] == "resolved"
    assert done["fingerprint"] == alert["fingerprint"]
    assert datetime.fromisoformat(done["endsAt"]).timestamp() == 1_767_225_690.0
    # One alert per request, without grouping: the group key names the alert's labels.
    assert firing["groupKey"] == resolved["groupKey"]


def test_alertmanager_receiver_rejects_the_native_format(tmp_path, receivers):
    """The receiver is strict: the mlpulse document is refused (so the test above can fail)."""
    receiver = Receiver(check=_check_alertmanager)
    receivers.append(receiver)
    engine, script, dispatcher = pipeline(
        tmp_path,
        {
            "channels": [{"name": "hook", "type": "webhook", "url": receiver.url}],
            "rules": [rule(channels=["hook"])],
        },
        [receiver.host],
    )
    try:
        script.set(50.0, 100, service="mlapi")
        engine.evaluate_once()
        assert dispatcher.wait_idle(10)
    finally:
        dispatcher.stop()
    assert len(receiver.rejected) == 1
    (receipt,) = engine.store.notifications()
    assert receipt["status"] == "failed" and receipt["last_error"] == "HTTP 400"


def test_slack_receiver_accepts_ours_and_rejects_a_body_without_text(tmp_path, receivers):
    slack = Receiver(check=_check_slack)
    receivers.append(slack)
    engine, script, dispatcher = pipeline(
        tmp_path,
        {
            "channels": [
                {"name": "slack", "type": "webhook", "url": slack.url, "format": "slack"},
                {"name": "plain", "type": "webhook", "url": slack.url},
            ],
            "rules": [
                rule(
                    name="latency",
                    signal="p95_latency_ms",
                    threshold=500,
                    group_by="model",
                    channels=["slack", "plain"],
                ),
            ],
        },
        [slack.host],
    )
    try:
        script.set(812.5, 40, model="result_predictor")
        engine.evaluate_once()
        assert dispatcher.wait_idle(10)
    finally:
        dispatcher.stop()
    receipts = {n["channel"]: n for n in engine.store.notifications()}
    assert receipts["slack"]["status"] == "delivered"
    assert receipts["plain"]["status"] == "failed"  # the native body has no text: 400
    assert slack.rejected == ["no_text"]
    (ours,) = [b for b in _bodies(slack) if "text" in b]
    assert ours["text"].startswith(
        "[FIRING] latency: p95_latency_ms 812.5 &gt; 500 (model=result_predictor)"
    )
    section = ours["blocks"][0]["text"]["text"]
    assert "value 812.5 (threshold &gt; 500, warning)" in section  # Slack shows ">"
    assert "model: result_predictor" in section
    alert_id = engine.instances()[0].id
    assert (
        f"<http://mlpulse.example:8003/#alerts?alert={alert_id}|Open in mlpulse>"
        == (ours["blocks"][-1]["elements"][0]["text"])
    )


def test_pagerduty_trigger_then_resolve_with_the_same_dedup_key(tmp_path, receivers):
    pagerduty = Receiver([202], check=_check_pagerduty)
    receivers.append(pagerduty)
    key = "0123456789abcdef0123456789abcdef"
    clock = Clock()
    engine, script, dispatcher = pipeline(
        tmp_path,
        {
            "channels": [
                {
                    "name": "pd",
                    "type": "webhook",
                    "url": pagerduty.url,
                    "format": "pagerduty",
                    "routing_key": key,
                }
            ],
            "rules": [rule(channels=["pd"], severity="critical")],
        },
        [pagerduty.host],
        clock,
    )
    try:
        script.set(30.0, 100, service="mlapi")
        script.set(40.0, 100, service="other")
        engine.evaluate_once()
        assert dispatcher.wait_idle(10)
        clock.advance(60)
        script.set(0.5, 100, service="mlapi")
        engine.evaluate_once()
        assert dispatcher.wait_idle(10)
    finally:
        dispatcher.stop()
    assert pagerduty.rejected == []
    events = _bodies(pagerduty)
    assert [e["event_action"] for e in events] == ["trigger", "trigger", "resolve"]
    by_key: dict[str, list[str]] = {}
    for e in events:
        by_key.setdefault(e["dedup_key"], []).append(e["event_action"])
    ids = {i.labels["service"]: i.id for i in engine.instances()}
    assert by_key == {
        f"mlpulse-{ids['mlapi']}": ["trigger", "resolve"],
        f"mlpulse-{ids['other']}": ["trigger"],
    }
    trigger = next(e for e in events if e["dedup_key"] == f"mlpulse-{ids['mlapi']}")
    assert trigger["routing_key"] == key
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["source"] == "mlapi"
    assert trigger["payload"]["summary"] == "err: error_rate_percent 30 > 5 (service=mlapi)"
    # The routing key is a secret: never in the stored payload nor in a GET.
    assert key not in json.dumps(engine.config.dump())
    rows = engine.store._db.execute("SELECT payload FROM alert_notifications").fetchall()
    assert all(key not in row["payload"] for row in rows)


def test_pagerduty_needs_a_routing_key():
    import pytest

    from mlpulse.backend.alerts.rules import ConfigError, parse_config

    with pytest.raises(
        ConfigError, match=r"channels\[0\].*routing_key: required with format pagerduty"
    ):
        parse_config(
            {
                "channels": [
                    {
                        "name": "pd",
                        "type": "webhook",
                        "url": "https://events.pagerduty.com/v2/enqueue",
                        "format": "pagerduty",
                    }
                ]
            }
        )


def test_a_group_is_one_alertmanager_and_one_slack_message(tmp_path, receivers):
    am = Receiver(check=_check_alertmanager)
    slack = Receiver(check=_check_slack)
    receivers.extend([am, slack])
    clock = Clock(1_767_225_600.0)
    grouping = {"group_by": ["service"], "group_wait": "10s", "max_alerts": 2}
    engine, script, dispatcher = pipeline(
        tmp_path,
        {
            "channels": [
                {
                    "name": "am",
                    "type": "webhook",
                    "url": am.url,
                    "format": "alertmanager",
                    **grouping,
                },
                {
                    "name": "slack",
                    "type": "webhook",
                    "url": slack.url,
                    "format": "slack",
                    **grouping,
                },
            ],
            "rules": [
                rule(name=f"r{i}", threshold=i, severity="critical", channels=["am", "slack"])
                for i in range(3)
            ],
        },
        [am.host, slack.host],
        clock,
    )
    try:
        script.set(10.0, 100, service="mlapi")
        engine.evaluate_once()
        clock.advance(10)
        engine.evaluate_once()
        assert dispatcher.wait_idle(10)
    finally:
        dispatcher.stop()
    assert am.rejected == [] and slack.rejected == []
    (webhook,) = _bodies(am)
    assert webhook["groupKey"] == 'am:{service="mlapi"}'
    assert webhook["groupLabels"] == {"service": "mlapi"}
    assert webhook["commonLabels"] == {"service": "mlapi", "severity": "critical"}
    assert len(webhook["alerts"]) == 2 and webhook["truncatedAlerts"] == 1  # max_alerts
    (message,) = _bodies(slack)
    assert message["text"].startswith("[FIRING] 3 alerts (3 firing, 0 resolved)\n")
    sections = [b for b in message["blocks"] if b["type"] == "section"]
    assert len(sections) == 2
    assert message["blocks"][-2]["elements"][0]["text"] == "and 1 more"


def test_slack_messages_keep_client_label_values_as_text(tmp_path, receivers):
    """A route or model name is client data: `<!channel>` must not ping a Slack channel."""
    slack = Receiver(check=_check_slack)
    receivers.append(slack)
    engine, script, dispatcher = pipeline(
        tmp_path,
        {
            "channels": [{"name": "slack", "type": "webhook", "url": slack.url, "format": "slack"}],
            "rules": [rule(group_by="route", channels=["slack"])],
        },
        [slack.host],
    )
    try:
        script.set(50.0, 100, route="<!channel> <https://evil.example|click> & co")
        engine.evaluate_once()
        assert dispatcher.wait_idle(10)
    finally:
        dispatcher.stop()
    (body,) = _bodies(slack)
    shown = body["text"] + json.dumps(body["blocks"])
    assert "<!channel>" not in shown and "<https://evil" not in shown
    assert "&lt;!channel&gt; &lt;https://evil.example|click&gt; &amp; co" in body["text"]
    assert "route: &lt;!channel&gt;" in body["blocks"][0]["text"]["text"]


def test_the_alertmanager_channel_authenticates_and_never_shows_its_secrets(tmp_path, receivers):
    receiver = Receiver([200])
    receivers.append(receiver)
    base = f"http://{receiver.host}/am"
    channels = [
        {
            "name": "basic",
            "type": "prometheus-alertmanager",
            "url": base,
            "username": "mlpulse",
            "password": "s3cret-pw",
        },
        {
            "name": "bearer",
            "type": "prometheus-alertmanager",
            "url": base,
            "bearer_token": "tok-123456",
        },
    ]
    engine, script, dispatcher = pipeline(
        tmp_path,
        {"channels": channels, "rules": [rule(channels=["basic", "bearer"])]},
        [receiver.host],
    )
    try:
        script.set(50.0, 100, service="mlapi")
        engine.evaluate_once()
        assert dispatcher.wait_idle(10)
    finally:
        dispatcher.stop()
    auth = sorted(r["headers"]["authorization"] for r in receiver.requests)
    assert auth == ["Basic bWxwdWxzZTpzM2NyZXQtcHc=", "Bearer tok-123456"]
    assert {r["path"] for r in receiver.requests} == {"/am/api/v2/alerts"}
    for request in receiver.requests:  # Alertmanager's postable alerts, one here
        (alert,) = json.loads(request["body"])
        assert set(alert) == {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}
        assert alert["labels"] == {"alertname": "err", "severity": "warning", "service": "mlapi"}
    shown = json.dumps(engine.config.dump())
    assert "s3cret-pw" not in shown and "tok-123456" not in shown
    assert shown.count("[REDACTED]") == 4  # the two secrets, and the URLs (a path: /am)
