"""Channel configurations: where notifications go (console, file, webhook, email, an
Alertmanager).

Every channel may group its notifications (``group_by``, ``group_wait``,
``group_interval``, ``repeat_interval``: `mlpulse.backend.alerts.grouping`) and reference mute
time intervals (``mute_time_intervals``: `mlpulse.backend.alerts.timeintervals`). A webhook's
``format`` picks the body: ``mlpulse`` (the native document), ``alertmanager`` (the
Alertmanager v4 webhook payload), ``slack`` (an incoming-webhook message) or
``pagerduty`` (Events API v2, ``routing_key`` required); see `mlpulse.backend.notify.formats`.

A channel is named; rules list channel names. Secret fields (a webhook's HMAC secret, an
SMTP password) are `SecretStr`: they render as ``[REDACTED]`` unless serialized with the
context ``{"reveal": True}``, which only the persistence layer uses. A webhook URL is
treated as a secret too (Slack's and many others carry their key in the path): it renders
as ``scheme://host[:port]/[REDACTED]`` (`redact_url`), and that form, sent back, keeps the
stored URL.

A file channel's path lies inside one folder (`MLPULSE_ALERT_FILE_DIR`, default
``<data dir>/alerts``): relative paths are taken from it, anything resolving elsewhere is
refused (`FileChannel.resolve`).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    SerializationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from mlpulse.backend.alerts.durations import Duration

REDACTED = "[REDACTED]"
"""What a secret looks like in every API response and log line."""

_NAME = r"^[A-Za-z0-9_.:-]{1,100}$"


def redact_url(url: str) -> str:
    """Return ``url`` with its path, query and fragment replaced by ``[REDACTED]``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
    except ValueError:
        return REDACTED
    if not (parts.path.strip("/") or parts.query or parts.fragment):
        return f"{parts.scheme}://{netloc}"
    return f"{parts.scheme}://{netloc}/{REDACTED}"


class FilePathRefused(ValueError):
    """A file channel's path lies outside its folder, or on a file the backend owns."""


def _reveal(info: SerializationInfo) -> bool:
    context = info.context
    return isinstance(context, dict) and bool(context.get("reveal"))


_LABEL = r"^([A-Za-z_][A-Za-z0-9_]{0,127}|\.\.\.)$"


class _Channel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME, description="unique channel name, referenced by rules")
    description: str = Field(default="", max_length=1000)
    group_by: list[Annotated[str, Field(pattern=_LABEL)]] | None = Field(
        default=None,
        max_length=20,
        description="group notifications by these labels ([] one group, ['...'] per "
        "alert); unset: one notification per alert transition, no grouping",
    )
    group_wait: Duration = Field(default=30.0, description="a new group waits this long")
    group_interval: Duration = Field(
        default=300.0, description="a group with changes sends at most this often"
    )
    repeat_interval: Duration | None = Field(
        default=None,
        description="a group still firing sends again after this; default: the "
        "MLPULSE_ALERT_REPEAT_INTERVAL setting",
    )
    mute_time_intervals: list[Annotated[str, Field(pattern=_NAME)]] = Field(
        default_factory=list, max_length=20, description="names of time_intervals"
    )
    send_resolved: bool = Field(
        default=True, description="also notify when alerts resolve (Alertmanager's meaning)"
    )

    @property
    def grouped(self) -> bool:
        """Whether this channel batches notifications into groups."""
        return self.group_by is not None


class ConsoleChannel(_Channel):
    """Log each notification through Python logging (logger ``mlpulse.alerts``)."""

    type: Literal["console"] = "console"
    level: Literal["info", "warning", "error"] = "warning"


