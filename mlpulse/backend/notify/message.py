"""How a notification reads: one subject line, a plain-text body and an HTML body.

The payload is the JSON document a webhook receives; it is built by the alert engine:
``kind`` (firing, resolved, repeat, test), ``rule``, ``severity``, ``signal``, ``labels``,
``value``, ``samples``, ``threshold``, ``clear_threshold``, ``comparison``, ``reason``,
``description``, ``fired_at``, ``resolved_at``, ``at`` (epoch seconds) and ``alert_id``,
plus ``title`` and ``message`` when the rule has templates for them. A grouping channel's
payload has ``kind: "group"``, ``status``, ``group_labels`` and ``alerts`` (a list of
such documents); it renders as one message listing every alert.
Label values come from clients, so every renderer escapes them.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from typing import Any


def _when(epoch: Any) -> str:
    if not isinstance(epoch, int | float):
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _labels(payload: dict[str, Any]) -> str:
    labels = payload.get("labels") or {}
    return ", ".join(f"{k}={json.dumps(str(v))}" for k, v in sorted(labels.items())) or "-"


def _value(payload: dict[str, Any]) -> str:
    value = payload.get("value")
    return "no data" if value is None else f"{value:.6g}"


def _group_alerts(payload: dict[str, Any]) -> list[dict[str, Any]]:
    return list(payload.get("alerts") or []) if payload.get("kind") == "group" else []


def subject(payload: dict[str, Any]) -> str:
    """Return a one-line summary, e.g. ``[FIRING] high_error_rate (service="mlapi")``."""
    alerts = _group_alerts(payload)
    if payload.get("kind") == "group":
        status = str(payload.get("status", "firing")).upper()
        where = _labels({"labels": payload.get("group_labels") or {}})
        if len(alerts) == 1:
            return subject(dict(alerts[0], kind=alerts[0].get("status", "firing")))
        line = f"[{status}] {len(alerts)} alerts ({where})"
        return line.replace("\r", " ").replace("\n", " ")[:250]
    kind = str(payload.get("kind", "firing")).upper()
    severity = payload.get("severity") or ""
    title = payload.get("title")
    if isinstance(title, str) and title:
        line = f"[{kind}] {title}"
    else:
        line = f"[{kind}] {payload.get('rule', '?')} ({_labels(payload)})"
    if severity:
        line += f" {severity}"
    # A subject is a header: never let client-supplied text add lines to it.
    return line.replace("\r", " ").replace("\n", " ")[:250]


def _rows(payload: dict[str, Any]) -> list[tuple[str, str]]:
    comparison = payload.get("comparison", "")
    rows = [
        ("Rule", str(payload.get("rule", ""))),
        ("State", str(payload.get("kind", ""))),
        ("Severity", str(payload.get("severity", ""))),
        ("Labels", _labels(payload)),
        ("Signal", str(payload.get("signal", ""))),
        ("Value", _value(payload)),
        ("Samples", str(payload.get("samples", ""))),
        ("Condition", f"{comparison} {payload.get('threshold', '')}"),
        ("Clears at", f"{payload.get('clear_threshold', '')}"),
        ("Reason", str(payload.get("reason", ""))),
        ("Fired at", _when(payload.get("fired_at"))),
    ]
    if payload.get("resolved_at"):
        rows.append(("Resolved at", _when(payload.get("resolved_at"))))
    if payload.get("message"):
        rows.append(("Message", str(payload["message"])))
    if payload.get("description"):
        rows.append(("Description", str(payload["description"])))
    return rows


def text_body(payload: dict[str, Any]) -> str:
    """Return the plain-text body."""
    alerts = _group_alerts(payload)
    if alerts:
        lines = [subject(payload), ""]
        for alert in alerts:
            lines += [f"{name + ':':<13}{value}" for name, value in _rows(alert)] + [""]
        return "\n".join([*lines, "-- mlpulse"]) + "\n"
    lines = [subject(payload), ""]
    lines += [f"{name + ':':<13}{value}" for name, value in _rows(payload)]
    lines += ["", f"Alert id: {payload.get('alert_id', '-')}", "-- mlpulse"]
    return "\n".join(lines) + "\n"


def html_body(payload: dict[str, Any]) -> str:
    """Return the HTML body (every value escaped)."""
    items = _group_alerts(payload) or [payload]
    rows = "<tr><td colspan='2'><hr></td></tr>".join(
        "".join(
            f"<tr><th align='left'>{html.escape(name)}</th><td>{html.escape(value)}</td></tr>"
            for name, value in _rows(item)
        )
        for item in items
    )
    return (
        "<!doctype html><html><body>"
        f"<h2>{html.escape(subject(payload))}</h2>"
        f"<table cellpadding='4'>{rows}</table>"
        f"<p><small>Alert id {html.escape(str(payload.get('alert_id', '-')))} · mlpulse"
        "</small></p></body></html>"
    )
