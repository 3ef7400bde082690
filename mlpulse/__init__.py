"""mlpulse: observability for machine-learning prediction APIs, built on OpenTelemetry.

This package holds the command line (`mlpulse ...`) and the demo that wires the parts:
`instrumentation/` (the library), `mlapi/` (the observed API), `backend/` (ingest,
storage, alerts, query, live push) and `dashboards/` (the page).
"""

__version__ = "0.1.0"
