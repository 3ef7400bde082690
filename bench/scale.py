"""B8 scale-out: ingest on one PostgreSQL with 1, 2 and 3 backend replicas, side by side
with the embedded SQLite engine; and the 24 h summary on PostgreSQL vs SQLite.

Payload: B2's (bench/_payload.py: 3 mlapi instances x 200 series, cumulative, the real
SDK's encoder). Every configuration gets a fresh store and the same requests:

- `sqlite`: one backend process on its embedded engine (head + WAL + checkpoints);
- `postgresql xN`: N backend processes (`mlpulse.backend.app:create_app` under uvicorn, as
  `mlpulse backend` runs it) on one throwaway PostgreSQL 15 server (mlpulse/_pgcluster.py,
  fsync off as in any benchmark cluster here). Export k of instance i goes to replica
  (k + i) mod N: consecutive exports of one series land on different replicas, the
  routing the shared store must stay exact under.

Points per CPU-second count the CPU of every process doing the work: the replicas and,
for PostgreSQL, every server process (postmaster and its backends, via psutil). Rounds
interleave the configurations (rotated order). Loss check: every response 200 with no
refused points, and the stored 10 s buckets of the store hold every histogram
observation and every sum/gauge point sent after the baseline window.

Summary: B6's 24 h dataset (20 series at 5 s) is ingested into PostgreSQL through one
replica's `/v1/metrics` (the SQLite copy comes from B6's cache), then `GET
/metrics/summary` over the 24 h is timed on each, interleaved.
"""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import psutil

from bench._common import Child, backend_child, fig, free_port, median, percentile, rnd
from bench._dataset import day_database, fill
from bench._otlp import Poster, rejected
from bench._payload import Stream, build_streams

TITLE = "Scale-out: ingest with 1-3 replicas on PostgreSQL vs SQLite; 24 h summary on both"


class _PgServer:
    """CPU of the PostgreSQL server: the postmaster and every backend it forked."""

    def __init__(self, data_dir: Path) -> None:
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
        self.proc = psutil.Process(pid)

    def cpu_s(self) -> float:
        total = 0.0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
            except psutil.Error:
                continue
        return total


def _post_routed(ports: list[int], streams: list[Stream], lo: int, hi: int) -> dict[str, Any]:
    """Post windows [lo, hi) of every stream; export k of stream i to ports[(k + i) % n]."""
    errors: list[str] = []
    refused = [0]
    lock = threading.Lock()

    def worker(i: int, s: Stream) -> None:
        posters = [Poster(p) for p in ports]
        try:
            for k in range(lo, hi):
                status, resp = posters[(k + i) % len(ports)].post(s.bodies[k])
                with lock:
                    if status != 200:
                        errors.append(f"{status}: {resp[:200]!r}")
                    else:
                        refused[0] += rejected(resp)
        finally:
            for p in posters:
                p.close()

    threads = [threading.Thread(target=worker, args=(i, s)) for i, s in enumerate(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"errors": errors, "refused": refused[0]}


def _stored_pg(url: str) -> dict[str, float]:
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT s.kind, sum(b.count) FROM buckets b JOIN series s ON s.id = b.series_id"
            " WHERE b.resolution = 10 GROUP BY s.kind"
        ).fetchall()
    return {str(k): float(v or 0) for k, v in rows}


def _stored_sqlite(db: Path) -> dict[str, float]:
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT s.kind, sum(b.count) FROM buckets b JOIN series s ON s.id = b.series_id"
            " WHERE b.resolution = 10 GROUP BY s.kind"
        ).fetchall()
    finally:
        conn.close()
    return {str(k): float(v or 0) for k, v in rows}


class _Config:
    """One store under test: its replicas, their ports, where CPU is counted."""

    def __init__(self, name: str, replicas: list[Child], ports: list[int], pg: _PgServer | None):
        self.name = name
        self.replicas = replicas
        self.ports = ports
        self.pg = pg

    def cpu_s(self) -> float:
        return sum(r.cpu_s() for r in self.replicas) + (self.pg.cpu_s() if self.pg else 0.0)

    def stop(self) -> None:
        for r in self.replicas:
            r.stop()


