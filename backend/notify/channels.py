"""Channel configurations: where notifications go (console, file, webhook, email).

A channel is named; rules list channel names. Secret fields (a webhook's HMAC secret, an
SMTP password) are `SecretStr`: they render as ``[REDACTED]`` unless serialized with the
context ``{"reveal": True}``, which only the persistence layer uses.
"""

from __future__ import annotations

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
)

REDACTED = "[REDACTED]"
"""What a secret looks like in every API response and log line."""

_NAME = r"^[A-Za-z0-9_.:-]{1,100}$"


def _reveal(info: SerializationInfo) -> bool:
    context = info.context
    return isinstance(context, dict) and bool(context.get("reveal"))


class _Channel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME, description="unique channel name, referenced by rules")
    description: str = Field(default="", max_length=1000)


class ConsoleChannel(_Channel):
    """Log each notification through Python logging (logger ``mlpulse.alerts``)."""

    type: Literal["console"] = "console"
    level: Literal["info", "warning", "error"] = "warning"


class FileChannel(_Channel):
    """Append each notification as one JSON line to a file (relative paths: the data dir)."""

    type: Literal["file"] = "file"
    path: str = Field(default="alerts.jsonl", min_length=1, max_length=1000)

    def resolve(self, data_dir: Path) -> Path:
        """Return the absolute file path, relative paths taken from the data dir."""
        path = Path(self.path).expanduser()
        return path if path.is_absolute() else (data_dir / path)


class WebhookChannel(_Channel):
    """POST a JSON body, signed with HMAC-SHA256 when a secret is set.

    Headers: ``X-Mlpulse-Signature: sha256=<hex HMAC of the body>``,
    ``X-Mlpulse-Timestamp: <unix seconds>`` and ``X-Mlpulse-Delivery: <id>``.
    """

    type: Literal["webhook"] = "webhook"
    url: str = Field(max_length=2000)
    secret: SecretStr | None = None
    timeout: float | None = Field(
        default=None, gt=0, le=120, description="seconds; default setting"
    )
    max_attempts: int | None = Field(default=None, ge=1, le=20)

    @field_validator("url")
    @classmethod
    def _http_only(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError("only http:// and https:// URLs are allowed")
        if not parts.hostname:
            raise ValueError("the URL has no host")
        if parts.username or parts.password:
            raise ValueError("credentials in the URL are not allowed; use the secret field")
        return url

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


Channel = Annotated[
    ConsoleChannel | FileChannel | WebhookChannel | EmailChannel,
    Field(discriminator="type"),
]

SECRET_FIELDS: dict[str, tuple[str, ...]] = {"webhook": ("secret",), "email": ("password",)}
"""Per channel type, the fields that hold secrets."""


def channel_secrets(channel: BaseModel) -> list[str]:
    """Return the secret values configured on ``channel`` (to check nothing leaks)."""
    out = []
    for field in SECRET_FIELDS.get(str(getattr(channel, "type", "")), ()):
        value: Any = getattr(channel, field, None)
        if isinstance(value, SecretStr) and value.get_secret_value():
            out.append(value.get_secret_value())
    return out
