"""B7 resources: backend RSS and CPU under a steady realistic ingest; storage per series-day.

Steady load: 3 mlapi instances x 200 series (bench/_payload.py: 90 histograms), each
exporting every 5 s as the SDK does (staggered), i.e. 120 points/s, into a fresh backend
(one uvicorn process, its alert evaluator and retention jobs running as in production).
The backend's RSS and CPU time are sampled every second (psutil); the first 2 windows
(series creation) are left out of the steady-state CPU figure.

Storage: the day database of bench/_dataset.py (20 series, 24 h at 5 s, ingested through
OTLP). For each resolution (10 s, 1 min, 1 h) and kind of series, its `buckets` rows are
copied into an empty database with the backend's schema and measured with SQLite's
`dbstat` (bytes of table and index pages in use, i.e. page size minus free space, so
a handful of rows is not rounded up to whole pages); bytes per row x rows per
series-day (8640, 1440, 24) gives bytes per series-day.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from bench._common import backend_child, fig, free_port, median, rnd
from bench._dataset import day_database
from bench._otlp import Poster
from bench._payload import Instance

TITLE = "Backend resources under steady ingest; storage per series-day"
INSTANCES = 3
PERIOD = 5.0


def _steady(workdir: Path, seconds: float) -> dict[str, Any]:
    port = free_port()
    samples: list[tuple[float, float, int]] = []  # (t, cpu_s, rss)
    errors: list[str] = []
    with backend_child(workdir / "steady", port, log=workdir / "steady.log") as backend:
        time.sleep(1.0)
        idle_rss = backend.rss()
        start = time.time()
        insts = [
            Instance(f"mlapi-{i}", seed=10 + i, per_window=20, started=start - 3600)
            for i in range(INSTANCES)
        ]
        stop = threading.Event()

        def exporter(i: int) -> None:
            poster = Poster(port)
            k = 0
            try:
                while not stop.is_set():
                    due = start + i * PERIOD / INSTANCES + k * PERIOD
                    delay = due - time.time()
                    if delay > 0 and stop.wait(delay):
                        return
                    status, body = poster.post(insts[i].export(time.time()).SerializeToString())
                    if status != 200:
                        errors.append(f"{status} {body[:100]!r}")
                    k += 1
            finally:
                poster.close()

        threads = [threading.Thread(target=exporter, args=(i,)) for i in range(INSTANCES)]
        for t in threads:
            t.start()
        try:
            while time.time() - start < seconds:
                samples.append((time.time() - start, backend.cpu_s(), backend.rss()))
                time.sleep(1.0)
        finally:
            stop.set()
            for t in threads:
                t.join()
            for inst in insts:
                inst.shutdown()
        db_bytes = sum(
            p.stat().st_size for p in (workdir / "steady").glob("mlpulse.db*") if p.is_file()
        )
    steady = [s for s in samples if s[0] >= 2 * PERIOD]
    cpu_pct = None
    if len(steady) >= 2:
        (t0, c0, _), (t1, c1, _) = steady[0], steady[-1]
        cpu_pct = (c1 - c0) / (t1 - t0) * 100
    rss = [s[2] for s in samples]
    growth = None
    half = steady[len(steady) // 2 :]
    if len(half) >= 2:  # second half only: the first fills caches and the SQLite page cache
        growth = (half[-1][2] - half[0][2]) / (half[-1][0] - half[0][0]) * 60
    return {
        "seconds": seconds,
        "points_per_s": INSTANCES * 200 / PERIOD,
        "idle_rss": idle_rss,
        "rss_max": max(rss) if rss else None,
        "rss_end": rss[-1] if rss else None,
        "rss_median": median(rss),
        "rss_growth_per_min": growth,
        "cpu_percent_of_one_core": cpu_pct,
        "db_bytes": db_bytes,
        "errors": errors[:5],
        "samples": [[rnd(t), rnd(c), r] for t, c, r in samples],
    }


def _storage(db: Path, workdir: Path) -> list[dict[str, Any]]:
    from mlpulse.backend.storage.sqlite import _SCHEMA

    src = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    kinds = src.execute("SELECT DISTINCT kind FROM series").fetchall()
    out = []
    for res in (10, 60, 3600):
        for (kind,) in [("all",), *kinds]:
            where = "b.resolution = ?" + ("" if kind == "all" else " AND s.kind = ?")
            args: tuple[Any, ...] = (res,) if kind == "all" else (res, kind)
            rows = src.execute(
                "SELECT b.resolution, b.series_id, b.ts, b.count, b.sum, b.min, b.max, b.last,"
                " b.last_ns, b.hist, b.exemplars FROM buckets b JOIN series s"
                f" ON s.id = b.series_id WHERE {where}",
                args,
            ).fetchall()
            n_series = len({r[1] for r in rows})
            if not rows:
                continue
            path = workdir / f"res{res}-{kind}.db"
            path.unlink(missing_ok=True)
            c = sqlite3.connect(path)
            c.executescript(_SCHEMA)
            c.executemany(
                "INSERT INTO buckets (resolution, series_id, ts, count, sum, min, max, last,"
                " last_ns, hist, exemplars) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            c.commit()
            c.execute("VACUUM")
            used = c.execute(
                "SELECT sum(pgsize - unused) FROM dbstat"
                " WHERE name IN ('buckets', 'buckets_by_time')"
            ).fetchone()[0]
            c.close()
            size = int(used or 0)
            per_row = size / len(rows)
            out.append(
                {
                    "resolution_s": res,
                    "kind": kind,
                    "series": n_series,
                    "rows": len(rows),
                    "bytes": size,
                    "bytes_per_row": per_row,
                    "bytes_per_series_day": per_row * 86400 / res,
                }
            )
    src.close()
    return out


WIDE_INSTANCES = 50  # x 200 series = 10 000 active series
_WIDE_ENV: dict[str, str] = {}


def _wide(workdir: Path, seconds: float) -> dict[str, Any]:
    """10k active series (50 instances x 200), each exporting every 5 s; RSS over time.

    Each instance's export is built once by the real SDK and re-timed for every period
    (cumulative values then stay level: zero increases, but every series is active, and
    the head holds the same state for it whatever the values).
    """
    from bench._otlp import retime

    port = free_port()
    rss: list[tuple[float, int]] = []
    errors: list[str] = []
    with backend_child(workdir / "wide", port, log=workdir / "wide.log", **_WIDE_ENV) as backend:
        start = time.time()
        bodies = []
        for i in range(WIDE_INSTANCES):
            inst = Instance(f"wide-{i}", seed=100 + i, per_window=5, started=start - 3600)
            bodies.append(inst.export(start))
            inst.shutdown()
        stop = threading.Event()

        def exporter(k: int) -> None:
            poster = Poster(port)
            n = 0
            try:
                while not stop.is_set():
                    for i in range(k, WIDE_INSTANCES, 2):  # two exporter threads
                        due = start + i * PERIOD / WIDE_INSTANCES + n * PERIOD
                        delay = due - time.time()
                        if delay > 0 and stop.wait(delay):
                            return
                        req = bodies[i]
                        retime(req, None, int(time.time() * 1e9))
                        try:
                            status, body = poster.post(req.SerializeToString())
                        except OSError as exc:  # a timeout (60 s): counted, not a dead thread
                            errors.append(f"{type(exc).__name__}: {exc}")
                            poster.close()
                            poster = Poster(port)
                            continue
                        if status != 200:
                            errors.append(f"{status} {body[:100]!r}")
                    n += 1
            finally:
                poster.close()

        threads = [threading.Thread(target=exporter, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        try:
            while time.time() - start < seconds:
                rss.append((time.time() - start, backend.rss()))
                time.sleep(2.0)
        finally:
            stop.set()
            for t in threads:
                t.join()
    values = [r for _, r in rss]
    return {
        "seconds": seconds,
        "series": WIDE_INSTANCES * 200,
        "rss_max": max(values) if values else None,
        "rss_end": values[-1] if values else None,
        "errors": errors[:5],
        "error_count": len(errors),
    }


def run(quick: bool, workdir: Path) -> dict[str, Any]:
    seconds = 5.0 if quick else 240.0
    steady = _steady(workdir, seconds)
    wide = _wide(workdir, 10.0 if quick else 600.0)
    hours = 1.0 if quick else 24.0
    meta = day_database(workdir / "day", hours, log=workdir / "fill.log")
    storage = _storage(workdir / "day" / "mlpulse.db", workdir)
    day_db = (workdir / "day" / "mlpulse.db").stat().st_size
    mib = 2**20
    figures = [
        fig("steady ingest: backend CPU, % of one core", steady["cpu_percent_of_one_core"], "%"),
        fig("steady ingest: backend RSS, median", steady["rss_median"] / mib, "MiB"),
        fig("steady ingest: backend RSS, max", steady["rss_max"] / mib, "MiB"),
        fig(
            "steady ingest: RSS growth over the second half",
            (steady["rss_growth_per_min"] or 0) / mib,
            "MiB/min",
        ),
        fig("backend RSS idle (before ingest)", steady["idle_rss"] / mib, "MiB"),
        fig(
            f"10k active series for {wide['seconds'] / 60:g} min: backend RSS, max",
            (wide["rss_max"] or 0) / mib,
            "MiB",
            at_most=150.0,
        ),
        fig(
            "10k active series: exports refused or failed",
            float(wide["error_count"]),
            "exports",
            at_most=0.0,
        ),
    ]
    for s in storage:
        if s["kind"] == "all":
            figures.append(
                fig(
                    f"storage at {s['resolution_s']} s resolution, all kinds",
                    s["bytes_per_series_day"],
                    "bytes/series-day",
                )
            )
    figures.append(
        fig(
            "whole database per series-day (all resolutions, series, indexes)",
            day_db / 20 / (hours / 24),
            "bytes/series-day",
        )
    )
    return {
        "method": (__doc__ or "").split("\n\n", 1)[1].strip(),
        "figures": figures,
        "tables": [
            {
                "title": "Storage per resolution and kind of series (day dataset)",
                "columns": [
                    "resolution s",
                    "kind",
                    "series",
                    "rows",
                    "bytes per row",
                    "bytes per series-day",
                ],
                "rows": [
                    [
                        s["resolution_s"],
                        s["kind"],
                        s["series"],
                        s["rows"],
                        s["bytes_per_row"],
                        s["bytes_per_series_day"],
                    ]
                    for s in storage
                ],
            }
        ],
        "notes": [
            f"Steady load: {steady['points_per_s']:.0f} points/s for {seconds:.0f} s "
            f"(3 instances x 200 series every 5 s); database after it "
            f"{steady['db_bytes'] / mib:.1f} MiB; export errors {steady['errors']}.",
            f"Day database: {meta['points']:,} points over {hours:g} h, "
            f"{day_db / mib:.1f} MiB on disk.",
            f"Wide load: {wide['series']:,} active series ({WIDE_INSTANCES} instances x 200, "
            f"each exporting every 5 s) for {wide['seconds']:.0f} s; RSS at the end "
            f"{(wide['rss_end'] or 0) / mib:.0f} MiB; target (issue 11) <= 150 MiB.",
        ],
        "details": {"steady": steady, "wide": wide, "storage": storage, "dataset": meta},
    }
