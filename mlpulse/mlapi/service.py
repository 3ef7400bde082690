"""The prediction service: models, cache, feedback and faults, recorded in telemetry."""

from __future__ import annotations

import asyncio
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict
from time import perf_counter
from typing import Any

import psutil
from opentelemetry.trace import get_current_span

from mlpulse.mlapi.cache import TTLCache
from mlpulse.mlapi.config import MlapiSettings
from mlpulse.mlapi.faults import FaultInjector, ScenarioName
from mlpulse.mlapi.feedback import FeedbackStore, PendingPrediction, new_prediction_id
from mlpulse.mlapi.models import (
    FEATURE_NAMES,
    MODEL_NAMES,
    ModelName,
    ModelRegistry,
    ModelVersion,
    Prediction,
    ScanFeatures,
    TrainingSettings,
)
from mlpulse.mlapi.schemas import FeedbackRequest, FeedbackResponse, PredictionResponse, ScanRequest
from mlpulse_instrumentation import BoundFeatures, CacheTelemetry, ModelTelemetry

CacheKey = tuple[str, str, ScanFeatures]
#: Prediction recorders kept per (model, version); beyond, bound per request.
_MAX_RECORDERS = 256


class InjectedFault(Exception):
    """Raised by the error-burst scenario; answered as a 500."""


class ModelsNotReady(Exception):
    """A prediction arrived before the first training finished."""


