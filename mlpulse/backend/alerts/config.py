"""Alert settings, read from `MLPULSE_*` environment variables (pydantic-settings).

The data directory and the API token are the backend's (`mlpulse.backend.config`); these are the
alert engine's own knobs. Tests pass values directly:

    AlertSettings(webhook_allowed_hosts=["127.0.0.1:8765"], webhook_backoff_base=0.05)
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from mlpulse.backend.alerts.durations import Duration


class AlertSettings(BaseSettings):
    """The alert engine's settings, one `MLPULSE_<NAME>` variable per field."""

    model_config = SettingsConfigDict(env_prefix="MLPULSE_", extra="ignore")

    alert_rules_file: Path | None = Field(
        default=None, description="YAML rules file; unset: the shipped default_rules.yaml"
    )
    alert_db_file: str = Field(
        default="alerts.db", description="SQLite file, relative to the data dir"
    )
    alert_file_dir: Path | None = Field(
        default=None,
        description="the only folder file channels write in; unset: <data dir>/alerts",
    )
    alert_eval_interval: float = Field(default=5.0, gt=0, le=3600, description="seconds")
    alert_repeat_interval: Duration = Field(
        default=4 * 3600.0, description="re-notify while firing"
    )
    alert_enabled: bool = True
    alert_external_url: str = Field(
        default="http://127.0.0.1:8003",
        max_length=500,
        description="the backend's page as people reach it: links in Slack, PagerDuty, "
        "Alertmanager payloads (externalURL, generatorURL)",
    )
    alert_history_retention: Duration = Field(
        default=90 * 86400.0, description="history and receipts older than this are deleted"
    )

    webhook_allow_private: bool = Field(
        default=False, description="accept loopback/private webhook addresses (never metadata ones)"
    )
    webhook_allowed_hosts: list[str] = Field(
        default_factory=list, description='exact URL hosts accepted anyway: ["host", "host:port"]'
    )
    webhook_timeout: float = Field(default=5.0, gt=0, le=120)
    webhook_max_attempts: int = Field(default=5, ge=1, le=20)
    webhook_backoff_base: float = Field(default=1.0, gt=0, le=600)
    webhook_backoff_max: float = Field(default=60.0, gt=0, le=3600)
    email_max_attempts: int = Field(default=3, ge=1, le=20)
    notify_workers: int = Field(default=4, ge=1, le=64)

    def db_path(self, data_dir: Path) -> Path:
        """Return the alert database path."""
        path = Path(self.alert_db_file)
        return path if path.is_absolute() else data_dir / path

    def file_dir(self, data_dir: Path) -> Path:
        """Return the folder file channels write in (relative settings: the data dir)."""
        if self.alert_file_dir is None:
            return data_dir / "alerts"
        path = self.alert_file_dir.expanduser()
        return path if path.is_absolute() else data_dir / path
