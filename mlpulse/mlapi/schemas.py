"""Request and response bodies of mlapi."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mlpulse.mlapi.faults import ScenarioName
from mlpulse.mlapi.feedback import MAX_ACTUAL
from mlpulse.mlapi.models import ModelName, ScanFeatures

Timeframe = Literal["1m", "5m", "15m", "1h", "4h", "1d", "1w"]


class _Strict(BaseModel):
    # Unknown fields are refused: a typo'd feature must not be silently ignored. Strict
    # types: "10" is not an int nor "yes" a bool (a JSON int still fills a float field).
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class ScanRequest(_Strict):
    """A market scan to predict for."""

    symbol_count: int = Field(ge=1, le=10_000, description="Symbols scanned.")
    lookback_days: int = Field(ge=1, le=3650, description="Days of history per symbol.")
    filter_count: int = Field(ge=0, le=50, description="Filters applied.")
    indicator_count: int = Field(ge=0, le=50, description="Indicators computed.")
    timeframe: Timeframe = Field(description="Bar length.")
    market_hours: bool = Field(description="Whether the scan runs while markets are open.")

    def features(self) -> ScanFeatures:
        """Return the model features of this request."""
        return ScanFeatures(
            symbol_count=self.symbol_count,
            lookback_days=self.lookback_days,
            filter_count=self.filter_count,
            indicator_count=self.indicator_count,
            timeframe=self.timeframe,
            market_hours=self.market_hours,
        )


class PredictionResponse(BaseModel):
    """A prediction and what is needed to send its ground truth later."""

    prediction: float
    confidence: float = Field(ge=0.0, le=1.0)
    model_name: ModelName
    model_version: str
    prediction_id: str
    cache_hit: bool


class FeedbackRequest(_Strict):
    """The actual value of an earlier prediction."""

    prediction_id: str = Field(min_length=32, max_length=32, pattern=r"^[0-9a-f]{32}$")
    actual: float = Field(
        ge=0.0,
        le=MAX_ACTUAL,
        allow_inf_nan=False,
        description="Observed target value (each model also bounds its own range).",
    )


class FeedbackResponse(BaseModel):
    """The scored prediction."""

    prediction_id: str
    model_name: str
    model_version: str
    predicted: float
    actual: float
    absolute_error: float
    predicted_at: float = Field(description="When the prediction was served (epoch s).")
    label_lag_s: float = Field(description="Seconds from the prediction to this ground truth.")


class RetrainRequest(_Strict):
    """Which model to retrain; both when omitted."""

    model: ModelName | None = None


class ModelVersionInfo(BaseModel):
    """One model version and its training baseline."""

    name: ModelName
    version: str
    algorithm: str
    n_estimators: int
    baseline_mae: float
    baseline_r2: float
    n_train: int
    n_holdout: int
    seed: int
    training_seconds: float
    trained_at: float


class RetrainResponse(BaseModel):
    """The versions trained by a retrain request."""

    trained: list[ModelVersionInfo]


class CacheClearResponse(BaseModel):
    """How many entries a cache clear dropped."""

    cleared: int


class ScenarioRequest(_Strict):
    """Start a fault scenario for a while."""

    name: ScenarioName
    duration_s: float = Field(default=60.0, gt=0.0, le=3600.0, allow_inf_nan=False)


class ScenarioState(BaseModel):
    """The active scenario, if any."""

    active: bool
    name: ScenarioName | None = None
    remaining_s: float = 0.0
    available: list[str]


class HealthResponse(BaseModel):
    """Liveness and readiness."""

    status: Literal["ok", "starting"]
    models_ready: bool
    model_versions: dict[str, str]
    uptime_s: float
