"""mlpulse: observability for machine-learning prediction APIs, built on OpenTelemetry.

This package holds the command line (`mlpulse ...`), the demo that wires the parts,
`mlpulse.mlapi` (the observed API) and `mlpulse.backend` (ingest, storage, alerts, query,
live push). The instrumentation library is its own distribution (`instrumentation/`,
imported as `mlpulse_instrumentation`); `dashboards/` is the page the backend serves.
"""

__version__ = "0.1.0"
