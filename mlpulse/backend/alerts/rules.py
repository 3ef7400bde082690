"""Alert rules and the rules file: models, YAML loading and validation messages.

A rules file (YAML) holds ``channels`` and ``rules``::

    channels:
      - {name: console, type: console}
    rules:
      - name: high_error_rate
        signal: error_rate_percent
        comparison: ">"
        threshold: 5
        clear_threshold: 4
        window: 5m
        for: 1m
        min_samples: 20
        severity: critical
        group_by: service
        channels: [console]

String values may reference environment variables as ``${env:NAME}`` (for secrets kept
out of the file).
"""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mlpulse.backend.alerts import templates
from mlpulse.backend.alerts.durations import DURATION_FIELDS, Duration, format_duration
from mlpulse.backend.alerts.timeintervals import TimeInterval
from mlpulse.backend.alerts.yaml_lines import Path as YamlPath
from mlpulse.backend.alerts.yaml_lines import line_of, node_lines, parse_path
from mlpulse.backend.notify.channels import CHANNEL_TYPES, Channel
from mlpulse.backend.query.signals import SIGNALS as QUERY_SIGNALS

SIGNALS: tuple[str, ...] = tuple(QUERY_SIGNALS)
"""The signals a rule can watch: every named signal of the query layer (docs/contracts.md)."""

Comparison = Literal[">", ">=", "<", "<="]
Severity = Literal["info", "warning", "critical"]
GroupBy = Literal["service", "instance", "route", "model", "version", "none"]
"""``instance``: one alert per instance of a service (labels ``service``, ``instance``:
no-data alerting per instance). ``version``: one alert per model version (labels
``model`` and ``version``), judged against that version's own baseline and references;
it resolves once the version is retired
(`mlpulse.backend.query.versions.retired_versions`)."""

GROUP_KEYS: dict[str, list[str]] = {
    "service": ["service"],
    "instance": ["service", "instance"],
    "route": ["route"],
    "model": ["model"],
    "version": ["model", "version"],
    "none": [],
}
"""The query layer's group keys of each ``group_by``."""

FILTER_KEYS = ("service", "instance", "route", "method", "status", "model", "version", "mountpoint")
"""Labels a rule may filter on (the query layer's group keys)."""

_NAME = r"^[A-Za-z0-9_.:-]{1,100}$"
DEFAULT_RULES_FILE = "default_rules.yaml"


def compare(value: float, comparison: str, threshold: float) -> bool:
    """Return whether ``value <comparison> threshold`` holds."""
    if comparison == ">":
        return value > threshold
    if comparison == ">=":
        return value >= threshold
    if comparison == "<":
        return value < threshold
    return value <= threshold


