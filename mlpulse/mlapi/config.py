"""mlapi settings, from `MLPULSE_*` environment variables."""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REDACTED = "[REDACTED]"


class MlapiSettings(BaseSettings):
    """Settings of the observed ML API; each field reads `MLPULSE_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="MLPULSE_", extra="ignore")

    api_token: SecretStr | None = Field(
        default=None, description="Bearer token of /admin/*; admin answers 503 when unset."
    )
    backend_url: str = Field(
        default="http://127.0.0.1:8003",
        description="Metrics go to <backend_url>/v1/metrics unless an OTEL_* endpoint is set.",
    )
    service_name: str = Field(default="mlapi", description="service.name (OTEL_SERVICE_NAME wins).")
    environment: str = Field(default="development", description="deployment.environment.name.")
    telemetry_enabled: bool = Field(
        default=True, description="False serves the API uninstrumented (benchmark baseline)."
    )
    cache_max_bytes: int = Field(default=8 * 1024 * 1024, gt=0, description="Cache bound.")
    cache_ttl_s: float = Field(default=300.0, gt=0, description="Cache entry lifetime.")
    feedback_max_pending: int = Field(
        default=100_000, gt=0, description="Predictions kept awaiting ground truth."
    )
    feedback_ttl_s: float = Field(
        default=3600.0, gt=0, description="How long a prediction accepts feedback."
    )
    model_seed: int = Field(default=42, description="Seed of the synthetic data and the models.")
    training_samples: int = Field(default=3000, ge=50, description="Synthetic scans per training.")
    model_trees: int = Field(default=40, ge=1, le=500, description="Trees per ensemble.")

    @field_validator("api_token", mode="before")
    @classmethod
    def _empty_token_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    def public_dict(self) -> dict[str, Any]:
        """Return the effective settings with secrets redacted."""
        values = self.model_dump()
        values["api_token"] = REDACTED if self.api_token is not None else None
        return values
