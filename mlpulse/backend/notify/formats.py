"""Request bodies for the receivers teams already run.

A notification payload is either one alert (the engine's document, see
`mlpulse.backend.notify.message`) or a group (``kind: "group"``, from a grouping channel) holding
``alerts``, ``group_key``, ``group_labels`` and ``status``. Each format turns either into
one request body:

- ``mlpulse``: the payload itself (plus ``delivery_id`` and ``sent_at``);
- ``alertmanager``: the Alertmanager webhook payload, version 4 — ``version``,
  ``groupKey``, ``truncatedAlerts``, ``receiver``, ``status``, ``alerts[]`` (``status``,
  ``labels``, ``annotations``, ``startsAt``, ``endsAt``, ``generatorURL``,
  ``fingerprint``), ``groupLabels``, ``commonLabels``, ``commonAnnotations``,
  ``externalURL`` — so any receiver written for Alertmanager (or Grafana) takes it;
- ``slack``: an incoming-webhook message, ``text`` plus ``blocks`` with each alert's
  value, threshold, service/model and a link to the page;
- ``pagerduty``: a PagerDuty Events API v2 event; ``dedup_key`` is stable per alert (per
  group on a grouping channel), so the resolve closes the incident the trigger opened;
- `alertmanager_alerts`: the list of alerts the ``prometheus-alertmanager`` channel posts
  to an Alertmanager's ``/api/v2/alerts``.

Alert labels here are the alert's group labels plus ``alertname`` (the rule) and
``severity``, as silences see them.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from mlpulse.backend.notify.channels import AlertmanagerChannel, WebhookChannel

ZERO_TIME = "0001-01-01T00:00:00Z"
"""Go's zero time: Alertmanager's ``endsAt`` of an alert still firing."""

SLACK_MAX_ALERTS = 10
_SLACK_SECTION_CHARS = 2900
_PAGERDUTY_SEVERITY = {"critical": "critical", "warning": "warning", "info": "info"}


def rfc3339(epoch: Any) -> str:
    """Render epoch seconds as RFC 3339 UTC with milliseconds (Go parses it)."""
    if not isinstance(epoch, int | float):
        return ZERO_TIME
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def alerts_of(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the alerts of a notification (one, or the group's)."""
    if payload.get("kind") == "group":
        return list(payload.get("alerts") or [])
    return [payload]


def alert_labels(alert: dict[str, Any]) -> dict[str, str]:
    """The labels of an alert, with ``alertname`` and ``severity``."""
    labels = {str(k): str(v) for k, v in (alert.get("labels") or {}).items()}
    labels["alertname"] = str(alert.get("rule", ""))
    labels["severity"] = str(alert.get("severity", ""))
    return labels


def _number(value: Any) -> str:
    return "no data" if not isinstance(value, int | float) else f"{value:.6g}"


def summary(alert: dict[str, Any]) -> str:
    """The alert's title: its template's rendering, or ``rule: signal value > threshold``."""
    title = alert.get("title")
    if isinstance(title, str) and title:
        return title
    if alert.get("kind") == "test":
        return f"mlpulse test notification: {alert.get('reason', '')}"
    labels = alert.get("labels") or {}
    where = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
    line = (
        f"{alert.get('rule', '?')}: {alert.get('signal', '')} {_number(alert.get('value'))} "
        f"{alert.get('comparison', '')} {_number(alert.get('threshold'))}"
    )
    return f"{line} ({where})" if where else line


def text(alert: dict[str, Any]) -> str:
    """The alert's message: its template's rendering, or the rule's description."""
    message = alert.get("message")
    if isinstance(message, str) and message:
        return message
    return str(alert.get("description") or "")


def alert_annotations(alert: dict[str, Any]) -> dict[str, str]:
    """Alertmanager annotations of an alert."""
    out = {
        "summary": summary(alert),
        "value": _number(alert.get("value")),
        "threshold": f"{alert.get('comparison', '')} {_number(alert.get('threshold'))}",
        "signal": str(alert.get("signal", "")),
    }
    description = text(alert)
    if description:
        out["description"] = description
    return out


