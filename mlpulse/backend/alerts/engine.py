"""The alert engine: evaluates every rule on an interval and drives notifications.

Each evaluation asks the signal source for the rule's signal over its window, per group,
advances each group's `AlertInstance` through the state machine (`mlpulse.backend.alerts.state`),
persists instances, transitions (history) and notifications in one transaction, publishes
``alert`` live events, and hands the notifications to the delivery worker — which never
runs on the evaluation path.

Per channel: a channel without ``group_by`` gets one notification per transition (and
repeats); a grouping channel gets the alert into a `Group`, and each evaluation flushes
the due groups (`mlpulse.backend.alerts.grouping`), saved in the same transaction. Mute time
intervals (`mlpulse.backend.alerts.timeintervals`) of the rule and the channel hold a
notification (status ``held``, queued when the interval ends) or drop it.

The clock is injected, so tests drive time the way ``promtool test rules`` does::

    engine = AlertEngine(store, source, dispatcher, clock=lambda: now[0])
    now[0] = 60.0; engine.evaluate_once()
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlpulse.backend.alerts import templates
from mlpulse.backend.alerts.grouping import (
    Decision,
    Group,
    GroupAlert,
    GroupTiming,
    flush,
    group_key,
    group_labels,
    next_due,
)
from mlpulse.backend.alerts.rules import AlertConfig, Rule, read_rules_file
from mlpulse.backend.alerts.silences import alert_labels, silenced_by
from mlpulse.backend.alerts.state import AlertInstance, State, Transition, force_resolve, step
from mlpulse.backend.alerts.store import AlertStore
from mlpulse.backend.alerts.timeintervals import active_intervals, muted_until
from mlpulse.backend.notify.channels import AlertmanagerChannel
from mlpulse.backend.notify.dispatcher import Dispatcher

log = logging.getLogger(__name__)

CONFIG_KEY = "config"
FILE_HASH_KEY = "rules_file_sha256"


@dataclass(frozen=True)
class Sample:
    """One group's value of a signal over a window."""

    labels: dict[str, str]
    value: float | None
    samples: int
    # Why the group no longer counts (a model version that a retrain replaced): its
    # alert resolves at once and no new one starts.
    retired: str | None = None


SignalSource = Callable[[Rule, float], list[Sample]]
"""Compute ``rule.signal`` over ``[now - rule.window, now)`` per group of ``rule.group_by``."""

Publish = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class Mute:
    """The time intervals muting a rule's notifications on a channel now."""

    action: str  # "hold" or "drop"
    until: float | None
    intervals: list[str]

    def note(self) -> str:
        """The receipt's explanation."""
        names = ", ".join(self.intervals)
        if self.action == "drop":
            return f"dropped: muted by time interval {names}"
        return f"held until {_iso(self.until)} by time interval {names}"


