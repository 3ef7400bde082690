"""Fixtures for backend tests: a real uvicorn server on a free port per test.

Every test gets a fresh data directory (tmp_path) and its own server.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from backend_testing import Backend, ServerThread, make_settings

from mlpulse.backend.app import create_app


@pytest.fixture
def backend_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Start backends on tmp_path's data dir. With MLPULSE_TEST_STORE=postgresql every
    backend of the test shares a fresh PostgreSQL database instead (the whole suite can
    run on the shared store: `MLPULSE_TEST_STORE=postgresql pytest tests/backend`)."""
    stack: list[tuple[ServerThread, httpx.Client]] = []
    pg_url: list[str] = []

    def start(**overrides: Any) -> Backend:
        if os.environ.get("MLPULSE_TEST_STORE") == "postgresql" and "storage_url" not in overrides:
            if not pg_url:
                pg_url.append(request.getfixturevalue("postgres_url"))
            overrides["storage_url"] = pg_url[0]
        settings = make_settings(tmp_path / "data", **overrides)
        app = create_app(settings)
        server = ServerThread(app)
        url = server.__enter__()
        client = httpx.Client(base_url=url, timeout=30)
        stack.append((server, client))
        return Backend(url, app, settings, client)

    yield start
    for server, client in reversed(stack):
        client.close()
        server.__exit__()


@pytest.fixture
def backend(backend_factory: Any) -> Backend:
    return backend_factory()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Any]:
    """One throwaway PostgreSQL server for the session (initdb + pg_ctl in a temp folder)."""
    from mlpulse._pgcluster import Cluster

    cluster = Cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster: Any, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database on the session's server, named after the test."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:50].lower()
    url: str = postgres_cluster.create_database(name)
    return url
