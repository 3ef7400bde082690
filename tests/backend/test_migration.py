"""An existing data folder from main (099f952, schema 1, before the head) opens and keeps
everything: its buckets, its series and the cumulative state of each series.

The fixture `data/main-099f952.db` was written by main's own code
(`data/make_main_099f952_db.py`, run against a checkout of 099f952): a cumulative counter
3, 6, ..., 90 (joined late, so its first point is the baseline: 87 stored) and 30 delta
feedback points of 2, every 10 s from 2026-11-30 12:00 UTC.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from mlpulse.backend.ingest.limits import Limits
from mlpulse.backend.ingest.pipeline import ingest, open_engine
from tests.backend.backend_testing import metric_request

FIXTURE = Path(__file__).parent / "data" / "main-099f952.db"
T0 = 1796040000
OLD_OK = Limits(max_age_ns=10 * 365 * 86400 * 10**9)  # the fixture's points are old


def _sum(engine: object, metric: str, res: int) -> float:
    ids = [s.id for s in engine.series(metric)]  # type: ignore[attr-defined]
    return sum(a.sum for _, _, a in engine.read(ids, res, 0, T0 + 86400))  # type: ignore[attr-defined]


def test_a_data_folder_from_main_opens_with_everything(tmp_path: Path) -> None:
    db = tmp_path / "mlpulse.db"
    shutil.copy(FIXTURE, db)
    engine = open_engine(db, OLD_OK)
    try:
        for res in (10, 60, 3600):
            assert _sum(engine, "ml.model.predictions", res) == 87
            assert _sum(engine, "ml.model.feedback", res) == 60
        # The cumulative state came along: the next point adds only its increase.
        nxt = metric_request(
            "ml.model.predictions",
            temporality=2,
            points=[
                {"value": 100, "start_s": T0 - 60, "time_s": T0 + 305,
                 "attributes": {"ml.model.name": "m"}}
            ],
        )  # fmt: skip
        assert ingest(engine, nxt, OLD_OK).accepted == 1
        assert _sum(engine, "ml.model.predictions", 10) == 97
        # A replay of an old cumulative point changes nothing.
        old = metric_request(
            "ml.model.predictions",
            temporality=2,
            points=[
                {"value": 90, "start_s": T0 - 60, "time_s": T0 + 295,
                 "attributes": {"ml.model.name": "m"}}
            ],
        )  # fmt: skip
        assert ingest(engine, old, OLD_OK).accepted == 0
    finally:
        engine.close()
    # Converted once: reopened, the head's own state is used (no double conversion).
    engine = open_engine(db, OLD_OK)
    try:
        assert _sum(engine, "ml.model.predictions", 10) == 97
    finally:
        engine.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'head_format'").fetchone()
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
