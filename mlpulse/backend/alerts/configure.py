"""Changing the alert configuration through the API: merge, checks, version (ETag).

`POST /alerts/configure` sends a `ConfigureIn`: rules and channels upserted by name,
deletions, or a whole replacement. `merge(current, change)` builds the new configuration
(all or nothing, messages naming the offending field); `check_channels` refuses what may
not be saved (a webhook URL or an SMTP host the SSRF guard refuses, a file path outside
the file channels' folder or onto the backend's own files); `etag(config, key)` is the
version a client sends back in `If-Match`, so that two editors working from the same
read cannot silently overwrite each other (the second gets 412):

    tag = etag(engine.config, api_token)       # GET: ETag header
    if not if_match_ok(request_header, tag):   # POST: 412 Precondition Failed
        ...

Secrets round-trip: a channel sent back as a GET showed it — ``[REDACTED]`` for a secret
or a password, the redacted form of a webhook URL (`redact_url`) — keeps the stored value.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, TypeAdapter, ValidationError

from mlpulse.backend.alerts.config import AlertSettings
from mlpulse.backend.alerts.rules import (
    AlertConfig,
    ConfigError,
    Rule,
    format_validation_error,
    parse_config,
)
from mlpulse.backend.alerts.timeintervals import TimeInterval
from mlpulse.backend.notify.channels import (
    REDACTED,
    SECRET_FIELDS,
    AlertmanagerChannel,
    Channel,
    EmailChannel,
    FileChannel,
    FilePathRefused,
    WebhookChannel,
    redact_url,
)
from mlpulse.backend.notify.file import protected_files
from mlpulse.backend.notify.ssrf import Policy, UrlRefused, check_host, check_url

_CHANNEL: TypeAdapter[Any] = TypeAdapter(Channel)


class ConfigureIn(BaseModel):
    """A change to the configuration: upserts by name, deletions, or a full replace."""

    model_config = ConfigDict(extra="forbid")

    rules: list[dict[str, Any]] = Field(default_factory=list, max_length=1000)
    channels: list[dict[str, Any]] = Field(default_factory=list, max_length=100)
    time_intervals: list[dict[str, Any]] = Field(default_factory=list, max_length=100)
    delete_rules: list[str] = Field(default_factory=list, max_length=1000)
    delete_channels: list[str] = Field(default_factory=list, max_length=100)
    delete_time_intervals: list[str] = Field(default_factory=list, max_length=100)
    replace: bool = Field(
        default=False,
        description="replace the whole configuration with rules + channels + time_intervals",
    )

    @classmethod
    def replacing(cls, document: AlertConfig) -> ConfigureIn:
        """The change that replaces the configuration with ``document`` (a rules file)."""
        return cls(
            rules=[r.model_dump(by_alias=True, exclude_unset=True) for r in document.rules],
            channels=[
                c.model_dump(mode="json", context={"reveal": True}, exclude_unset=True)
                for c in document.channels
            ],
            time_intervals=[
                t.model_dump(mode="json", exclude_unset=True) for t in document.time_intervals
            ],
            replace=True,
        )


def etag(config: AlertConfig, key: str) -> str:
    """Return the configuration's version as a quoted strong ETag.

    Keyed by the API token, so it changes when a secret does without revealing it, and
    agrees between replicas that share the token.
    """
    canonical = json.dumps(config.dump(reveal=True), sort_keys=True, separators=(",", ":"))
    digest = hmac.new(key.encode(), canonical.encode(), hashlib.sha256).hexdigest()
    return f'"{digest[:32]}"'


def if_match_ok(header: str | None, current: str) -> bool:
    """True when there is no `If-Match`, it is ``*``, or it lists the current ETag."""
    if header is None:
        return True
    for tag in header.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == current:
            return True
    return False


def _keep_secrets(new: dict[str, Any], old: Any) -> dict[str, Any]:
    """Replace redacted placeholders by the stored values of the same channel."""
    out = dict(new)
    same_type = old is not None and getattr(old, "type", None) == new.get("type")
    for field in SECRET_FIELDS.get(str(new.get("type")), ()):
        if out.get(field) != REDACTED:
            continue
        stored = getattr(old, field, None) if same_type else None
        if not isinstance(stored, SecretStr):
            raise ConfigError(
                f"channels.{new.get('name')}.{field}: '{REDACTED}' only keeps a stored secret; "
                "give the secret"
            )
        out[field] = stored.get_secret_value()
    url = out.get("url")
    url_types = ("webhook", "prometheus-alertmanager")
    if new.get("type") in url_types and isinstance(url, str) and REDACTED in url:
        stored_url = getattr(old, "url", None) if same_type else None
        if not isinstance(stored_url, str) or redact_url(stored_url) != url:
            raise ConfigError(
                f"channels.{new.get('name')}.url: a redacted URL only keeps the stored one "
                "(same scheme, host and port); give the whole URL"
            )
        out["url"] = stored_url
    return out


def _validate_item(kind: str, index: int, item: dict[str, Any]) -> None:
    """Validate one submitted rule or channel, so the message points into the body."""
    try:
        if kind == "rules":
            Rule.model_validate(item)
        elif kind == "time_intervals":
            TimeInterval.model_validate(item)
        else:
            _CHANNEL.validate_python(item)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, prefix=f"{kind}[{index}]")) from None


def merge(current: AlertConfig, change: ConfigureIn) -> AlertConfig:
    """Return the configuration `change` makes of `current`; raise ConfigError."""
    channels: dict[str, dict[str, Any]] = {}
    rules: dict[str, dict[str, Any]] = {}
    intervals: dict[str, dict[str, Any]] = {}
    # exclude_unset: the fields a rules file or a client gave stay the only ones given, so
    # an export writes them back as they were written (defaults stay implicit).
    if not change.replace:
        for c in current.channels:
            channels[c.name] = c.model_dump(
                mode="json", context={"reveal": True}, exclude_unset=True
            )
        for r in current.rules:
            rules[r.name] = r.model_dump(mode="json", by_alias=True, exclude_unset=True)
        for t in current.time_intervals:
            intervals[t.name] = t.model_dump(mode="json", exclude_unset=True)
    for name in change.delete_time_intervals:
        if intervals.pop(name, None) is None:
            raise ConfigError(f"delete_time_intervals: no time interval {name!r}")
    for name in change.delete_channels:
        if channels.pop(name, None) is None:
            raise ConfigError(f"delete_channels: no channel {name!r}")
    for name in change.delete_rules:
        if rules.pop(name, None) is None:
            raise ConfigError(f"delete_rules: no rule {name!r}")
    for i, channel in enumerate(change.channels):
        channel = _keep_secrets(channel, current.channel(str(channel.get("name"))))
        _validate_item("channels", i, channel)
        channels[str(channel["name"])] = channel
    for i, rule in enumerate(change.rules):
        _validate_item("rules", i, rule)
        rules[str(rule["name"])] = rule
    for i, interval in enumerate(change.time_intervals):
        _validate_item("time_intervals", i, interval)
        intervals[str(interval["name"])] = interval
    # Cross-references (channels, time intervals) are checked on the merged configuration.
    return parse_config(
        {
            "channels": list(channels.values()),
            "rules": list(rules.values()),
            "time_intervals": list(intervals.values()),
        }
    )


def check_channels(
    config: AlertConfig,
    names: list[str],
    settings: AlertSettings,
    policy: Policy,
    data_dir: Path,
) -> None:
    """Refuse (ConfigError) the named channels the guards refuse. Resolves host names:
    run it off the event loop."""
    folder = settings.file_dir(data_dir)
    protected = protected_files(data_dir, [settings.db_path(data_dir)])
    for i, name in enumerate(names):
        channel = config.channel(name)
        if isinstance(channel, WebhookChannel | AlertmanagerChannel):
            try:
                check_url(channel.url, policy)
            except UrlRefused as exc:
                raise ConfigError(f"channels[{i}].url: {exc}") from None
        elif isinstance(channel, EmailChannel):
            try:
                check_host(channel.host.strip("[]"), channel.port, policy)
            except UrlRefused as exc:
                raise ConfigError(f"channels[{i}].host: {exc}") from None
        elif isinstance(channel, FileChannel):
            if data_dir.resolve().is_relative_to(folder.resolve()):
                raise ConfigError(
                    f"channels[{i}].path: the file channel folder {folder} holds the data "
                    "directory; set MLPULSE_ALERT_FILE_DIR to a folder of its own"
                )
            try:
                channel.resolve(folder, protected)
            except FilePathRefused as exc:
                raise ConfigError(f"channels[{i}].path: {exc}") from None
