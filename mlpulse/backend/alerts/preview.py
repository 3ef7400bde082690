"""Rule preview: when would this rule have fired over the stored data?

`preview` replays the alert engine itself — a throwaway `AlertEngine` with an in-memory
store, the same signal source as the live one and an injected clock — evaluating the rule
every `step` seconds over a past range (the dashboard asks for the last 24 h). So the
pending, firing and resolved times are those the engine computes for the same data at the
same evaluation times; only the evaluation interval differs from the live engine's
(`MLPULSE_ALERT_EVAL_INTERVAL`, 5 s by default), which the answer states.

    doc = preview(rule, signal_source(store), now - 86_400, now, step=60)
    for interval in doc["intervals"]:
        print(interval["labels"], interval["fired_at"], interval["resolved_at"])
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mlpulse.backend.alerts.engine import AlertEngine, SignalSource
from mlpulse.backend.alerts.rules import AlertConfig, Rule
from mlpulse.backend.alerts.state import State
from mlpulse.backend.alerts.store import AlertStore

MAX_EVALUATIONS = 3_000
"""Evaluations per preview at most: 24 h at one a minute, with room to spare."""


def preview_step(start: float, end: float, step: float | None = None) -> float:
    """The evaluation step: `step` if given, else one a minute — coarser on long ranges."""
    if step is not None:
        return step
    return max(60.0, math.ceil((end - start) / MAX_EVALUATIONS / 60.0) * 60.0)


def preview(
    rule: Rule,
    source: SignalSource,
    start: float,
    end: float,
    step: float | None = None,
    data_from: float | None = None,
) -> dict[str, Any]:
    """Evaluate `rule` at `start + k*step` up to `end`; return its transitions and intervals.

    `data_from` (the first stored point of the rule's signal, if known) skips the
    evaluations before it: with no data nothing can go pending, as in the engine.
    """
    every = preview_step(start, end, step)
    if (end - start) / every > MAX_EVALUATIONS:
        raise ValueError(f"step: too many evaluations; at most {MAX_EVALUATIONS} per preview")
    first = start
    if data_from is not None and data_from > start:
        first = start + math.floor((data_from - start) / every) * every
    clock = [first]
    store = AlertStore(Path(":memory:"))
    # The rule exactly as given, minus its channels: a preview never notifies anyone.
    probe = rule.model_copy(update={"channels": [], "enabled": True})
    engine = AlertEngine(store, source, None, clock=lambda: clock[0])
    engine.set_config(AlertConfig(rules=[probe]))
    transitions: list[dict[str, Any]] = []
    evaluations = 0
    try:
        t = first
        while t <= end:
            clock[0] = t
            for tr in engine.evaluate_once():
                transitions.append(
                    {
                        "at": tr.at,
                        "labels": tr.labels,
                        "from": str(tr.from_state),
                        "to": str(tr.to_state),
                        "value": tr.value,
                        "reason": tr.reason,
                    }
                )
            evaluations += 1
            t += every
    finally:
        engine.close()
    return {
        "rule": rule.name,
        "from": start,
        "to": end,
        "step": every,
        "evaluations": evaluations,
        "transitions": transitions,
        "intervals": intervals(transitions),
    }


def intervals(transitions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Group transitions into one interval per firing: pending, fired and resolved times.

    An interval still firing at the end of the range has `resolved_at` null.
    """
    out: list[dict[str, Any]] = []
    open_by_group: dict[str, dict[str, Any]] = {}
    pending: dict[str, float] = {}
    for tr in transitions:
        key = repr(sorted(tr["labels"].items()))
        to = tr["to"]
        if to == str(State.PENDING):
            pending[key] = tr["at"]
        elif to == str(State.FIRING):
            item = {
                "labels": tr["labels"],
                "pending_at": pending.pop(key, tr["at"]),
                "fired_at": tr["at"],
                "resolved_at": None,
                "value": tr["value"],
            }
            open_by_group[key] = item
            out.append(item)
        elif to == str(State.RESOLVED) and key in open_by_group:
            open_by_group.pop(key)["resolved_at"] = tr["at"]
        elif to == str(State.INACTIVE):
            pending.pop(key, None)
    return out