class MlService:
    """Everything behind the routes; one per app.

    Telemetry recorders are optional, so the same service runs uninstrumented as the
    benchmark baseline.
    """

    def __init__(
        self,
        settings: MlapiSettings,
        *,
        model_telemetry: ModelTelemetry | None = None,
        cache_telemetry: CacheTelemetry | None = None,
        traced: bool = False,
    ) -> None:
        self.settings = settings
        self._traced = traced
        self.registry = ModelRegistry(
            TrainingSettings(
                n_samples=settings.training_samples,
                n_estimators=settings.model_trees,
                seed=settings.model_seed,
            )
        )
        self.cache: TTLCache[CacheKey, Prediction] = TTLCache(
            max_bytes=settings.cache_max_bytes, ttl_s=settings.cache_ttl_s
        )
        self.feedback = FeedbackStore(
            max_pending=settings.feedback_max_pending, ttl_s=settings.feedback_ttl_s
        )
        self.faults = FaultInjector(on_cache_flush=self.cache.clear)
        self._models_telemetry = model_telemetry
        self._cache_telemetry = cache_telemetry
        # The prediction recorder of each (model, version), FEATURE_NAMES layout: one
        # dict lookup per request instead of bind + with_features (B1).
        self._recorders: dict[tuple[str, str], BoundFeatures] = {}
        if cache_telemetry is not None:
            cache_telemetry.track(self.cache.size)
            cache_telemetry.track_stale(self.stale_cache_entries)
        self._retrain_lock = asyncio.Lock()
        self.started_at = time.time()

    async def train_initial(self) -> None:
        """Train the first version of each model, off the event loop."""
        versions = await asyncio.to_thread(self.registry.train)
        self._publish_baselines(versions)

    async def retrain(self, names: Sequence[ModelName] = MODEL_NAMES) -> list[ModelVersion]:
        """Train and switch to a new version of each named model, off the event loop."""
        async with self._retrain_lock:
            versions = await asyncio.to_thread(self.registry.train, names)
        self._publish_baselines(versions)
        return versions

    async def predict(self, name: ModelName, request: ScanRequest) -> PredictionResponse:
        """Serve one prediction: cache first, then the model; remember it for feedback."""
        faults = self.faults
        delay = faults.extra_latency_s()
        if delay:
            await asyncio.sleep(delay)
        if faults.should_fail():
            raise InjectedFault("injected fault: error-burst")
        if not self.registry.ready:
            raise ModelsNotReady
        model = self.registry.current(name)
        features = request.features()
        key: CacheKey = (name, model.version, features)

        cached: Prediction | None = None
        bypass = faults.bypass_cache()
        if bypass:
            self.cache.count_miss()
        else:
            cached = self.cache.get(key)
        if self._cache_telemetry is not None:
            self._cache_telemetry.bind(name).record_lookup(hit=cached is not None)

        duration = 0.0
        if cached is None:
            started = perf_counter()
            prediction = model.predict(features)
            duration = perf_counter() - started
            if not bypass:
                self.cache.put(key, prediction)
        else:
            prediction = cached
        value = prediction.value * faults.drift_factor()
        prediction_id = new_prediction_id()
        if self._traced:
            # On the server span (no child span: a span costs more than the inference
            # it would time): find a prediction's trace from its id, never a metric label.
            get_current_span().set_attributes(
                {
                    "ml.model.name": name,
                    "ml.model.version": model.version,
                    "ml.prediction.cache_hit": cached is not None,
                    "ml.prediction.id": prediction_id,
                    "ml.model.inference.duration": duration,
                }
            )
        self.feedback.add(
            prediction_id,
            PendingPrediction(
                name,
                model.version,
                value,
                created_at=time.monotonic(),
                predicted_at=time.time(),
                cache_hit=cached is not None,
            ),
        )
        if self._models_telemetry is not None:
            recorder = self._recorders.get((name, model.version))
            if recorder is None:
                recorder = self._recorder(self._models_telemetry, name, model.version)
            # The feature vector as it is, in FEATURE_NAMES order: no mapping per request.
            recorder.record_prediction(
                value=value,
                confidence=prediction.confidence,
                duration_s=duration,
                cache_hit=cached is not None,
                features=features.vector(),
            )
        return PredictionResponse(
            prediction=value,
            confidence=prediction.confidence,
            model_name=name,
            model_version=model.version,
            prediction_id=prediction_id,
            cache_hit=cached is not None,
        )

    def _recorder(self, telemetry: ModelTelemetry, name: str, version: str) -> BoundFeatures:
        recorder = telemetry.bind(name, version).with_features(FEATURE_NAMES)
        if len(self._recorders) < _MAX_RECORDERS:  # versions only grow on retrain
            self._recorders[(name, version)] = recorder
        return recorder

    def record_feedback(self, request: FeedbackRequest) -> FeedbackResponse:
        """Score an earlier prediction against its actual value (raises on unknown/dup)."""
        pending = self.feedback.resolve(request.prediction_id, request.actual)
        if self._models_telemetry is not None:
            self._models_telemetry.record_feedback(
                pending.model_name,
                pending.model_version,
                predicted=pending.predicted,
                actual=request.actual,
                lag_s=time.monotonic() - pending.created_at,
                # MAE split by cache hit, and by the window the prediction was made in.
                cache_hit=pending.cache_hit,
                predicted_at=pending.predicted_at,
            )
        return FeedbackResponse(
            prediction_id=request.prediction_id,
            predicted_at=pending.predicted_at,
            label_lag_s=time.time() - pending.predicted_at,
            model_name=pending.model_name,
            model_version=pending.model_version,
            predicted=pending.predicted,
            actual=request.actual,
            absolute_error=abs(request.actual - pending.predicted),
        )

    def stale_cache_entries(self) -> dict[str, int]:
        """Per model, cached entries of a version that no longer serves (after a retrain
        they are never hit again and only hold memory until their TTL)."""
        if not self.registry.ready:
            return {}
        current: dict[str, str] = {n: self.registry.current(n).version for n in MODEL_NAMES}
        out: dict[str, int] = {}
        for name in MODEL_NAMES:
            if len(self.registry.history(name)) < 2:
                # One version ever: nothing cached can be stale, and scanning the whole
                # cache (a Python hash per key) at every collection costs more than the
                # request path's telemetry (B1).
                out[name] = 0
                continue

            def stale(key: CacheKey, model: str = name) -> bool:
                return key[0] == model and key[1] != current[model]

            out[name] = self.cache.count(stale)
        return out

    def start_scenario(self, name: ScenarioName, duration_s: float) -> None:
        """Switch a fault scenario on."""
        self.faults.start(name, duration_s)

    def diagnostics(self) -> dict[str, Any]:
        """Return model versions and baselines, cache, feedback, process and scenario."""
        cache = self.cache.stats()
        process = psutil.Process(os.getpid())
        with process.oneshot():
            memory = process.memory_info()
            process_info = {
                "pid": process.pid,
                "uptime_s": round(time.time() - process.create_time(), 3),
                "rss_bytes": memory.rss,
                "threads": process.num_threads(),
                "cpu_times_s": round(sum(process.cpu_times()[:2]), 3),
                "python": platform.python_version(),
            }
        scenario = self.faults.active()
        return {
            "models": {
                name: {
                    "current": (
                        self.registry.current(name).version if self.registry.ready else None
                    ),
                    "versions": [v.describe() for v in self.registry.history(name)],
                }
                for name in MODEL_NAMES
            },
            "cache": {**asdict(cache), "hit_rate": cache.hit_rate},
            "feedback": asdict(self.feedback.stats()),
            "process": process_info,
            "scenario": {
                "active": scenario is not None,
                "name": scenario.name if scenario else None,
                "remaining_s": round(self.faults.remaining_s(), 3),
            },
        }

    def _publish_baselines(self, versions: Sequence[ModelVersion]) -> None:
        if self._models_telemetry is None:
            return
        for version in versions:
            self._models_telemetry.set_baseline(
                version.name, version.version, mae=version.baseline_mae, r2=version.baseline_r2
            )
            if version.reference is not None:
                self._models_telemetry.publish_reference(
                    version.name,
                    version.version,
                    predictions=version.reference.predictions,
                    confidences=version.reference.confidences,
                    features=version.reference.features,
                )
