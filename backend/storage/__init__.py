"""Storage: the `MetricStore` interface, its SQLite implementation and the aggregates."""

from backend.storage.base import MetricStore, StorageBusyError
from backend.storage.sqlite import SQLiteStore

__all__ = ["MetricStore", "SQLiteStore", "StorageBusyError"]
