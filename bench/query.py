"""B6 query latency: `/metrics/history` and `/metrics/current` over a day of data.

The backend (one uvicorn process) serves the day database of bench/_dataset.py (20
series, 24 h of 5 s windows, filled through OTLP ingest). A client with one keep-alive
connection sends the queries round-robin (so every query sees the same machine noise),
each many times, and times them end to end (request sent → body read). The history
queries are the dashboard's charts for the "24h" range at the server's automatic step,
plus one at a fine step (60 s: 1440 points); `/metrics/current` is the snapshot over the
default 5 min window and over 24 h. `/metrics/distribution` and `/metrics/summary` over
24 h are timed too: the page's cold load asks for both (see B5's waterfall).
"""

from __future__ import annotations

import http.client
import time
import urllib.parse
from pathlib import Path
from typing import Any

from bench._common import backend_child, fig, free_port, percentile, rnd
from bench._dataset import _request, day_database

TITLE = "Query latency over 24 h (/metrics/history, /metrics/current)"


def _queries(t0: float, t1: float) -> dict[str, tuple[str, dict[str, Any]]]:
    day = {"from": t0, "to": t1}
    return {
        "history request_rate 24h (auto step)": (
            "/metrics/history",
            {"metric": "request_rate", "group_by": "service", **day},
        ),
        "history p95_latency_ms 24h (auto step)": (
            "/metrics/history",
            {"metric": "p95_latency_ms", "group_by": "service", **day},
        ),
        "history p99_latency_ms by route 24h (auto step)": (
            "/metrics/history",
            {"metric": "p99_latency_ms", "group_by": "route", **day},
        ),
        "history error_rate_percent 24h (auto step)": (
            "/metrics/history",
            {"metric": "error_rate_percent", "group_by": "service", **day},
        ),
        "history model_mae 24h (auto step)": (
            "/metrics/history",
            {"metric": "model_mae", "group_by": "model", **day},
        ),
        "history p95_latency_ms 24h at 60 s step": (
            "/metrics/history",
            {"metric": "p95_latency_ms", "group_by": "service", "step": "60", **day},
        ),
        "distribution http.server.request.duration 24h": (
            "/metrics/distribution",
            {"metric": "http.server.request.duration", **day},
        ),
        "summary 24h": ("/metrics/summary", day),
        "current (5 min window)": ("/metrics/current", {}),
        "current (24 h window)": ("/metrics/current", {"window": "24h"}),
    }


def _get(conn: http.client.HTTPConnection, path: str) -> tuple[int, int, float]:
    t = time.perf_counter()
    conn.request("GET", path, headers={"Accept": "application/json"})
    resp = conn.getresponse()
    body = resp.read()
    return resp.status, len(body), (time.perf_counter() - t) * 1000


READERS = 6


def _concurrent(port: int, seconds: float) -> dict[str, Any]:
    """6 readers on 1 h ranges while 1 writer posts exports as fast as it is answered."""
    import threading

    import numpy as np

    from bench._otlp import Poster

    stop = threading.Event()
    lat: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    posted = [0]
    hour = [
        f"/metrics/history?{urllib.parse.urlencode(q)}"
        for q in (
            {"metric": "request_rate", "group_by": "service", "from": "now-1h"},
            {"metric": "p95_latency_ms", "group_by": "service", "from": "now-1h"},
            {"metric": "error_rate_percent", "group_by": "service", "from": "now-1h"},
            {"metric": "model_mae", "group_by": "model", "from": "now-1h"},
        )
    ] + ["/metrics/current", "/metrics/summary?from=now-1h"]

    def writer() -> None:
        rng = np.random.default_rng(7)
        poster = Poster(port)
        t = time.time() - 5
        try:
            while not stop.is_set():
                t = max(t + 0.001, time.time() - 5)
                status, _ = poster.post(_request(t, 1, rng).SerializeToString())
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
                    posted[0] += 1
        finally:
            poster.close()

    def reader(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        k = i
        while not stop.is_set():
            status, _, ms = _get(conn, hour[k % len(hour)])
            k += 1
            with lock:
                lat.append(ms)
                statuses[status] = statuses.get(status, 0) + 1
        conn.close()

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader, args=(i,)) for i in range(READERS)
    ]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(60)
    return {"latencies_ms": lat, "statuses": statuses, "exports": posted[0]}


