"""The benchmark smoke runs `bench/run.py --quick` in a child process: nothing to import."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "bench: a --quick smoke of a benchmark (asserts it produces results only)"
    )
