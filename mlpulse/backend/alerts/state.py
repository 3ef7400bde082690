"""The alert state machine: inactive → pending → firing → resolved, one instance per group.

`step` is a pure function of a rule, an instance, one evaluation and the time, so the
timing tests drive it (through the engine) with an injected clock, the way
``promtool test rules`` does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from mlpulse.backend.alerts.rules import Rule


class State(StrEnum):
    """Where an alert instance is in its life."""

    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


def fingerprint(rule: str, labels: dict[str, str]) -> str:
    """Return the stable id of the alert instance of ``rule`` for ``labels``."""
    key = json.dumps([rule, sorted(labels.items())], separators=(",", ":"))
    return hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass
class AlertInstance:
    """The state of one rule for one group (say, ``{"service": "mlapi"}``)."""

    rule: str
    labels: dict[str, str]
    state: State = State.INACTIVE
    value: float | None = None
    samples: int = 0
    pending_since: float | None = None
    fired_at: float | None = None
    last_bad_at: float | None = None
    keep_firing_since: float | None = None
    resolved_at: float | None = None
    state_since: float | None = None
    last_eval_at: float | None = None
    last_notified_at: float | None = None
    notified: bool = False
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    ack_comment: str | None = None
    id: str = field(default="")

    def __post_init__(self) -> None:
        if not self.id:
            self.id = fingerprint(self.rule, self.labels)

    @property
    def active(self) -> bool:
        """Pending or firing."""
        return self.state in (State.PENDING, State.FIRING)


@dataclass(frozen=True)
class Transition:
    """A state change, with the values that caused it."""

    alert_id: str
    rule: str
    labels: dict[str, str]
    from_state: State
    to_state: State
    value: float | None
    samples: int
    at: float
    reason: str


def step(
    rule: Rule,
    inst: AlertInstance,
    value: float | None,
    samples: int,
    now: float,
) -> Transition | None:
    """Advance ``inst`` by one evaluation of ``rule``; return the transition, if any.

    No value, or fewer than ``min_samples`` samples, counts as "not breaching": nothing
    starts pending or fires on too little data, and a firing alert whose data went away
    resolves (after ``keep_firing_for``), as in Prometheus.
    """
    enough = value is not None and samples >= rule.min_samples
    breach = enough and value is not None and rule.breaches(value)
    bad = enough and value is not None and rule.still_bad(value)
    inst.value = value
    inst.samples = samples
    inst.last_eval_at = now
    before = inst.state

    def move(to: State, reason: str) -> Transition:
        inst.state = to
        inst.state_since = now
        return Transition(
            inst.id, inst.rule, dict(inst.labels), before, to, value, samples, now, reason
        )

    if before in (State.INACTIVE, State.RESOLVED):
        if not breach:
            return None
        inst.pending_since = now
        inst.last_bad_at = now
        if rule.for_ <= 0:
            return _fire(inst, move, now, f"{_describe(rule, value)}; for is 0")
        return move(State.PENDING, _describe(rule, value))

    if before is State.PENDING:
        if not breach:
            inst.pending_since = None
            reason = "not enough samples" if not enough else _describe_ok(rule, value)
            return move(State.INACTIVE, reason)
        inst.last_bad_at = now
        assert inst.pending_since is not None
        if now - inst.pending_since >= rule.for_:
            return _fire(inst, move, now, f"{_describe(rule, value)} for {rule.for_:g}s")
        return None

    # FIRING: stays while inside the hysteresis band, then keep_firing_for.
    if bad:
        inst.last_bad_at = now
        inst.keep_firing_since = None
        return None
    # As in Prometheus, keep_firing_for counts from the first evaluation that was clear.
    if inst.keep_firing_since is None:
        inst.keep_firing_since = now
    if now - inst.keep_firing_since < rule.keep_firing_for:
        return None
    inst.keep_firing_since = None
    inst.resolved_at = now
    inst.pending_since = None
    reason = "not enough samples" if not enough else _describe_clear(rule, value)
    return move(State.RESOLVED, reason)


def force_resolve(inst: AlertInstance, now: float, reason: str) -> Transition | None:
    """Resolve (firing) or reset (pending) ``inst`` regardless of data, e.g. rule disabled."""
    if not inst.active:
        return None
    before = inst.state
    to = State.RESOLVED if before is State.FIRING else State.INACTIVE
    inst.state = to
    inst.state_since = now
    inst.pending_since = None
    inst.keep_firing_since = None
    if to is State.RESOLVED:
        inst.resolved_at = now
    return Transition(
        inst.id, inst.rule, dict(inst.labels), before, to, inst.value, inst.samples, now, reason
    )


def _fire(
    inst: AlertInstance, move: Callable[[State, str], Transition], now: float, reason: str
) -> Transition:
    inst.fired_at = now
    inst.keep_firing_since = None
    inst.resolved_at = None
    inst.notified = False
    inst.last_notified_at = None
    inst.acknowledged_at = None
    inst.acknowledged_by = None
    inst.ack_comment = None
    return move(State.FIRING, reason)


def _describe(rule: Rule, value: float | None) -> str:
    return f"{rule.signal} = {value:g} {rule.comparison} {rule.threshold:g}"


def _describe_ok(rule: Rule, value: float | None) -> str:
    return f"{rule.signal} = {value:g}, no longer {rule.comparison} {rule.threshold:g}"


def _describe_clear(rule: Rule, value: float | None) -> str:
    return (
        f"{rule.signal} = {value:g} crossed the clear threshold {rule.effective_clear_threshold:g}"
    )