def page_link(external_url: str, alert_id: Any = None) -> str:
    """The dashboard's alerts page (with the alert's id, when known)."""
    base = f"{external_url.rstrip('/')}/#alerts"
    return f"{base}?alert={alert_id}" if alert_id else base


def _common(items: list[dict[str, str]]) -> dict[str, str]:
    if not items:
        return {}
    first = items[0]
    return {k: v for k, v in first.items() if all(i.get(k) == v for i in items[1:])}


def _group_key(payload: dict[str, Any], receiver: str) -> str:
    if payload.get("kind") == "group":
        return str(payload.get("group_key", ""))
    labels = alert_labels(payload)
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{receiver}:{{{inner}}}"


def _status(payload: dict[str, Any]) -> str:
    alerts = alerts_of(payload)
    return "firing" if any(a.get("status") != "resolved" for a in alerts) else "resolved"


def alertmanager_webhook(
    payload: dict[str, Any], receiver: str, external_url: str, max_alerts: int = 0
) -> dict[str, Any]:
    """Return the Alertmanager v4 webhook body of a notification."""
    alerts = alerts_of(payload)
    shown = alerts[:max_alerts] if max_alerts > 0 else alerts
    items = []
    for alert in shown:
        resolved = alert.get("status") == "resolved"
        items.append(
            {
                "status": "resolved" if resolved else "firing",
                "labels": alert_labels(alert),
                "annotations": alert_annotations(alert),
                "startsAt": rfc3339(alert.get("fired_at") or alert.get("at")),
                "endsAt": rfc3339(alert.get("resolved_at")) if resolved else ZERO_TIME,
                "generatorURL": page_link(external_url, alert.get("alert_id")),
                "fingerprint": str(alert.get("alert_id", "")),
            }
        )
    if payload.get("kind") == "group":
        group_labels = {str(k): str(v) for k, v in (payload.get("group_labels") or {}).items()}
    else:
        group_labels = alert_labels(payload)
    return {
        "version": "4",
        "groupKey": _group_key(payload, receiver),
        "truncatedAlerts": len(alerts) - len(shown),
        "receiver": receiver,
        "status": _status(payload),
        "alerts": items,
        "groupLabels": group_labels,
        "commonLabels": _common([alert_labels(a) for a in alerts]),
        "commonAnnotations": _common([alert_annotations(a) for a in alerts]),
        "externalURL": external_url,
    }