class Rule(BaseModel):
    """One alert rule: a signal compared with a threshold, per group, over a window.

    The alert fires when ``signal <comparison> threshold`` has held for ``for`` with at
    least ``min_samples`` samples in the window, and stays firing while
    ``signal <comparison> clear_threshold`` (hysteresis) — plus ``keep_firing_for``.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(pattern=_NAME)
    signal: str = Field(description="a signal of docs/contracts.md, e.g. p95_latency_ms")
    comparison: Comparison
    threshold: float = Field(allow_inf_nan=False)
    clear_threshold: float | None = Field(
        default=None, allow_inf_nan=False, description="default: the threshold (no hysteresis)"
    )
    window: Duration = Field(default=300.0, description="the signal is computed over this window")
    for_: Duration = Field(default=60.0, alias="for", description="how long before pending fires")
    keep_firing_for: Duration = 0.0
    min_samples: int = Field(default=1, ge=0, le=10**9)
    min_coverage_percent: float | None = Field(
        default=None,
        ge=0.0,
        le=100.0,
        allow_inf_nan=False,
        description="readiness of label-based rules: the group's label_coverage_percent "
        "over the window must reach this before the rule may breach",
    )
    severity: Severity = "warning"
    group_by: GroupBy = "service"
    filters: dict[str, str] = Field(
        default_factory=dict, description="label filters, e.g. {service: mlapi}"
    )
    channels: list[str] = Field(default_factory=lambda: ["console"], max_length=20)
    enabled: bool = True
    repeat_interval: Duration | None = Field(
        default=None, description="re-notify while firing; default: the repeat_interval setting"
    )
    description: str = Field(default="", max_length=2000)
    title: str | None = Field(
        default=None,
        max_length=1000,
        description="Jinja2 template of the notification's title (backend.alerts.templates)",
    )
    message: str | None = Field(
        default=None, max_length=4000, description="Jinja2 template of the notification's text"
    )
    mute_time_intervals: list[str] = Field(
        default_factory=list, max_length=20, description="names of time_intervals"
    )

    @field_validator("title", "message")
    @classmethod
    def _template_renders(cls, source: str | None) -> str | None:
        if source is None:
            return None
        try:
            return templates.check(source)
        except templates.TemplateInvalid as exc:
            raise ValueError(str(exc)) from None

    @field_validator("signal")
    @classmethod
    def _known_signal(cls, signal: str) -> str:
        if signal not in QUERY_SIGNALS:
            raise ValueError(f"unknown signal {signal[:100]!r}; one of: {', '.join(SIGNALS)}")
        return signal

    @model_validator(mode="after")
    def _check(self) -> Rule:
        if self.window <= 0:
            raise ValueError("window must be > 0")
        if self.clear_threshold is not None:
            upward = self.comparison in (">", ">=")
            if upward and self.clear_threshold > self.threshold:
                raise ValueError(
                    f"clear_threshold ({self.clear_threshold}) must be <= threshold "
                    f"({self.threshold}) when comparison is '{self.comparison}'"
                )
            if not upward and self.clear_threshold < self.threshold:
                raise ValueError(
                    f"clear_threshold ({self.clear_threshold}) must be >= threshold "
                    f"({self.threshold}) when comparison is '{self.comparison}'"
                )
        bad = [key for key in self.filters if key not in FILTER_KEYS]
        if bad:
            raise ValueError(f"filters: unknown label {bad[0]!r} ({', '.join(FILTER_KEYS)})")
        return self

    @property
    def effective_clear_threshold(self) -> float:
        """The threshold the value must cross back over for the alert to resolve."""
        return self.threshold if self.clear_threshold is None else self.clear_threshold

    def breaches(self, value: float) -> bool:
        """Return whether ``value`` crosses the firing threshold."""
        return compare(value, self.comparison, self.threshold)

    def still_bad(self, value: float) -> bool:
        """Return whether a firing alert with ``value`` stays firing (hysteresis band)."""
        return compare(value, self.comparison, self.effective_clear_threshold)


class AlertConfig(BaseModel):
    """The whole alerting configuration: channels, rules and mute time intervals."""

    model_config = ConfigDict(extra="forbid")

    channels: list[Channel] = Field(default_factory=list, max_length=100)
    rules: list[Rule] = Field(default_factory=list, max_length=1000)
    time_intervals: list[TimeInterval] = Field(default_factory=list, max_length=100)

    @model_validator(mode="after")
    def _check_references(self) -> AlertConfig:
        names = [c.name for c in self.channels]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"channels[{i}].name: duplicate channel name {name!r}")
        interval_names = [t.name for t in self.time_intervals]
        for i, name in enumerate(interval_names):
            if name in interval_names[:i]:
                raise ValueError(f"time_intervals[{i}].name: duplicate interval name {name!r}")
        for kind, items in (("channels", self.channels), ("rules", self.rules)):
            for i, item in enumerate(items):
                for ref in item.mute_time_intervals:
                    if ref not in interval_names:
                        raise ValueError(
                            f"{kind}[{i}].mute_time_intervals: {item.name!r} names unknown "
                            f"time interval {ref!r} "
                            f"(defined: {', '.join(interval_names) or 'none'})"
                        )
        rule_names = [r.name for r in self.rules]
        for i, rule in enumerate(self.rules):
            if rule.name in rule_names[:i]:
                raise ValueError(f"rules[{i}].name: duplicate rule name {rule.name!r}")
            for channel in rule.channels:
                if channel not in names:
                    raise ValueError(
                        f"rules[{i}].channels: rule {rule.name!r} names unknown channel "
                        f"{channel!r} "
                        f"(defined: {', '.join(names) or 'none'})"
                    )
        return self

    def rule(self, name: str) -> Rule | None:
        """Return the rule called ``name``, if any."""
        return next((r for r in self.rules if r.name == name), None)

    def channel(self, name: str) -> Channel | None:
        """Return the channel called ``name``, if any."""
        return next((c for c in self.channels if c.name == name), None)

    def intervals(self, names: list[str]) -> list[TimeInterval]:
        """Return the time intervals called ``names`` (unknown names are skipped)."""
        return [t for t in self.time_intervals if t.name in names]

    def dump(self, *, reveal: bool = False, given: bool = False) -> dict[str, Any]:
        """Return a JSON-ready dict; secrets are ``[REDACTED]`` unless ``reveal``; only
        the fields given (not defaulted) with ``given``."""
        return self.model_dump(
            mode="json", by_alias=True, context={"reveal": reveal}, exclude_unset=given
        )


class ConfigError(ValueError):
    """An invalid configuration; the message names the offending field (and, for a YAML
    document, its line). ``errors`` holds one message per problem."""

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.errors = errors if errors is not None else [message]


def format_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """Render a pydantic error as ``rules[2].threshold: Input should be a valid number``."""
    return "; ".join(validation_messages(exc, prefix))


def validation_messages(exc: ValidationError, prefix: str = "") -> list[str]:
    """Return one ``path: message`` line per error of ``exc``."""
    lines = []
    for err in exc.errors(include_url=False, include_input=False):
        path = prefix
        for part in err["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            elif part in CHANNEL_TYPES or "[" in str(part):
                continue  # discriminator and validator tags add nothing for a reader
            else:
                path += f".{part}" if path else str(part)
        message = str(err["msg"]).removeprefix("Value error, ")
        lines.append(f"{path}: {message}" if path else message)
    return lines


_ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand_env(node: Any, memo: dict[int, Any] | None = None) -> Any:
    if isinstance(node, str):
        return _ENV_REF.sub(lambda m: os.environ.get(m.group(1), ""), node)
    if not isinstance(node, list | dict):
        return node
    # YAML aliases share nodes: expand each once, so an alias "bomb" stays linear.
    memo = {} if memo is None else memo
    if id(node) in memo:
        return memo[id(node)]
    if isinstance(node, list):
        out: Any = [_expand_env(item, memo) for item in node]
    else:
        out = {key: _expand_env(value, memo) for key, value in node.items()}
    memo[id(node)] = out
    return out


def parse_config(data: Any, lines: dict[YamlPath, int] | None = None) -> AlertConfig:
    """Validate a decoded rules document; raise `ConfigError` naming the bad field (and
    its line, given the document's `yaml_lines.node_lines`)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            "the rules document must be a mapping with 'channels', 'rules' and 'time_intervals'"
        )
    try:
        return AlertConfig.model_validate(data)
    except ValidationError as exc:
        messages = validation_messages(exc)
        if lines is not None:
            messages = [_with_line(lines, m) for m in messages]
        raise ConfigError("; ".join(messages), messages) from None