class FileChannel(_Channel):
    """Append each notification as one JSON line to a file inside the file channels' folder
    (``MLPULSE_ALERT_FILE_DIR``, default ``<data dir>/alerts``; relative paths from it)."""

    type: Literal["file"] = "file"
    path: str = Field(default="alerts.jsonl", min_length=1, max_length=1000)

    def resolve(self, folder: Path, protected: frozenset[Path] = frozenset()) -> Path:
        """Return the file's absolute path (symlinks resolved) inside ``folder``.

        Raise FilePathRefused when it resolves outside the folder, onto a ``protected``
        file (the backend's database, its token) or onto something not a regular file.
        """
        root = folder.resolve()
        try:
            path = (root / Path(self.path).expanduser()).resolve()
            odd = path.exists() and not path.is_file()
        except (OSError, ValueError) as exc:  # a NUL byte, a loop, a name too long
            raise FilePathRefused(f"is not a usable path: {exc}") from None
        if not path.is_relative_to(root) or path == root:
            raise FilePathRefused(f"must be inside the file channel folder {root}")
        if path in protected:
            raise FilePathRefused("is one of the backend's own files")
        if odd:
            raise FilePathRefused("exists and is not a regular file")
        return path


def _http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("only http:// and https:// URLs are allowed")
    if not parts.hostname:
        raise ValueError("the URL has no host")
    if parts.username or parts.password:
        raise ValueError("credentials in the URL are not allowed; use the secret field")
    return url


WebhookFormat = Literal["mlpulse", "alertmanager", "slack", "pagerduty"]


class WebhookChannel(_Channel):
    """POST a JSON body, signed with HMAC-SHA256 when a secret is set.

    Headers: ``X-Mlpulse-Signature: sha256=<hex HMAC of the body>``,
    ``X-Mlpulse-Timestamp: <unix seconds>`` and ``X-Mlpulse-Delivery: <id>``.
    ``format`` picks the body (``mlpulse``, ``alertmanager``, ``slack``, ``pagerduty``).
    """

    type: Literal["webhook"] = "webhook"
    url: str = Field(max_length=2000)
    format: WebhookFormat = Field(default="mlpulse", description="the body's shape")
    secret: SecretStr | None = None
    routing_key: SecretStr | None = Field(
        default=None, description="PagerDuty integration key (format pagerduty)"
    )
    max_alerts: int = Field(
        default=0,
        ge=0,
        le=1000,
        description="alertmanager/slack: at most this many alerts "
        "per message (0: all); the rest are counted in truncatedAlerts",
    )
    timeout: float | None = Field(
        default=None, gt=0, le=120, description="seconds; default setting"
    )
    max_attempts: int | None = Field(default=None, ge=1, le=20)

    @field_validator("url")
    @classmethod
    def _http_only(cls, url: str) -> str:
        return _http_url(url)

    @model_validator(mode="after")
    def _pagerduty_key(self) -> WebhookChannel:
        if self.format == "pagerduty" and not (
            self.routing_key is not None and self.routing_key.get_secret_value()
        ):
            raise ValueError("routing_key: required with format pagerduty")
        return self

    @field_serializer("routing_key")
    def _routing_key(self, value: SecretStr | None, info: SerializationInfo) -> str | None:
        if value is None:
            return None
        return value.get_secret_value() if _reveal(info) else REDACTED

    @field_serializer("url")
    def _url(self, value: str, info: SerializationInfo) -> str:
        return value if _reveal(info) else redact_url(value)

    @field_serializer("secret")
    def _secret(self, value: SecretStr | None, info: SerializationInfo) -> str | None:
        if value is None:
            return None
        return value.get_secret_value() if _reveal(info) else REDACTED


class EmailChannel(_Channel):
    """Send a plain-text + HTML email over SMTP (STARTTLS when offered or required)."""

    type: Literal["email"] = "email"
    host: str = Field(min_length=1, max_length=255)
    port: int = Field(default=587, ge=1, le=65535)
    username: str | None = Field(default=None, max_length=255)
    password: SecretStr | None = None
    starttls: Literal["auto", "always", "never"] = Field(
        default="auto", description="auto: upgrade when the server offers STARTTLS"
    )
    ssl: bool = Field(default=False, description="implicit TLS (SMTPS, usually port 465)")
    from_addr: str = Field(min_length=3, max_length=320, pattern=r"^[^\s@<>]+@[^\s@<>]+$")
    to_addrs: list[
        Annotated[str, Field(min_length=3, max_length=320, pattern=r"^[^\s@<>]+@[^\s@<>]+$")]
    ] = Field(min_length=1, max_length=50)
    timeout: float = Field(default=10.0, gt=0, le=120)

    @field_serializer("password")
    def _password(self, value: SecretStr | None, info: SerializationInfo) -> str | None:
        if value is None:
            return None
        return value.get_secret_value() if _reveal(info) else REDACTED


