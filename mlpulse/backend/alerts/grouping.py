"""Notification grouping per channel, with Alertmanager's meaning of the four settings.

A channel with ``group_by`` batches alerts: alerts whose ``group_by`` labels are equal
(``alertname`` is the rule, ``severity`` the rule's severity, the rest the alert's group
labels; ``["..."]`` means all labels, one group per alert; ``[]`` one group for the whole
channel) share a group, and a group sends one message for all its alerts:

- ``group_wait``: a new group waits this long before its first message, so alerts firing
  together arrive together;
- ``group_interval``: after that, the group is looked at again every ``group_interval``
  and sends when alerts were added or resolved since its last message;
- ``repeat_interval``: with no change, a group that still fires sends again this long
  after its last message (exactly: the engine wakes for it, not at the next tick);
- a group whose alerts have all resolved sends one resolution, then is forgotten.

`flush` is a pure function of a group, its timing, the time and what each alert may do
now (``send``, ``hold`` until a time — a silence, a ``hold`` mute interval — or ``drop``
— a ``drop`` mute interval), so the grouping tests drive it through the engine with an
injected clock. Groups are saved with each evaluation (`AlertStore.save_evaluation`), so
pending groups, last sends and repeat timers survive a restart.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

ALL_LABELS = "..."


@dataclass(frozen=True)
class GroupTiming:
    """A channel's grouping durations, in seconds."""

    group_wait: float
    group_interval: float
    repeat_interval: float
    send_resolved: bool = True


@dataclass
class GroupAlert:
    """One alert in a group: its latest status and notification payload."""

    alert_id: str
    rule: str
    status: Literal["firing", "resolved"]
    payload: dict[str, Any]
    updated_at: float


@dataclass
class Group:
    """The alerts of one channel that share their ``group_by`` labels."""

    key: str
    channel: str
    labels: dict[str, str]
    created_at: float
    flushed_at: float | None = None
    sent_at: float | None = None
    sent_firing: list[str] = field(default_factory=list)
    dropped_firing: list[str] = field(default_factory=list)
    release_at: float | None = None
    alerts: dict[str, GroupAlert] = field(default_factory=dict)

    def upsert(self, alert: GroupAlert) -> None:
        """Add an alert, or replace its status and payload."""
        self.alerts[alert.alert_id] = alert


Decision = tuple[Literal["send", "hold", "drop"], float | None]
"""What an alert may do now, and for ``hold`` until when (None: unknown)."""


@dataclass(frozen=True)
class Flushed:
    """What a flush decided: the alerts of the message (empty: nothing to send), the
    alerts dropped by a mute interval, and whether the message is a repeat."""

    message: list[GroupAlert]
    dropped: list[GroupAlert]
    repeat: bool
    forget: bool


def group_labels(group_by: list[str], labels: dict[str, str]) -> dict[str, str]:
    """Return the labels that identify the group of an alert with ``labels``."""
    if ALL_LABELS in group_by:
        return dict(labels)
    return {name: labels[name] for name in group_by if name in labels}


def group_key(channel: str, labels: dict[str, str]) -> str:
    """Return the stable key of a channel's group (Alertmanager's ``groupKey`` shape)."""
    inner = ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items()))
    return f"{channel}:{{{inner}}}"


def next_due(group: Group, timing: GroupTiming) -> float:
    """Return when the group is looked at next."""
    if group.flushed_at is None:
        return group.created_at + timing.group_wait
    due = group.flushed_at + timing.group_interval
    if group.sent_at is not None and timing.repeat_interval > 0:
        due = min(due, group.sent_at + timing.repeat_interval)
    if group.release_at is not None:
        due = min(due, group.release_at)
    return due


def flush(
    group: Group,
    timing: GroupTiming,
    now: float,
    decide: Callable[[GroupAlert], Decision],
    repeatable: Callable[[GroupAlert], bool],
) -> Flushed | None:
    """Look at the group at ``now``; return None when it is not due, else what to send.

    The group is updated as if the message was sent (the caller records the message in
    the same transaction as the group).
    """
    if now < next_due(group, timing):
        return None
    decisions = {a.alert_id: decide(a) for a in group.alerts.values()}
    sent = set(group.sent_firing)
    firing = [a for a in group.alerts.values() if a.status == "firing"]
    sendable = [a for a in firing if decisions[a.alert_id][0] == "send"]
    dropped_firing = [a for a in firing if decisions[a.alert_id][0] == "drop"]
    held = [a for a in group.alerts.values() if decisions[a.alert_id][0] == "hold"]
    # A resolution is news only for an alert whose firing was announced.
    resolved_news = [
        a
        for a in group.alerts.values()
        if a.status == "resolved"
        and a.alert_id in sent
        and decisions[a.alert_id][0] == "send"
        and timing.send_resolved
    ]
    resolved_dropped = [
        a
        for a in group.alerts.values()
        if a.status == "resolved" and a.alert_id in sent and decisions[a.alert_id][0] == "drop"
    ]
    dropped_before = set(group.dropped_firing)
    new_firing = [a for a in sendable if a.alert_id not in sent | dropped_before]
    repeat_due = (
        group.sent_at is not None
        and timing.repeat_interval > 0
        and now >= group.sent_at + timing.repeat_interval
        and any(repeatable(a) for a in sendable)
    )
    changed = bool(new_firing or resolved_news)
    message = sendable + resolved_news if (changed or repeat_due) else []

    group.flushed_at = now
    if message:
        group.sent_at = now
    # Alerts announced before a hold or a drop began stay announced: their resolution
    # is still news once it may be sent.
    muted_sent = {a.alert_id for a in held + dropped_firing if a.alert_id in sent}
    announced = {a.alert_id for a in message if a.status == "firing"}
    group.sent_firing = sorted(
        (announced if message else {a.alert_id for a in sendable} & sent)
        | {i for i in muted_sent if group.alerts[i].status == "firing"}
    )
    # Firing alerts a mute interval dropped before any announcement are never announced
    # later, nor resolved.
    newly_dropped = [a for a in dropped_firing if a.alert_id not in sent | dropped_before]
    group.dropped_firing = sorted(
        ({a.alert_id for a in newly_dropped} | (dropped_before - announced))
        & {a.alert_id for a in firing}
    )
    # Resolved alerts leave the group once announced, dropped, or never announced;
    # held ones stay until they may be sent.
    held_ids = {a.alert_id for a in held}
    for alert in list(group.alerts.values()):
        if alert.status == "resolved" and alert.alert_id not in held_ids:
            del group.alerts[alert.alert_id]
    holds = [decisions[a.alert_id][1] for a in held]
    group.release_at = min((t for t in holds if t is not None), default=None)
    return Flushed(
        message=message,
        dropped=newly_dropped + resolved_dropped,
        repeat=repeat_due and not changed,
        forget=not group.alerts,
    )