def _profile_summary(db: Path, t0: float, t1: float) -> dict[str, Any]:
    """Profile the slowest query of the page's cold load (the 24 h summary) in-process."""
    import cProfile
    import io
    import pstats
    import re

    from mlpulse.backend.ingest.pipeline import open_engine
    from mlpulse.backend.query.snapshot import snapshot

    store = open_engine(db)
    try:
        snapshot(store, t1, t1 - t0, None)  # warm the page cache
        prof = cProfile.Profile(time.process_time)
        c0 = time.process_time()
        prof.enable()
        snapshot(store, t1, t1 - t0, None)
        prof.disable()
        cpu = time.process_time() - c0
    finally:
        store.close()
    st = pstats.Stats(prof)
    total = sum(v[2] for v in st.stats.values()) or 1.0  # type: ignore[attr-defined]
    own = sorted(
        (
            (f"{Path(f).name}:{n}" if f != "~" else n, v[2], v[3])
            for (f, _l, n), v in st.stats.items()  # type: ignore[attr-defined]
        ),
        key=lambda x: -x[1],
    )[:6]
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(r"backend/", 14)
    lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
    start = next((i for i, ln in enumerate(lines) if "ncalls" in ln), 0)
    table = [re.sub(r"/\S*/(site-packages|lib/python3\.\d+)/", "", ln) for ln in lines[start:]]
    table = [ln.replace(str(db.parents[3]) + "/", "") for ln in table]
    return {
        "cpu_s": cpu,
        "top_own": [[n, rnd(t / total, 3), rnd(c / total, 3)] for n, t, c in own],
        "table": "\n".join(table),
    }


def run(quick: bool, workdir: Path) -> dict[str, Any]:
    hours = 1.0 if quick else 24.0
    reps = 3 if quick else 25
    data = workdir / "data"
    meta = day_database(data, hours, log=workdir / "fill.log")
    port = free_port()
    lat: dict[str, list[float]] = {}
    sizes: dict[str, int] = {}
    points: dict[str, int] = {}
    with backend_child(data, port, log=workdir / "backend.log") as backend:
        qs = _queries(meta["from"], meta["to"])
        paths = {k: f"{p}?{urllib.parse.urlencode(q)}" if q else p for k, (p, q) in qs.items()}
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        import json

        for k, path in paths.items():  # warm (and check) each query once
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"{k}: {resp.status} {body[:300]!r}")
            doc = json.loads(body)
            points[k] = sum(len(s.get("points", [])) for s in doc.get("series", []))
            lat[k] = []
        c0 = backend.cpu_s()
        for _ in range(reps):
            for k, path in paths.items():
                status, size, ms = _get(conn, path)
                if status != 200:
                    raise RuntimeError(f"{k}: {status}")
                lat[k].append(ms)
                sizes[k] = size
        cpu = backend.cpu_s() - c0
        conn.close()
        mixed = _concurrent(port, 5.0 if quick else 30.0)
    prof = _profile_summary(data / "mlpulse.db", meta["from"], meta["to"])
    figures = []
    rows = []
    targets = {"history request_rate 24h (auto step)", "history p95_latency_ms 24h (auto step)",
               "summary 24h"}  # fmt: skip
    for k in qs:
        p50, p95 = percentile(lat[k], 50), percentile(lat[k], 95)
        figures.append(fig(f"{k}: p50", p50, "ms"))
        figures.append(fig(f"{k}: p95", p95, "ms", at_most=50.0 if k in targets else None))
        rows.append([k, p50, p95, min(lat[k]), points.get(k) or None, sizes.get(k)])
    mixed_lat = mixed["latencies_ms"]
    errors_5xx = sum(n for code, n in mixed["statuses"].items() if code >= 500)
    figures.append(
        fig(
            f"reads while ingest runs ({READERS} readers, 1 writer, 1 h ranges): p99",
            percentile(mixed_lat, 99),
            "ms",
            at_most=150.0,
        )
    )
    figures.append(
        fig("reads while ingest runs: 5xx answers", float(errors_5xx), "answers", at_most=0.0)
    )
    return {
        "profile": prof["table"],
        "method": (__doc__ or "").split("\n\n", 1)[1].strip(),
        "figures": figures,
        "tables": [
            {
                "title": f"Latency over {reps} interleaved repetitions (ms)",
                "columns": ["query", "p50 ms", "p95 ms", "min ms", "points returned", "bytes"],
                "rows": rows,
            }
        ],
        "notes": [
            f"Data: {meta['points']:,} points ({hours:g} h x 20 series at 5 s) "
            + (
                "from the cache; "
                if meta.get("cached")
                else f"ingested in {meta['fill_s']:.0f} s; "
            )
            + f"backend CPU {cpu:.1f} s for {reps * len(qs)} queries "
            f"({cpu / (reps * len(qs)) * 1000:.0f} ms per query on average).",
            f"Reads while ingest runs: {len(mixed_lat)} reads by {READERS} threads (1 h "
            f"history of four signals, /metrics/current, a 1 h summary) while one writer "
            f"posted {mixed['exports']} exports (20 series each) as fast as answered; "
            f"p50 {percentile(mixed_lat, 50) or 0:.1f} ms; status codes {mixed['statuses']}.",
            "Targets (issue 11): 24 h summary and 24 h history p95 <= 50 ms; reads while "
            "ingest runs p99 <= 150 ms with no 5xx.",
            f"Profile of the 24 h summary in-process ({prof['cpu_s'] * 1000:.0f} ms CPU under "
            "cProfile), functions by own time (share; with callees): "
            + "; ".join(f"{n} {s:.0%} ({c:.0%})" for n, s, c in prof["top_own"][:5])
            + ". Repeated reads of closed windows come from the engine's result cache.",
        ],
        "details": {
            "latencies_ms": {k: [rnd(x) for x in v] for k, v in lat.items()},
            "dataset": meta,
        },
    }
