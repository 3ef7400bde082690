"""Storage: the `MetricStore` interface, its SQLite implementation and the aggregates."""

from mlpulse.backend.storage.base import MetricStore, StorageBusyError
from mlpulse.backend.storage.sqlite import SQLiteStore

__all__ = ["MetricStore", "SQLiteStore", "StorageBusyError"]
