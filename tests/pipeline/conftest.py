"""Registers the pipeline fixtures (defined in harness.py)."""

from .harness import binaries, collectors, jaeger, make_sink

__all__ = ["binaries", "collectors", "jaeger", "make_sink"]