def _iso(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


class AlertEngine:
    """Rules, their alert instances, silences, and the evaluation loop's single step."""

    def __init__(
        self,
        store: AlertStore,
        source: SignalSource,
        dispatcher: Dispatcher | None = None,
        *,
        clock: Callable[[], float] = time.time,
        publish: Publish | None = None,
        repeat_interval: float = 4 * 3600.0,
    ) -> None:
        self.store = store
        self.source = source
        self.dispatcher = dispatcher
        self.clock = clock
        self.publish = publish
        self.repeat_interval = repeat_interval
        self._lock = threading.RLock()
        self._config = AlertConfig()
        self._instances: dict[str, AlertInstance] = {
            inst.id: inst for inst in store.load_instances()
        }
        self._silences = store.silences()
        self._groups: dict[str, Group] = {g.key: g for g in store.load_groups()}
        self._dirty_groups: set[str] = set()
        self.rule_errors: dict[str, str] = {}
        self.last_evaluation: float | None = None

    def close(self) -> None:
        """Close the store once no evaluation is running."""
        with self._lock:
            self.store.close()

    # -- configuration ------------------------------------------------------------

    @property
    def config(self) -> AlertConfig:
        """The current configuration (replace it with `set_config`)."""
        return self._config

    def load(self, rules_file: Path | None) -> None:
        """Load the configuration at start: the saved one, or the rules file when new.

        The rules file seeds the configuration and wins again whenever its content
        changes (a deliberate config-as-code change); edits made through the API persist
        across restarts as long as the file is unchanged.
        """
        text, from_file = read_rules_file(rules_file)
        digest = hashlib.sha256(text.encode()).hexdigest()
        saved = self.store.get_meta(CONFIG_KEY)
        if saved is not None and self.store.get_meta(FILE_HASH_KEY) == digest:
            try:
                self._config = AlertConfig.model_validate_json(saved)
            except ValueError as exc:  # saved by another version: the file is the fallback
                log.warning(
                    "alert rules: saved configuration unreadable (%s); using the file",
                    type(exc).__name__,
                )
            else:
                log.info(
                    "alert rules: %d rules from the saved configuration", len(self._config.rules)
                )
                return
        source = rules_file or "the shipped default_rules.yaml"
        log.info("alert rules: %d rules loaded from %s", len(from_file.rules), source)
        self._config = from_file
        self.store.set_meta(
            {CONFIG_KEY: _config_json(from_file), FILE_HASH_KEY: digest},
        )

    def set_config(self, config: AlertConfig) -> None:
        """Replace the configuration and persist it (secrets included, in the data dir)."""
        with self._lock:
            self.store.set_meta({CONFIG_KEY: _config_json(config)})
            self._config = config

    def refresh(self) -> None:
        """Take what other replicas changed in the shared store: configuration, silences,
        alert instances (acknowledgements, and the state a previous evaluator left)."""
        saved = self.store.get_meta(CONFIG_KEY)
        silences = self.store.silences()
        instances = self.store.load_instances()
        groups = self.store.load_groups()
        with self._lock:
            if saved is not None and saved != _config_json(self._config):
                try:
                    self._config = AlertConfig.model_validate_json(saved)
                except ValueError as exc:
                    log.warning("alert rules: shared configuration unreadable (%s)", exc)
            self._silences = silences
            self._instances = {inst.id: inst for inst in instances}
            # Notification groups too: a new evaluator takes over their timers.
            self._groups = {g.key: g for g in groups}
            self._dirty_groups.clear()

    def channel(self, name: str) -> Any:
        """Return the channel called ``name`` of the current configuration."""
        return self._config.channel(name)

    # -- silences and acknowledgements -------------------------------------------

    def add_silence(self, silence: dict[str, Any]) -> dict[str, Any]:
        """Store a silence; it applies from the next evaluation."""
        with self._lock:
            created = self.store.add_silence(silence)
            self._silences = self.store.silences()
        return created

    def silences(self) -> list[dict[str, Any]]:
        """Return the silences not deleted, each with ``active`` computed now."""
        now = self.clock()
        return [dict(s, active=s["starts_at"] <= now < s["ends_at"]) for s in self.store.silences()]

    def delete_silence(self, silence_id: str) -> bool:
        """Expire a silence; return whether it existed."""
        with self._lock:
            found = self.store.expire_silence(silence_id, self.clock())
            self._silences = self.store.silences()
        return found

    def acknowledge(self, alert_id: str, by: str, comment: str) -> AlertInstance | None:
        """Acknowledge an active alert: no repeat notifications until it resolves."""
        with self._lock:
            inst = self._instances.get(alert_id)
            if inst is None or not inst.active:
                return None
            inst.acknowledged_at = self.clock()
            inst.acknowledged_by = by
            inst.ack_comment = comment
            self.store.acknowledge(inst)
            return inst

    # -- reading --------------------------------------------------------------------

    def instances(self) -> list[AlertInstance]:
        """Return every known alert instance."""
        with self._lock:
            return list(self._instances.values())

    def active(self) -> list[dict[str, Any]]:
        """Return pending and firing alerts, firing first, as JSON-ready dicts."""
        now = self.clock()
        out: list[dict[str, Any]] = []
        with self._lock:
            for inst in self._instances.values():
                if not inst.active:
                    continue
                rule = self._config.rule(inst.rule)
                labels = alert_labels(inst.rule, rule.severity if rule else "", inst.labels)
                out.append(
                    {
                        "id": inst.id,
                        "rule": inst.rule,
                        "labels": inst.labels,
                        "state": str(inst.state),
                        "severity": rule.severity if rule else None,
                        "signal": rule.signal if rule else None,
                        "comparison": rule.comparison if rule else None,
                        "threshold": rule.threshold if rule else None,
                        "clear_threshold": rule.effective_clear_threshold if rule else None,
                        "value": inst.value,
                        "samples": inst.samples,
                        "pending_since": inst.pending_since,
                        "fired_at": inst.fired_at,
                        "state_since": inst.state_since,
                        "last_eval_at": inst.last_eval_at,
                        "last_notified_at": inst.last_notified_at,
                        "silenced_by": silenced_by(self._silences, labels, now),
                        **self._muted(rule, now),
                        "acknowledged_at": inst.acknowledged_at,
                        "acknowledged_by": inst.acknowledged_by,
                        "ack_comment": inst.ack_comment,
                        "description": rule.description if rule else "",
                    }
                )
        out.sort(key=lambda a: (a["state"] != "firing", a["rule"], sorted(a["labels"].items())))
        return out

    def groups(self) -> list[Group]:
        """Return the notification groups of grouping channels (pending and sent)."""
        with self._lock:
            return list(self._groups.values())

    def group_states(self) -> list[dict[str, Any]]:
        """Return the groups as JSON-ready dicts, with when each is looked at next."""
        out = []
        with self._lock:
            for group in sorted(self._groups.values(), key=lambda g: g.key):
                channel = self._config.channel(group.channel)
                grouped = channel is not None and channel.grouped
                out.append(
                    {
                        "key": group.key,
                        "channel": group.channel,
                        "labels": dict(group.labels),
                        "alerts": [
                            {"alert_id": a.alert_id, "rule": a.rule, "status": a.status}
                            for a in group.alerts.values()
                        ],
                        "created_at": group.created_at,
                        "flushed_at": group.flushed_at,
                        "sent_at": group.sent_at,
                        "next_at": next_due(group, self._timing(channel)) if grouped else None,
                    }
                )
        return out

    # -- mute time intervals ---------------------------------------------------------

    def mute(self, rule: Rule | None, channel: Any, now: float) -> Mute | None:
        """Return the mute of ``rule``'s notifications on ``channel`` now, if any."""
        names = list(rule.mute_time_intervals) if rule is not None else []
        names += list(getattr(channel, "mute_time_intervals", []))
        if not names:
            return None
        intervals = self._config.intervals(names)
        active = active_intervals(intervals, now)
        if not active:
            return None
        action = "drop" if any(i.action == "drop" for i in active) else "hold"
        return Mute(action, muted_until(intervals, now), [i.name for i in active])

    def _muted(self, rule: Rule | None, now: float) -> dict[str, Any]:
        """``muted_until`` / ``muted_by`` of an alert: set when every channel is muted."""
        if rule is None or not rule.channels:
            return {"muted_until": None, "muted_by": []}
        mutes = [self.mute(rule, self._config.channel(name), now) for name in rule.channels]
        if any(m is None for m in mutes):
            return {"muted_until": None, "muted_by": []}
        ends = [m.until for m in mutes if m is not None and m.until is not None]
        names = sorted({n for m in mutes if m is not None for n in m.intervals})
        return {"muted_until": min(ends) if ends else None, "muted_by": names}

    # -- evaluation -----------------------------------------------------------------

    def evaluate_once(self) -> list[Transition]:
        """Evaluate every rule once at ``clock()``; return the transitions made."""
        with self._lock:
            now = self.clock()
            config = self._config
            changed: dict[str, AlertInstance] = {}
            transitions: list[tuple[Transition, dict[str, Any]]] = []
            notes: list[tuple[int | None, dict[str, Any]]] = []
            repeats: list[tuple[Transition, dict[str, Any]]] = []
            deleted: list[str] = []
            rule_names = {rule.name for rule in config.rules}

            for rule in config.rules:
                for inst, tr in self._evaluate_rule(rule, now):
                    if tr is not None or inst.active or inst.id in changed:
                        changed[inst.id] = inst
                    if tr is not None:
                        self._on_transition(rule, inst, tr, now, transitions, notes)
                    elif inst.state is State.FIRING:
                        self._maybe_repeat(rule, inst, now, repeats)

            # Alerts of rules that no longer exist resolve silently and are forgotten.
            for inst in list(self._instances.values()):
                if inst.rule in rule_names:
                    continue
                tr = force_resolve(inst, now, "rule removed")
                if tr is not None:
                    transitions.append((tr, {}))
                deleted.append(inst.id)
                del self._instances[inst.id]

            # Repeat notifications are history entries too, so their receipts show.
            for tr, note in repeats:
                notes.append((len(transitions), note))
                transitions.append((tr, {"severity": note["payload"]["severity"]}))

            deleted_groups = self._flush_groups(config, now, notes)
            created = self.store.save_evaluation(
                list(changed.values()),
                transitions,
                notes,
                deleted,
                groups=[self._groups[k] for k in sorted(self._dirty_groups) if k in self._groups],
                deleted_groups=deleted_groups,
            )
            self._dirty_groups.clear()
            queued = [
                note_id
                for (_, note_id), (_, note) in zip(created, notes, strict=True)
                if note.get("status", "queued") == "queued"
            ]
            queued += self.store.release_held(now)
            self.last_evaluation = now
        for tr, _ in transitions:
            if tr.from_state != tr.to_state and self.publish is not None:
                self.publish(
                    "alert",
                    {
                        "rule": tr.rule,
                        "labels": tr.labels,
                        "from": str(tr.from_state),
                        "to": str(tr.to_state),
                        "value": tr.value,
                        "at": tr.at,
                        "id": tr.alert_id,
                    },
                )
        if self.dispatcher is not None:
            for note_id in queued:
                self.dispatcher.submit(note_id)
        return [tr for tr, _ in transitions if tr.from_state != tr.to_state]

    def _evaluate_rule(
        self, rule: Rule, now: float
    ) -> list[tuple[AlertInstance, Transition | None]]:
        mine = [inst for inst in self._instances.values() if inst.rule == rule.name]
        if not rule.enabled:
            return [(inst, force_resolve(inst, now, "rule disabled")) for inst in mine]
        try:
            samples = self.source(rule, now)
        except Exception as exc:
            # Keep the state as it is: a failing query must neither fire nor resolve.
            self.rule_errors[rule.name] = f"{type(exc).__name__}: {exc}"
            log.exception("alert rule %r: evaluation failed", rule.name)
            return []
        self.rule_errors.pop(rule.name, None)
        out: list[tuple[AlertInstance, Transition | None]] = []
        seen: set[str] = set()
        for sample in samples:
            labels = {} if rule.group_by == "none" else dict(sample.labels)
            inst = AlertInstance(rule.name, labels)
            if sample.retired is not None:
                known = self._instances.get(inst.id)
                if known is not None and known.id not in seen:
                    seen.add(known.id)
                    out.append((known, force_resolve(known, now, sample.retired)))
                continue
            inst = self._instances.setdefault(inst.id, inst)
            if inst.id in seen:
                continue
            seen.add(inst.id)
            out.append((inst, step(rule, inst, sample.value, sample.samples, now)))
        for inst in mine:
            if inst.id not in seen and inst.state is not State.INACTIVE:
                # The group has no data in the window any more.
                out.append((inst, step(rule, inst, None, 0, now)))
        return out

    def _on_transition(
        self,
        rule: Rule,
        inst: AlertInstance,
        tr: Transition,
        now: float,
        transitions: list[tuple[Transition, dict[str, Any]]],
        notes: list[tuple[int | None, dict[str, Any]]],
    ) -> None:
        labels = alert_labels(rule.name, rule.severity, inst.labels)
        silence = silenced_by(self._silences, labels, now)
        extra = {
            "threshold": rule.threshold,
            "clear_threshold": rule.effective_clear_threshold,
            "severity": rule.severity,
            "silenced_by": silence,
        }
        index = len(transitions)
        transitions.append((tr, extra))
        kind: str | None = None
        if tr.to_state is State.FIRING:
            kind = "firing"
        elif tr.to_state is State.RESOLVED and inst.notified:
            kind = "resolved"
            inst.notified = False
        if kind is None or silence is not None:
            return
        if kind == "firing":
            inst.notified = True
            inst.last_notified_at = now
        for note in self._notes(rule, inst, kind, tr.reason, now):
            notes.append((index, note))

    def _maybe_repeat(
        self,
        rule: Rule,
        inst: AlertInstance,
        now: float,
        repeats: list[tuple[Transition, dict[str, Any]]],
    ) -> None:
        labels = alert_labels(rule.name, rule.severity, inst.labels)
        if silenced_by(self._silences, labels, now) is not None:
            return
        if not inst.notified:
            kind, reason = "firing", "no longer silenced"
        elif inst.acknowledged_at is not None:
            return
        else:
            interval = rule.repeat_interval or self.repeat_interval
            last = inst.last_notified_at or now
            if interval <= 0 or now - last < interval:
                return
            kind, reason = "repeat", f"still firing after {now - last:g}s (repeat interval)"
        inst.notified = True
        inst.last_notified_at = now
        tr = Transition(
            inst.id,
            inst.rule,
            dict(inst.labels),
            State.FIRING,
            State.FIRING,
            inst.value,
            inst.samples,
            now,
            reason,
        )
        for note in self._notes(rule, inst, kind, reason, now):
            repeats.append((tr, note))

    def _notes(
        self, rule: Rule, inst: AlertInstance, kind: str, reason: str, now: float
    ) -> list[dict[str, Any]]:
        """Return the notifications of non-grouping channels; put the alert into the
        groups of grouping channels (which send repeats themselves)."""
        payload = alert_payload(rule, inst, kind, reason, now)
        out = []
        for name in rule.channels:
            channel = self._config.channel(name)
            if channel is not None and channel.grouped:
                if kind != "repeat":
                    self._to_group(channel, rule, inst, payload, now)
                continue
            if kind == "resolved" and channel is not None and not channel.send_resolved:
                continue
            note: dict[str, Any] = {
                "alert_id": inst.id,
                "rule": rule.name,
                "channel": name,
                "kind": kind,
                "payload": payload,
                "created_at": now,
            }
            mute = self.mute(rule, channel, now)
            if mute is not None:
                if kind == "repeat":
                    continue  # no reminders while muted; the repeat timer goes on after
                note["status"] = "dropped" if mute.action == "drop" else "held"
                note["last_error"] = mute.note()
                if mute.action == "hold":
                    note["hold_until"] = mute.until
                    # The repeat timer starts when the held notification goes out.
                    if mute.until is not None:
                        inst.last_notified_at = max(inst.last_notified_at or now, mute.until)
            out.append(note)
        return out

    # -- grouping channels ---------------------------------------------------------

    def _to_group(
        self, channel: Any, rule: Rule, inst: AlertInstance, payload: dict[str, Any], now: float
    ) -> None:
        labels = alert_labels(rule.name, rule.severity, inst.labels)
        glabels = group_labels(list(channel.group_by), labels)
        key = group_key(channel.name, glabels)
        group = self._groups.get(key)
        resolved = payload["status"] == "resolved"
        if resolved and (group is None or inst.id not in group.alerts):
            return  # never announced on this channel: nothing to resolve
        if group is None:
            group = self._groups[key] = Group(key, channel.name, glabels, created_at=now)
        group.upsert(
            GroupAlert(inst.id, rule.name, "resolved" if resolved else "firing", payload, now)
        )
        self._dirty_groups.add(key)

    def _timing(self, channel: Any) -> GroupTiming:
        repeat = channel.repeat_interval
        return GroupTiming(
            channel.group_wait,
            channel.group_interval,
            self.repeat_interval if repeat is None else repeat,
            # Alertmanager must hear of resolutions, or it keeps the alert until endsAt.
            channel.send_resolved or isinstance(channel, AlertmanagerChannel),
        )

    def _flush_groups(
        self, config: AlertConfig, now: float, notes: list[tuple[int | None, dict[str, Any]]]
    ) -> list[str]:
        """Send what each due group has to say; return the keys of groups to forget."""
        forget: list[str] = []
        for key, group in sorted(self._groups.items()):
            channel = config.channel(group.channel)
            if channel is None or not channel.grouped:
                forget.append(key)  # the channel is gone, or no longer groups
                continue
            for alert in list(group.alerts.values()):
                rule = config.rule(alert.rule)
                if rule is None or group.channel not in rule.channels:
                    # The rule is gone, or no longer notifies here: forget it silently.
                    del group.alerts[alert.alert_id]
                    self._dirty_groups.add(key)
                elif self._resolved_meanwhile(config, alert, now):
                    self._dirty_groups.add(key)

            def decide(alert: GroupAlert, channel: Any = channel) -> Decision:
                rule = config.rule(alert.rule)
                labels = alert_labels(alert.rule, rule.severity if rule else "", _labels(alert))
                silence = silenced_by(self._silences, labels, now)
                if silence is not None:
                    ends = next((s["ends_at"] for s in self._silences if s["id"] == silence), None)
                    return "hold", ends
                mute = self.mute(rule, channel, now)
                if mute is None:
                    return "send", None
                return ("drop", None) if mute.action == "drop" else ("hold", mute.until)

            def repeatable(alert: GroupAlert, channel: Any = channel) -> bool:
                if isinstance(channel, AlertmanagerChannel):
                    return True  # Alertmanager needs the refresh to keep the alert active
                inst = self._instances.get(alert.alert_id)
                return inst is not None and inst.acknowledged_at is None

            result = flush(group, self._timing(channel), now, decide, repeatable)
            if result is None:
                if not group.alerts:
                    forget.append(key)
                continue
            self._dirty_groups.add(key)
            if result.message:
                payload = self._group_payload(config, group, result.message, result.repeat, now)
                notes.append(
                    (
                        None,
                        {
                            "channel": group.channel,
                            "kind": "repeat" if result.repeat else "group",
                            "payload": payload,
                            "created_at": now,
                        },
                    )
                )
            if result.dropped:
                payload = self._group_payload(config, group, result.dropped, False, now)
                mute = self.mute(config.rule(result.dropped[0].rule), channel, now)
                notes.append(
                    (
                        None,
                        {
                            "channel": group.channel,
                            "kind": "group",
                            "payload": payload,
                            "created_at": now,
                            "status": "dropped",
                            "last_error": mute.note() if mute else "dropped: muted",
                        },
                    )
                )
            if result.forget:
                forget.append(key)
        for key in forget:
            self._groups.pop(key, None)
            self._dirty_groups.discard(key)
        return forget

    def _resolved_meanwhile(self, config: AlertConfig, alert: GroupAlert, now: float) -> bool:
        """Mark a group's firing alert resolved when its instance no longer fires (its
        resolution went to another group after a ``group_by`` change, say)."""
        inst = self._instances.get(alert.alert_id)
        if alert.status != "firing" or (inst is not None and inst.state is State.FIRING):
            return False
        rule = config.rule(alert.rule)
        if inst is not None and rule is not None:
            alert.payload = alert_payload(rule, inst, "resolved", "resolved", now)
        else:
            alert.payload = dict(alert.payload, kind="resolved", status="resolved", resolved_at=now)
        alert.status = "resolved"
        alert.updated_at = now
        return True

    def _group_payload(
        self,
        config: AlertConfig,
        group: Group,
        alerts: list[GroupAlert],
        repeat: bool,
        now: float,
    ) -> dict[str, Any]:
        """The document of a group's message; firing alerts carry their current values."""
        items = []
        for alert in alerts:
            rule = config.rule(alert.rule)
            inst = self._instances.get(alert.alert_id)
            if alert.status == "firing" and rule is not None and inst is not None:
                kind = "repeat" if repeat else "firing"
                items.append(alert_payload(rule, inst, kind, alert.payload.get("reason", ""), now))
            else:
                items.append(alert.payload)
        firing = sum(1 for a in alerts if a.status == "firing")
        return {
            "version": 1,
            "kind": "group",
            "status": "firing" if firing else "resolved",
            "channel": group.channel,
            "group_key": group.key,
            "group_labels": dict(group.labels),
            "repeat": repeat,
            "firing": firing,
            "resolved": len(alerts) - firing,
            "alerts": items,
            "at": now,
        }


def _labels(alert: GroupAlert) -> dict[str, str]:
    labels = alert.payload.get("labels") or {}
    return {str(k): str(v) for k, v in labels.items()}


def alert_payload(
    rule: Rule, inst: AlertInstance, kind: str, reason: str, now: float
) -> dict[str, Any]:
    """Return the notification document (see `mlpulse.backend.notify.message`), with the
    rule's ``title`` and ``message`` templates rendered when it has them."""
    payload = _alert_document(rule, inst, kind, reason, now)
    for field in ("title", "message"):
        source = getattr(rule, field)
        if source:
            rendered = templates.render(source, payload, field)
            if rendered is None:
                log.warning(
                    "alert rule %r: its %s template failed on these values", rule.name, field
                )
            else:
                payload[field] = rendered
    return payload


def _alert_document(
    rule: Rule, inst: AlertInstance, kind: str, reason: str, now: float
) -> dict[str, Any]:
    return {
        "version": 1,
        "kind": kind,
        "status": "resolved" if kind == "resolved" else "firing",
        "alert_id": inst.id,
        "rule": rule.name,
        "severity": rule.severity,
        "signal": rule.signal,
        "labels": dict(inst.labels),
        "value": inst.value,
        "samples": inst.samples,
        "comparison": rule.comparison,
        "threshold": rule.threshold,
        "clear_threshold": rule.effective_clear_threshold,
        "window": rule.window,
        "description": rule.description,
        "reason": reason,
        "pending_since": inst.pending_since,
        "fired_at": inst.fired_at,
        "resolved_at": inst.resolved_at if kind == "resolved" else None,
        "at": now,
    }


def _config_json(config: AlertConfig) -> str:
    # Only the fields given, so that after a restart an export still writes the rules
    # the way their file (or client) wrote them.
    return json.dumps(config.dump(reveal=True, given=True))