class AlertmanagerChannel(_Channel):
    """POST alerts to a Prometheus Alertmanager's ``/api/v2/alerts``, the way Prometheus
    does, so its routing, grouping, inhibition and silences apply.

    ``url`` is the Alertmanager's base URL (``http://alertmanager:9093``). Firing alerts
    are sent again every ``repeat_interval`` (default 1m) with ``endsAt`` four intervals
    ahead, so Alertmanager keeps them active; a resolution sends ``endsAt`` = the
    resolution time. Defaults: one group for the channel, no wait.
    """

    type: Literal["prometheus-alertmanager"] = "prometheus-alertmanager"
    url: str = Field(max_length=2000)
    username: str | None = Field(default=None, max_length=255, description="basic auth")
    password: SecretStr | None = Field(default=None, description="basic auth")
    bearer_token: SecretStr | None = Field(
        default=None, description="Authorization: Bearer (an auth proxy in front of it)"
    )
    group_by: list[Annotated[str, Field(pattern=_LABEL)]] | None = Field(
        default_factory=list, max_length=20
    )
    group_wait: Duration = 0.0
    group_interval: Duration = 0.0
    repeat_interval: Duration | None = 60.0
    timeout: float | None = Field(
        default=None, gt=0, le=120, description="seconds; default setting"
    )
    max_attempts: int | None = Field(default=None, ge=1, le=20)

    @field_validator("url")
    @classmethod
    def _http_only(cls, url: str) -> str:
        return _http_url(url)

    @field_serializer("url")
    def _url(self, value: str, info: SerializationInfo) -> str:
        return value if _reveal(info) else redact_url(value)

    @model_validator(mode="after")
    def _always_grouped(self) -> AlertmanagerChannel:
        if self.group_by is None:
            raise ValueError(
                "group_by: this channel always groups (it refreshes alerts per group): "
                "use [] for one request with every alert, ['...'] for one per alert"
            )
        if not self.repeat_interval:
            raise ValueError(
                "repeat_interval: must be > 0: Alertmanager resolves alerts that are not sent again"
            )
        return self

    @field_serializer("password", "bearer_token")
    def _secrets(self, value: SecretStr | None, info: SerializationInfo) -> str | None:
        if value is None:
            return None
        return value.get_secret_value() if _reveal(info) else REDACTED

    def alerts_url(self) -> str:
        """The Alertmanager API endpoint alerts are posted to."""
        return self.url.rstrip("/") + "/api/v2/alerts"

    def auth_headers(self) -> dict[str, str]:
        """The Authorization header, when basic auth or a bearer token is set."""
        if self.bearer_token is not None and self.bearer_token.get_secret_value():
            return {"Authorization": f"Bearer {self.bearer_token.get_secret_value()}"}
        if self.username:
            secret = self.password.get_secret_value() if self.password else ""
            pair = base64.b64encode(f"{self.username}:{secret}".encode()).decode()
            return {"Authorization": f"Basic {pair}"}
        return {}


Channel = Annotated[
    ConsoleChannel | FileChannel | WebhookChannel | EmailChannel | AlertmanagerChannel,
    Field(discriminator="type"),
]

CHANNEL_TYPES = ("console", "file", "webhook", "email", "prometheus-alertmanager")

SECRET_FIELDS: dict[str, tuple[str, ...]] = {
    "webhook": ("secret", "routing_key"),
    "email": ("password",),
    "prometheus-alertmanager": ("password", "bearer_token"),
}
"""Per channel type, the fields that hold secrets."""


def channel_secrets(channel: BaseModel) -> list[str]:
    """Return the secret values configured on ``channel`` (to check nothing leaks)."""
    out: list[str] = []
    url = getattr(channel, "url", None)
    if isinstance(url, str) and redact_url(url) != url:
        parts = urlsplit(url)
        out.extend(p for p in (parts.path.strip("/"), parts.query) if p)
    for field in SECRET_FIELDS.get(str(getattr(channel, "type", "")), ()):
        value: Any = getattr(channel, field, None)
        if isinstance(value, SecretStr) and value.get_secret_value():
            out.append(value.get_secret_value())
    return out
