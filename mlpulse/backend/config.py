"""Backend settings, read from `MLPULSE_*` environment variables (pydantic-settings).

`BackendSettings()` reads the environment; tests pass values directly:

    settings = BackendSettings(data_dir=tmp_path, api_token="t0ken")

`resolve_api_token(settings)` returns the bearer token for state-changing routes: the
configured one, or one generated once and kept in `<data_dir>/api-token` (mode 0600).
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

TOKEN_FILE = "api-token"  # noqa: S105 - a file name, not a secret
DATABASE_FILE = "mlpulse.db"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class BackendSettings(BaseSettings):
    """Everything the backend can be told, one `MLPULSE_<NAME>` variable per field."""

    model_config = SettingsConfigDict(env_prefix="MLPULSE_", extra="ignore")

    data_dir: Path = Path("./.data")
    api_token: SecretStr | None = None
    mlapi_url: str = "http://127.0.0.1:8002"
    # Where trace links point; empty means no Jaeger, and the page hides the links.
    jaeger_ui_url: str = ""
    # Where the page's files are; unset: the source tree, then <prefix>/share/mlpulse.
    dashboard_dir: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8003

    # Untrusted input limits (OTLP ingest). Excess points are refused via partial_success.
    max_body_bytes: int = Field(default=8 * 1024 * 1024, gt=0)  # after decompression
    max_attributes_per_point: int = Field(default=32, gt=0)  # resource and point, each
    max_attribute_key_length: int = Field(default=128, gt=0)
    max_attribute_value_length: int = Field(default=1024, gt=0)
    max_series: int = Field(default=50_000, gt=0)  # active: with a point in the last hour
    max_exemplars_per_bucket: int = Field(default=4, ge=0)
    max_inflight_exports: int = Field(default=8, gt=0)  # beyond it: 429 + Retry-After
    # OTLP ingest is open by default, like a collector's receiver on loopback; set this
    # when the port is reachable by others, and give producers the header through
    # OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer%20<token>".
    ingest_require_token: bool = False
    # Points dated more than this ahead of the server clock are refused (partial_success),
    # as are points older than the longest retention (plus the same grace, for skew).
    ingest_future_grace: timedelta = timedelta(minutes=10)

    # Storage. Empty: SQLite at <data_dir>/mlpulse.db. Else `sqlite:///path/to.db` or
    # `postgresql://user[:password]@host:port/dbname` (replicas share one database).
    storage_url: str = ""
    postgres_pool_size: int = Field(default=10, gt=0, le=200)
    sqlite_busy_timeout_ms: int = Field(default=2_000, ge=0)
    # NORMAL in WAL mode: a committed transaction survives a crash of the process (kill -9);
    # FULL also survives power loss, at an fsync per commit.
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    # How often the engine writes its in-memory head to the database (and cuts the WAL).
    checkpoint_interval_s: float = Field(default=2.0, gt=0, le=60)
    # Ingest answers 503 + Retry-After once the head could not be written for this long.
    checkpoint_backlog_s: float = Field(default=30.0, gt=0)
    retention_10s: timedelta = timedelta(hours=24)
    retention_1m: timedelta = timedelta(days=7)
    retention_1h: timedelta = timedelta(days=90)
    maintenance_interval_s: float = Field(default=60.0, gt=0)
    # Dashboard "now" figures: an instance silent for longer is shown stopped, and its
    # uptime, memory and CPU leave the figures (six missed exports at the 5 s default).
    stale_after_s: float = Field(default=30.0, ge=5, le=3600)

    @field_validator(
        "retention_10s", "retention_1m", "retention_1h", "ingest_future_grace", mode="before"
    )
    @classmethod
    def _duration(cls, value: Any) -> Any:
        """Accept `3600`, `90s`, `30m`, `24h`, `7d`, `2w` besides ISO-8601 (`P7D`)."""
        if isinstance(value, str):
            m = _DURATION.match(value)
            if m:
                return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2) or "s"])
        return value

    @field_validator("storage_url")
    @classmethod
    def _storage_url(cls, value: str) -> str:
        value = value.strip()
        if value and not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("must be sqlite:///path/to.db or postgresql://user@host:port/dbname")
        if value.startswith("sqlite:///") and len(value) == len("sqlite:///"):
            raise ValueError("sqlite:/// needs a file path, e.g. sqlite:///var/lib/mlpulse.db")
        return value

    @property
    def database_path(self) -> Path:
        """The SQLite file holding series, aggregates and ingest state."""
        if self.storage_url.startswith("sqlite:///"):
            return Path(self.storage_url[len("sqlite:///") :])
        return self.data_dir / DATABASE_FILE

    @property
    def postgres_url(self) -> str | None:
        """The PostgreSQL URL when the store is shared, else None (embedded SQLite)."""
        if self.storage_url.startswith(("postgresql://", "postgres://")):
            return self.storage_url
        return None

    def retention_seconds(self) -> dict[int, int]:
        """Retention per resolution, as {resolution seconds: seconds to keep}."""
        return {
            10: int(self.retention_10s.total_seconds()),
            60: int(self.retention_1m.total_seconds()),
            3600: int(self.retention_1h.total_seconds()),
        }


def resolve_api_token(settings: BackendSettings) -> str:
    """Return the API token: configured, else read from or generated into the data dir."""
    if settings.api_token is not None and settings.api_token.get_secret_value():
        return settings.api_token.get_secret_value()
    path = settings.data_dir / TOKEN_FILE
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if path.exists():
        token = path.read_text(encoding="utf-8").strip()
        if token:
            log.info("API token read from %s", path)
            return token
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(token + "\n")
    os.chmod(path, 0o600)
    log.info("MLPULSE_API_TOKEN unset: generated a token and stored it in %s", path)
    return token
