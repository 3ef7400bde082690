"""A late delta point into a closed 10 s bucket of a still-open minute and hour.

The late point goes to the store at the next checkpoint; the minute's and the hour's
rollup rows are written later, when they close. Those rows must merge with what the
checkpoint stored, never replace it (which lost the late point at 1 min and 1 h).
Also: a series still sending keeps its buckets open through checkpoints, and everything
is exact after a restart.
"""

from __future__ import annotations

from pathlib import Path

from backend_testing import metric_request

from mlpulse.backend.ingest.limits import Limits
from mlpulse.backend.ingest.pipeline import ingest, open_engine
from mlpulse.backend.storage.engine import Engine

METRIC = "ml.model.predictions"


def _delta(*points: tuple[float, float]) -> object:
    return metric_request(
        METRIC,
        temporality=1,
        points=[{"value": v, "time_s": t, "start_s": t - 10} for t, v in points],
    )


def _totals(engine: Engine) -> list[float]:
    ids = [s.id for s in engine.series(METRIC)]
    return [sum(a.sum for _, _, a in engine.read(ids, res, 0, 2**40)) for res in (10, 60, 3600)]


def _stored_totals(engine: Engine) -> list[float]:
    """What the database holds per resolution (after a checkpoint)."""
    engine.checkpoint()
    conn = engine.store._reader()
    rows = conn.execute(
        "SELECT resolution, sum(sum) FROM buckets GROUP BY resolution ORDER BY resolution"
    ).fetchall()
    return [float(s) for _, s in rows]


def test_a_late_point_stored_before_its_hour_closes_is_kept_at_every_resolution(
    tmp_path: Path,
) -> None:
    limits = Limits()
    path = tmp_path / "mlpulse.db"
    engine = open_engine(path, limits, checkpoint_interval_s=3600)
    now = (engine.created_at() // 3600 + 1) * 3600 + 1200.0  # 20 min into an hour
    h = now // 3600 * 3600
    try:
        # A backlog replayed (server time 200 s after the points), then a late point
        # into an earlier 10 s bucket of the same minute and hour.
        ingest(engine, _delta((h + 125, 4.0)), limits, now=h + 325)  # type: ignore[arg-type]
        ingest(engine, _delta((h + 105, 1.0)), limits, now=h + 326)  # type: ignore[arg-type]
        # A checkpoint's close: the bucket ended long ago, but the series is still sending.
        engine.head.close_quiet(h + 327)
        assert engine.head.series[engine.series(METRIC)[0].id].open_ts == h + 120
        engine.checkpoint()  # the late point's rows are stored; the rollups still open
        assert _totals(engine) == [5.0, 5.0, 5.0]
        # The next minute and the next hour close the rollups, which are written then.
        ingest(engine, _delta((h + 185, 2.0)), limits, now=h + 386)  # type: ignore[arg-type]
        ingest(engine, _delta((h + 3605, 8.0)), limits, now=h + 3806)  # type: ignore[arg-type]
        assert _totals(engine) == [15.0, 15.0, 15.0]
    finally:
        engine.close()  # closes every bucket: the rollups' rows meet the stored late point
    reopened = open_engine(path, limits, checkpoint_interval_s=3600)
    try:
        assert _totals(reopened) == [15.0, 15.0, 15.0]
        assert _stored_totals(reopened) == [15.0, 15.0, 15.0]
    finally:
        reopened.close()