def _with_line(lines: dict[YamlPath, int], message: str) -> str:
    line = line_of(lines, parse_path(message))
    return message if line is None else f"line {line}: {message}"


def load_yaml(text: str) -> AlertConfig:
    """Parse a YAML rules document, expanding ``${env:NAME}`` references; errors name
    their line (``line 12: rules[2].threshold: Input should be a valid number``)."""
    try:
        data = _expand_env(yaml.safe_load(text))
        lines = node_lines(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError(f"{where}invalid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError("invalid YAML: nested too deeply") from None
    return parse_config(data, lines)


def default_rules_text() -> str:
    """Return the text of the rules file shipped with mlpulse."""
    shipped = resources.files("mlpulse.backend").joinpath(DEFAULT_RULES_FILE)
    return shipped.read_text(encoding="utf-8")


def read_rules_file(path: Path | None) -> tuple[str, AlertConfig]:
    """Return the text and parsed config of ``path``, or of the shipped default."""
    text = default_rules_text() if path is None else path.read_text(encoding="utf-8")
    return text, load_yaml(text)


_CHANNEL_DURATIONS = ("group_wait", "group_interval", "repeat_interval")


def _canonical(item: BaseModel, durations: tuple[str, ...]) -> dict[str, Any]:
    """An item as a rules file writes it: the fields its file or client gave (defaults
    stay implicit), durations as ``5m``, whole numbers without ``.0``; ``name`` and
    ``type`` first."""
    data = item.model_dump(mode="json", by_alias=True, exclude_unset=True)
    fields = type(item).model_fields
    data = {
        k: v
        for k, v in data.items()
        if not (v is None and k in fields and fields[k].default is None)
    }
    head = {key: getattr(item, key) for key in ("name", "type") if hasattr(item, key)}
    out: dict[str, Any] = {**head, **{k: v for k, v in data.items() if k not in head}}
    for key, value in out.items():
        if key in durations and isinstance(value, int | float):
            out[key] = format_duration(value)
        elif isinstance(value, float) and value.is_integer():
            out[key] = int(value)
    return out


def dump_yaml(config: AlertConfig) -> str:
    """Render ``config`` as a rules file (secrets redacted, defaults left out), the form
    `mlpulse rules export` writes and `load_yaml` reads back to the same configuration."""
    data: dict[str, Any] = {
        "channels": [_canonical(c, _CHANNEL_DURATIONS) for c in config.channels],
        "rules": [_canonical(r, DURATION_FIELDS) for r in config.rules],
    }
    if config.time_intervals:
        data["time_intervals"] = [_canonical(t, ()) for t in config.time_intervals]
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
