"""Fixtures for the mlapi tests: a small, fast app read through in-memory telemetry."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from mlapi_testing import TOKEN, TestClient
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mlpulse.mlapi.app import create_app
from mlpulse.mlapi.config import MlapiSettings
from mlpulse_instrumentation import uninstrument_app


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see no OTEL_* or MLPULSE_* variable of the developer's shell."""
    for name in list(os.environ):
        if name.startswith(("OTEL_", "MLPULSE_")):
            monkeypatch.delenv(name)


@pytest.fixture
def settings() -> MlapiSettings:
    # Small training sets keep each app's startup around 0.1 s.
    return MlapiSettings(api_token=TOKEN, training_samples=600, model_trees=12)


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def span_exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def app(
    settings: MlapiSettings, reader: InMemoryMetricReader, span_exporter: InMemorySpanExporter
) -> Iterator[FastAPI]:
    application = create_app(
        settings, metric_readers=[reader], span_processors=[SimpleSpanProcessor(span_exporter)]
    )
    yield application
    uninstrument_app(application)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client