def slack_escape(value: Any) -> str:
    """Escape text for Slack: label values come from clients, and ``<!channel>`` or
    ``<https://evil|link>`` in a route name must stay text (Slack's own rule: &, <, >)."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_line(alert: dict[str, Any]) -> str:
    labels = alert.get("labels") or {}
    where = [f"{k}: {labels[k]}" for k in ("service", "model", "route") if labels.get(k)]
    state = "RESOLVED" if alert.get("status") == "resolved" else "FIRING"
    parts = [
        f"*[{state}] {summary(alert)}*",
        f"value {_number(alert.get('value'))} (threshold {alert.get('comparison', '')} "
        f"{_number(alert.get('threshold'))}, {alert.get('severity', '')})",
    ]
    if where:
        parts.append(", ".join(where))
    if text(alert):
        parts.append(text(alert))
    return slack_escape("\n".join(parts))[:_SLACK_SECTION_CHARS]


def slack_message(
    payload: dict[str, Any], external_url: str, max_alerts: int = 0
) -> dict[str, Any]:
    """Return a Slack incoming-webhook body: ``text`` (the notification line) and
    ``blocks`` (a section per alert, a link to the page)."""
    alerts = alerts_of(payload)
    limit = min(max_alerts or SLACK_MAX_ALERTS, SLACK_MAX_ALERTS)
    status = _status(payload)
    firing = sum(1 for a in alerts if a.get("status") != "resolved")
    if len(alerts) == 1:
        headline = slack_escape(f"[{status.upper()}] {summary(alerts[0])}")
    else:
        headline = (
            f"[{status.upper()}] {len(alerts)} alerts ({firing} firing, "
            f"{len(alerts) - firing} resolved)"
        )
    link = page_link(external_url, alerts[0].get("alert_id") if len(alerts) == 1 else None)
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": _slack_line(a)}}
        for a in alerts[:limit]
    ]
    if len(alerts) > limit:
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"and {len(alerts) - limit} more"}],
            }
        )
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"<{link}|Open in mlpulse>"}],
        }
    )
    return {"text": f"{headline}\n{link}"[:3000], "blocks": blocks}


def pagerduty_dedup_key(payload: dict[str, Any]) -> str:
    """The incident key: the alert's fingerprint, or a hash of the group's key."""
    if payload.get("kind") == "group":
        digest = hashlib.sha256(str(payload.get("group_key", "")).encode()).hexdigest()
        return f"mlpulse-group-{digest[:32]}"
    return f"mlpulse-{payload.get('alert_id', '')}"


def pagerduty_event(payload: dict[str, Any], routing_key: str, external_url: str) -> dict[str, Any]:
    """Return a PagerDuty Events API v2 body: trigger while firing, resolve after."""
    alerts = alerts_of(payload)
    status = _status(payload)
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger" if status == "firing" else "resolve",
        "dedup_key": pagerduty_dedup_key(payload),
    }
    if status != "firing":
        return event
    first = next(a for a in alerts if a.get("status") != "resolved")
    labels = first.get("labels") or {}
    severities = [str(a.get("severity", "")) for a in alerts if a.get("status") != "resolved"]
    worst = next((s for s in ("critical", "warning", "info") if s in severities), "warning")
    headline = summary(first) if len(alerts) == 1 else f"{len(alerts)} alerts: {summary(first)}"
    event["payload"] = {
        "summary": headline[:1024],
        "source": str(labels.get("service") or labels.get("instance") or "mlpulse"),
        "severity": _PAGERDUTY_SEVERITY.get(worst, "warning"),
        "timestamp": rfc3339(first.get("fired_at") or first.get("at")),
        "component": str(labels.get("model") or labels.get("route") or ""),
        "group": str(first.get("rule", "")),
        "class": str(first.get("signal", "")),
        "custom_details": {
            "alerts": [
                {
                    "alert": summary(a),
                    "status": a.get("status"),
                    "value": a.get("value"),
                    "threshold": a.get("threshold"),
                    "labels": alert_labels(a),
                }
                for a in alerts[:20]
            ]
        },
    }
    event["client"] = "mlpulse"
    event["client_url"] = page_link(external_url)
    event["links"] = [{"href": page_link(external_url, first.get("alert_id")), "text": "mlpulse"}]
    return event


def webhook_body(
    channel: WebhookChannel, payload: dict[str, Any], external_url: str
) -> dict[str, Any]:
    """Return the body a webhook channel posts, in its ``format``."""
    if channel.format == "alertmanager":
        return alertmanager_webhook(payload, channel.name, external_url, channel.max_alerts)
    if channel.format == "slack":
        return slack_message(payload, external_url, channel.max_alerts)
    if channel.format == "pagerduty":
        key = channel.routing_key.get_secret_value() if channel.routing_key else ""
        return pagerduty_event(payload, key, external_url)
    return payload


def alertmanager_alerts(
    channel: AlertmanagerChannel, payload: dict[str, Any], external_url: str, now: float
) -> list[dict[str, Any]]:
    """Return the alerts posted to an Alertmanager: firing ones end four repeat intervals
    ahead (it resolves them itself if mlpulse goes away), resolved ones at resolution."""
    refresh = max(60.0, channel.repeat_interval or 60.0)
    out = []
    for alert in alerts_of(payload):
        resolved = alert.get("status") == "resolved"
        out.append(
            {
                "labels": alert_labels(alert),
                "annotations": alert_annotations(alert),
                "startsAt": rfc3339(alert.get("fired_at") or alert.get("at")),
                "endsAt": rfc3339(alert.get("resolved_at") if resolved else now + 4 * refresh),
                "generatorURL": page_link(external_url, alert.get("alert_id")),
            }
        )
    return out
