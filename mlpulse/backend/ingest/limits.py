"""Bounds on untrusted attributes: count, key length, value length.

Attribute values become strings (booleans `true`/`false`, numbers as written, arrays and
maps as compact JSON). A point whose attributes break a bound is refused and counted in
`partial_success`; it is never truncated into a different series.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from mlpulse.backend.config import BackendSettings


@dataclass(frozen=True, slots=True)
class Limits:
    """The ingest limits, from settings."""

    max_attributes: int = 32
    max_key_length: int = 128
    max_value_length: int = 1024
    max_series: int = 50_000
    max_exemplars: int = 4
    # A point's time must lie in [now - max_age, now + future_grace] (nanoseconds).
    future_grace_ns: int = 600 * 10**9
    max_age_ns: int = (90 * 86_400 + 600) * 10**9
    # Where flatten adds its refusals by reason code (`Flattened.codes`), when given.
    tally: Counter[str] | None = field(default=None, compare=False)

    @classmethod
    def from_settings(cls, settings: BackendSettings, tally: Counter[str] | None = None) -> Limits:
        grace_ns = int(settings.ingest_future_grace.total_seconds() * 1e9)
        return cls(
            max_attributes=settings.max_attributes_per_point,
            max_key_length=settings.max_attribute_key_length,
            max_value_length=settings.max_attribute_value_length,
            max_series=settings.max_series,
            max_exemplars=settings.max_exemplars_per_bucket,
            future_grace_ns=grace_ns,
            # Older than the longest retention, no resolution would keep the point (the
            # grace allows for clock skew); newer, the coarser rollups still hold it.
            max_age_ns=int(max(settings.retention_seconds().values()) * 1e9) + grace_ns,
            tally=tally,
        )


class LimitError(Exception):
    """A bound was broken; the message names which (never echoing the whole value)."""


def _plain(value: AnyValue, depth: int = 0) -> Any:
    if depth > 8:
        raise LimitError("attribute value nested too deeply")
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "bytes_value":
        return value.bytes_value.hex()
    if kind == "array_value":
        return [_plain(v, depth + 1) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _plain(kv.value, depth + 1) for kv in value.kvlist_value.values}
    return None


def value_to_str(value: AnyValue) -> str:
    """Render an attribute value as the string label the backend stores."""
    plain = _plain(value)
    if isinstance(plain, bool):
        return "true" if plain else "false"
    if isinstance(plain, str):
        return plain
    if plain is None:
        return ""
    if isinstance(plain, int | float):
        return repr(plain)
    return json.dumps(plain, separators=(",", ":"), sort_keys=True)


def labels(attributes: Any, limits: Limits, what: str) -> tuple[tuple[str, str], ...]:
    """Return sorted (key, value) pairs of OTLP attributes, or raise LimitError."""
    kvs: list[KeyValue] = list(attributes)
    if len(kvs) > limits.max_attributes:
        raise LimitError(f"{what} has {len(kvs)} attributes (max {limits.max_attributes})")
    out: dict[str, str] = {}
    for kv in kvs:
        if len(kv.key) > limits.max_key_length:
            raise LimitError(
                f"{what} attribute key of {len(kv.key)} characters (max {limits.max_key_length})"
            )
        text = value_to_str(kv.value)
        if len(text) > limits.max_value_length:
            raise LimitError(
                f"{what} attribute {kv.key[:64]!r} has a value of {len(text)} characters"
                f" (max {limits.max_value_length})"
            )
        out[kv.key] = text
    return tuple(sorted(out.items()))
