"""One rule at a time: create, replace, delete — the rule editor's changes — with errors
that name the field, so the page shows each one next to its input.

    new = upsert_rule(engine.config, body, replacing="high_error_rate")
    new = delete_rule(engine.config, "high_error_rate")

Both raise `RuleErrors`, whose `.errors` is ``[{"field": "threshold", "msg": "..."}]``
(the rule's own field names, ``for`` included), and whose text is the one-line message.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from mlpulse.backend.alerts.configure import ConfigureIn, merge
from mlpulse.backend.alerts.rules import AlertConfig, ConfigError, Rule, format_validation_error

RULE_FIELDS = (
    "name", "signal", "comparison", "threshold", "clear_threshold", "window", "for",
    "keep_firing_for", "min_samples", "severity", "group_by", "filters", "channels",
    "enabled", "repeat_interval", "description",
)  # fmt: skip
_ITEM = re.compile(r"^rules\[\d+\]\.?")


class RuleErrors(ValueError):
    """A rule the configuration refuses, with one error per offending field."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__(
            "; ".join(f"{e['field']}: {e['msg']}" if e["field"] else e["msg"] for e in errors)
        )
        self.errors = errors


def field_errors(message: str) -> list[dict[str, str]]:
    """Split a configuration error ("rules[0].threshold: ...; ...") into field errors.

    A check across fields ("clear_threshold (5) must be <= threshold ...") is put on the
    first field it names.
    """
    out = []
    for part in message.split("; "):
        path, sep, msg = part.partition(": ")
        if not sep:
            path, msg = "", part
        field = _ITEM.sub("", path).split(".")[0].split("[")[0]
        if field in ("for_",):
            field = "for"
        if field not in RULE_FIELDS:
            named = [f for f in RULE_FIELDS if re.search(rf"\b{re.escape(f)}\b", msg)]
            field = min(named, key=msg.find) if named else ""
            msg = part if not sep or field else msg
        out.append({"field": field, "msg": msg})
    return out


def upsert_rule(
    config: AlertConfig, rule: dict[str, Any], *, replacing: str | None = None
) -> AlertConfig:
    """Return `config` with `rule` added (replacing=None) or put in place of `replacing`."""
    name = str(rule.get("name", ""))
    if replacing is None and config.rule(name) is not None:
        raise RuleErrors([{"field": "name", "msg": f"a rule named {name!r} exists already"}])
    if replacing is not None and config.rule(replacing) is None:
        raise KeyError(replacing)
    if replacing is not None and name != replacing and config.rule(name) is not None:
        raise RuleErrors([{"field": "name", "msg": f"a rule named {name!r} exists already"}])
    delete = [replacing] if replacing is not None and replacing != name else []
    try:
        return merge(config, ConfigureIn(rules=[rule], delete_rules=delete))
    except ConfigError as exc:
        raise RuleErrors(field_errors(str(exc))) from None


def delete_rule(config: AlertConfig, name: str) -> AlertConfig:
    """Return `config` without the rule `name` (KeyError when there is none)."""
    if config.rule(name) is None:
        raise KeyError(name)
    return merge(config, ConfigureIn(delete_rules=[name]))


def parse_rule(rule: dict[str, Any]) -> Rule:
    """Validate a rule on its own (the preview's input); raise `RuleErrors`."""
    try:
        return Rule.model_validate(rule)
    except ValidationError as exc:
        raise RuleErrors(field_errors(format_validation_error(exc))) from None