def _get_ms(conn: http.client.HTTPConnection, path: str) -> float:
    t = time.perf_counter()
    conn.request("GET", path, headers={"Accept": "application/json"})
    resp = conn.getresponse()
    resp.read()
    if resp.status != 200:
        raise RuntimeError(f"{path}: {resp.status}")
    return (time.perf_counter() - t) * 1000


def run(quick: bool, workdir: Path) -> dict[str, Any]:
    from mlpulse._pgcluster import Cluster

    rounds, per_round = (1, 3) if quick else (4, 12)
    windows = 1 + rounds * per_round
    t_first = time.time() - windows * 5 - 30
    streams = build_streams(3, windows, t_first)
    points_per_window = sum(s.points[1] for s in streams)
    names = ["sqlite", "postgresql x1", "postgresql x2", "postgresql x3"]
    res: dict[str, dict[str, list[float]]] = {n: {"pps": [], "ppcpu": []} for n in names}
    errors: dict[str, list[str]] = {n: [] for n in names}
    refused = dict.fromkeys(names, 0)
    stored: dict[str, dict[str, float]] = {}
    configs: dict[str, _Config] = {}
    summary: dict[str, list[float]] = {"sqlite": [], "postgresql": []}
    cluster = Cluster.start()
    fill_s = 0.0
    try:
        urls: dict[str, str] = {}
        for n in names:
            if n == "sqlite":
                port = free_port()
                child = backend_child(workdir / "sqlite", port, log=workdir / "sqlite.log")
                configs[n] = _Config(n, [child], [port], None)
                continue
            count = int(n[-1])
            urls[n] = cluster.create_database(f"scale{count}")
            replicas, ports = [], []
            for r in range(count):
                port = free_port()
                replicas.append(
                    backend_child(
                        workdir / f"pg{count}-{r}", port, log=workdir / f"pg{count}-{r}.log",
                        MLPULSE_STORAGE_URL=urls[n],
                    )
                )  # fmt: skip
                ports.append(port)
            configs[n] = _Config(n, replicas, ports, _PgServer(cluster.folder / "data"))
        for n in names:  # window 0: series creation and cumulative baselines
            errors[n] += _post_routed(configs[n].ports, streams, 0, 1)["errors"]
        for r in range(rounds):
            lo, hi = 1 + r * per_round, 1 + (r + 1) * per_round
            pts = points_per_window * (hi - lo)
            order = names[r % len(names) :] + names[: r % len(names)]
            for n in order:
                cfg = configs[n]
                c0, w0 = cfg.cpu_s(), time.perf_counter()
                out = _post_routed(cfg.ports, streams, lo, hi)
                wall, cpu = time.perf_counter() - w0, cfg.cpu_s() - c0
                errors[n] += out["errors"]
                refused[n] += out["refused"]
                res[n]["pps"].append(pts / wall)
                res[n]["ppcpu"].append(pts / cpu if cpu > 0 else float("nan"))
        for n in names:
            if n == "sqlite":
                configs[n].stop()  # the last checkpoint writes the head
                stored[n] = _stored_sqlite(workdir / "sqlite" / "mlpulse.db")
            else:
                stored[n] = _stored_pg(urls[n])
                configs[n].stop()

        # The 24 h summary on both stores.
        hours = 1.0 if quick else 24.0
        reps = 3 if quick else 25
        meta = day_database(workdir / "day-sqlite", hours, log=workdir / "day-fill.log")
        pg_url = cluster.create_database("day")
        pg_port, lite_port = free_port(), free_port()
        with (
            backend_child(
                workdir / "day-pg", pg_port, log=workdir / "day-pg.log", MLPULSE_STORAGE_URL=pg_url
            ),
            backend_child(workdir / "day-sqlite", lite_port, log=workdir / "day-lite.log"),
        ):
            t0 = time.perf_counter()
            day = fill(pg_port, hours, meta["to"])
            fill_s = time.perf_counter() - t0
            q = urllib.parse.urlencode({"from": day["from"], "to": day["to"]})
            lite_q = urllib.parse.urlencode({"from": meta["from"], "to": meta["to"]})
            conns = {
                "postgresql": (http.client.HTTPConnection("127.0.0.1", pg_port, timeout=120), q),
                "sqlite": (http.client.HTTPConnection("127.0.0.1", lite_port, timeout=120), lite_q),
            }
            for conn, qs in conns.values():  # warm
                _get_ms(conn, f"/metrics/summary?{qs}")
            for i in range(reps):
                for k in ["sqlite", "postgresql"] if i % 2 else ["postgresql", "sqlite"]:
                    conn, qs = conns[k]
                    summary[k].append(_get_ms(conn, f"/metrics/summary?{qs}"))
            for conn, _ in conns.values():
                conn.close()
    finally:
        for cfg in configs.values():
            cfg.stop()
        cluster.stop()

    expected = {
        "histogram observations": sum(s.hist_observations for s in streams),
        "sum points": sum(s.sum_points for s in streams),
        "gauge points": sum(s.gauge_points for s in streams),
    }
    lost: dict[str, int] = {}
    for n in names:
        got = stored[n]
        counted = {
            "histogram observations": got.get("histogram", 0) + got.get("exp_histogram", 0),
            "sum points": got.get("sum", 0),
            "gauge points": got.get("gauge", 0),
        }
        lost[n] = int(sum(abs(expected[k] - counted[k]) for k in expected))
    med = {n: {k: median(v) for k, v in res[n].items()} for n in names}
    base = med["sqlite"]["ppcpu"]
    figures = []
    rows = []
    for n in names:
        ppcpu, pps = med[n]["ppcpu"], med[n]["pps"]
        figures.append(
            fig(f"{n}: data points per CPU-second (all processes)", ppcpu, "points/CPU-s")
        )
        figures.append(fig(f"{n}: data points per second (wall)", pps, "points/s"))
        ratio = ppcpu / base if ppcpu and base else None
        rows.append(
            [
                n,
                round(pps or 0),
                round(ppcpu or 0),
                rnd(ratio, 3),
                len(errors[n]),
                refused[n],
                lost[n],
            ]
        )
    figures.append(
        fig("points lost or miscounted, all configurations", float(sum(lost.values())), "points",
            at_most=0.0)
    )  # fmt: skip
    figures.append(
        fig("non-200 answers, all configurations", float(sum(len(e) for e in errors.values())),
            "answers", at_most=0.0)
    )  # fmt: skip
    for k in ("sqlite", "postgresql"):
        figures.append(fig(f"summary 24h on {k}: p95", percentile(summary[k], 95), "ms"))
        figures.append(fig(f"summary 24h on {k}: p50", percentile(summary[k], 50), "ms"))
    return {
        "method": (__doc__ or "").split("\n\n", 1)[1].strip(),
        "figures": figures,
        "tables": [
            {
                "title": f"Ingest, median of {rounds} interleaved rounds "
                f"({points_per_window * per_round:,} points per round)",
                "columns": [
                    "store",
                    "points/s",
                    "points/CPU-s",
                    "vs sqlite (per CPU-s)",
                    "non-200",
                    "refused",
                    "lost",
                ],
                "rows": rows,
            }
        ],
        "notes": [
            f"PostgreSQL day dataset ingested through one replica in {fill_s:.0f} s "
            f"({hours:g} h x 20 series at 5 s).",
            "CPU per configuration includes the PostgreSQL server's processes (they do the "
            "storing); wall-clock points/s shows what the replicas add in parallel on 2 cores.",
        ],
    }
