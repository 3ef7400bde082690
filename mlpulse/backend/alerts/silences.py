"""Silences: label matchers with a time range; a silenced alert still changes state and is
recorded in the history, but sends nothing.

Matchers follow Alertmanager: ``{"name": "service", "op": "=", "value": "mlapi"}`` with
``op`` one of ``=``, ``!=``, ``=~`` (regex, full match), ``!~``. The labels an alert offers
are its group labels plus ``alertname`` (the rule's name) and ``severity``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Matcher(BaseModel):
    """One label condition."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    op: Literal["=", "!=", "=~", "!~"] = "="
    value: str = Field(max_length=512)

    @model_validator(mode="after")
    def _regex_compiles(self) -> Matcher:
        if self.op in ("=~", "!~"):
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"value: invalid regular expression: {exc}") from None
        return self

    def matches(self, labels: dict[str, str]) -> bool:
        """Return whether ``labels`` satisfy this matcher (a missing label is ``""``)."""
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = re.fullmatch(self.value, actual) is not None
        return found if self.op == "=~" else not found


class SilenceIn(BaseModel):
    """A silence as the API receives it (``starts_at`` defaults to now)."""

    model_config = ConfigDict(extra="forbid")

    matchers: list[Matcher] = Field(min_length=1, max_length=20)
    starts_at: float | None = None
    ends_at: float | None = Field(default=None, description="epoch seconds; or give duration")
    duration: float | None = Field(default=None, gt=0, le=366 * 86400, description="seconds")
    created_by: str = Field(default="api", max_length=200)
    comment: str = Field(default="", max_length=2000)

    @field_validator("matchers")
    @classmethod
    def _not_everything(cls, matchers: list[Matcher]) -> list[Matcher]:
        if all(m.op in ("=~",) and m.value in (".*", "") for m in matchers):
            raise ValueError("a silence must not match every alert")
        return matchers

    @model_validator(mode="after")
    def _range(self) -> SilenceIn:
        if (self.ends_at is None) == (self.duration is None):
            raise ValueError("give exactly one of ends_at or duration")
        return self


def alert_labels(rule: str, severity: str, labels: dict[str, str]) -> dict[str, str]:
    """Return the labels a silence matches against."""
    return {**labels, "alertname": rule, "severity": severity}


def silenced_by(silences: list[dict[str, Any]], labels: dict[str, str], now: float) -> str | None:
    """Return the id of an active silence matching ``labels``, if any."""
    for silence in silences:
        if not silence["starts_at"] <= now < silence["ends_at"]:
            continue
        matchers = [Matcher.model_validate(m) for m in silence["matchers"]]
        if all(m.matches(labels) for m in matchers):
            return str(silence["id"])
    return None
