"""B1 instrumentation overhead: bare mlapi vs ours (metrics; metrics + traces) vs stock.

Variants, all on the real `mlpulse.mlapi.app:create_app` (models trained as in production),
plus a trivial `GET /ping` route added to each app:

- `bare`: `MlapiSettings(telemetry_enabled=False)` — no OpenTelemetry at all;
- `metrics`: `instrument_app` with metrics only (HTTP, model, cache, system meters);
- `traces`: ours with traces at 100 % sampling (the default ParentBased(AlwaysOn));
- `stock`: the bare app + `FastAPIInstrumentor.instrument_app(app, tracer_provider=...,
  meter_provider=...)` with its defaults (server span + receive/send spans, its own
  HTTP metrics).

Request mixes: "cache hits" cycles through the 300 popular scans (warm cache: the
cheapest real path of `/predict/*`, the hardest case for a relative overhead); "loadgen
mix" follows mlpulse loadgen's defaults: 75 % popular scans (300 of them, weights
1/(rank+1)^0.7), 25 % fresh scans from `mlpulse.mlapi.scans.random_features` (cache misses: a
scikit-learn prediction), new ones every round. Every variant gets the same bodies in
the same order.

Exporters are real but cheap: OTLP/HTTP protobuf exporters (metrics through a
PeriodicExportingMetricReader every 5 s, spans through a BatchSpanProcessor) sending to a
local sink that accepts and discards. So serialisation and export threads are counted.

Four measurements; the first three interleave the variants round by round:
- judged for metrics-only: pinned pairs through uvicorn. This machine's speed swings by
  10-20 % from one second to the next (the host's other guests; it shows in CPU time
  too), so runs one after the other differ by more than the 1 % judged: two identical
  bare servers measured that way give a per-round ratio with an sd of ~11 %. So a bare
  and a metrics-only server are pinned to the same CPU and loaded at the same time (one
  wrk each, on the other CPU) for 3 s, 16 rounds per case, four copies of each in
  turn: every swing lands on both, and the ratio of their CPU per request is the
  instrumentation's cost (sd ~1-3 % per round). An A/A pair (two bare servers) run the
  same way shows the method's own floor of bias and noise, which is process to process
  (one process of the same code runs a few % faster than another), not round to round;
- through uvicorn (three processes per variant, one per round in turn, all up at once)
  driven by wrk from a second process; per round, wrk's req/s and the server's CPU
  time per request (psutil). The judged pair, bare and metrics-only, runs back to back
  in every round, ABBA (BAAB the next round), so a drift of the machine within a round
  lands on both alike; traces and stock, whose margins are wide, run after them every
  other round. A saturated one-process server's throughput on a core of
  its own is 1 / CPU per request, and that CPU includes the server's own export
  threads, so this CPU-normalised ratio judges traces+metrics against stock; for
  metrics-only it is context (the pinned pairs are judged); the wall (req/s) ratio is
  shown beside it;
- in-process: raw ASGI calls (no server, no socket), process CPU µs per request; the
  added cost is the median over rounds of (variant - bare) in the same round. Context:
  the four apps share one process, so each one's export threads land on all batches;
- an estimate from parts for metrics-only, the least noisy: the HTTP middleware timed
  alone around a trivial ASGI app, the model and cache recorders timed alone (as mlapi
  calls them, features included, their collections left out), and one collection + OTLP
  export of the whole metrics-only app timed after 5000 requests, the median of 7 (a
  conservative 5 s interval: a busy server sees more, and the export's fixed part
  spreads thinner; CPU of the collecting thread: the sink runs in this process too).
  Their sum is judged against the bare server's CPU per request through uvicorn in the
  same run (the denominator a server pays: the instrumentation adds to it, nothing
  else); on the in-process bare cost, which lacks uvicorn's HTTP work, it is shown as
  context.
CPU time rather than wall time throughout: time spent descheduled on this shared
machine is not the app's cost, and it is most of the noise.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import json
import pstats
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench._common import (
    PYTHON,
    Child,
    Sink,
    Skip,
    fig,
    free_port,
    iqr,
    median,
    rnd,
    wait_http,
)

TITLE = "Instrumentation overhead (mlapi, in-process and through uvicorn)"
VARIANTS = ("bare", "metrics", "traces", "stock")
# The request mix of mlpulse loadgen's defaults: POOL popular scans with weights
# 1/(rank+1)^WEIGHT_EXPONENT asked POPULAR_SHARE of the time, the rest fresh scans drawn
# by mlpulse.mlapi.scans.random_features (cache misses).
POOL = 300
WEIGHT_EXPONENT = 0.7
POPULAR_SHARE = 0.75
# Through uvicorn: rounds, seconds per wrk run, and how often (in rounds) traces and stock
# run beside the judged bare/metrics pair (their margins are wide; the pair's is 1 %).
ROUNDS = 12
RUN_SECONDS = 2.0
OTHERS_EVERY = 2
# Pinned pairs (the judged metrics-only figure): rounds, seconds per run, wrk connections,
# server processes per variant. The pairs' floor is process to process (a bare process can
# run a few % faster than another bare one: memory layout, hash seeds), so copies, not
# rounds, narrow it: with 3 copies a recorded A/A pair came out 1.035.
PAIR_ROUNDS = 16
PAIR_SECONDS = 3
PAIR_CONNECTIONS = 8
PAIR_COPIES = 4
# In-process: how many collections (after 5000 requests each) the export cost is the median of.
EXPORT_SAMPLES = 7


def _weights(n: int) -> list[float]:
    return [1.0 / (rank + 1) ** WEIGHT_EXPONENT for rank in range(n)]


class Case:
    """An endpoint and the request bodies it gets."""

    def __init__(self, key: str, method: str, path: str, mix: str) -> None:
        self.key, self.method, self.path, self.mix = key, method, path, mix


CASES = (
    Case("/predict/result (cache hits)", "POST", "/predict/result", "hit"),
    Case("/predict/result (loadgen mix)", "POST", "/predict/result", "mix"),
    Case("/predict/duration (loadgen mix)", "POST", "/predict/duration", "mix"),
    Case("/ping (trivial)", "GET", "/ping", "none"),
)
PREDICT_CASES = [c for c in CASES if c.method == "POST"]


def _features_json(f: Any) -> bytes:
    import dataclasses

    return json.dumps(dataclasses.asdict(f)).encode()


def popular() -> list[bytes]:
    import numpy as np

    from mlpulse.mlapi.models import random_features

    rng = np.random.default_rng(7)
    return [_features_json(random_features(rng)) for _ in range(POOL)]


def sequence(case: Case, n: int, seed: int, pool: list[bytes]) -> list[bytes]:
    """The bodies of one batch: the same for every variant in a round (same hits, misses)."""
    import random

    import numpy as np

    from mlpulse.mlapi.models import random_features

    if case.mix == "none":
        return [b""] * n
    if case.mix == "hit":
        return [pool[i % len(pool)] for i in range(n)]
    rnd_ = random.Random(seed)
    rng = np.random.default_rng(seed)
    weights = _weights(len(pool))
    return [
        rnd_.choices(pool, weights=weights)[0]
        if rnd_.random() < POPULAR_SHARE
        else _features_json(random_features(rng))
        for _ in range(n)
    ]


def build_app(variant: str, sink_url: str, quick: bool = False) -> Any:
    """The real mlapi app, instrumented per `variant`, with a trivial GET /ping."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from mlpulse.mlapi.app import create_app
    from mlpulse.mlapi.config import MlapiSettings

    def reader() -> PeriodicExportingMetricReader:
        return PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=f"{sink_url}/v1/metrics"), export_interval_millis=5000
        )

    def processor() -> BatchSpanProcessor:
        return BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{sink_url}/v1/traces"))

    size: dict[str, Any] = {"training_samples": 300, "model_trees": 5} if quick else {}
    # Ours export metrics as mlapi does in production: the exporter instrument_app builds
    # (OTLP/HTTP to backend_url's /v1/metrics every 5 s), i.e. the buffered export path.
    ours = MlapiSettings(backend_url=sink_url, **size)
    if variant in ("bare", "stock"):
        app = create_app(MlapiSettings(telemetry_enabled=False, **size))
    elif variant == "metrics":
        app = create_app(ours, span_processors=[])
    elif variant == "traces":
        app = create_app(ours, span_processors=[processor()])
    else:
        raise ValueError(variant)

    async def ping() -> dict[str, bool]:
        return {"ok": True}

    app.add_api_route("/ping", ping, methods=["GET"])
    if variant == "stock":
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider

        resource = Resource.create({"service.name": "mlapi-stock"})
        tp = TracerProvider(resource=resource)
        tp.add_span_processor(processor())
        mp = MeterProvider(metric_readers=[reader()], resource=resource)
        FastAPIInstrumentor.instrument_app(app, tracer_provider=tp, meter_provider=mp)
        app.state.bench_providers = (tp, mp)
    return app


# ---------------------------------------------------------------- in-process (raw ASGI)


def _scope(method: str, path: str, body: bytes) -> dict[str, Any]:
    headers = [(b"host", b"bench"), (b"user-agent", b"bench")]
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8002),
        "state": {},
    }


async def _call(app: Any, method: str, path: str, body: bytes) -> int:
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # no disconnect while the response is being sent
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(_scope(method, path, body), receive, send)
    return status


async def _batch(app: Any, case: Case, seq: list[bytes]) -> float:
    """Send the requests of `seq` one after another; return CPU µs per request.

    Process CPU time (all threads: the exporters' too), not wall time: on a shared
    machine time spent descheduled is not the app's cost, and it is most of the noise.
    """
    method, path = case.method, case.path
    t0 = time.process_time()
    for body in seq:
        await _call(app, method, path, body)
    return (time.process_time() - t0) / len(seq) * 1e6


async def _in_process(quick: bool, sink_url: str) -> dict[str, Any]:
    from contextlib import AsyncExitStack

    pool = popular()
    apps = {v: build_app(v, sink_url, quick) for v in VARIANTS}
    # Many short rounds: pairs of adjacent batches share the machine's state of the moment.
    rounds, per = (2, 20) if quick else (60, 80)
    samples: dict[str, dict[str, list[float]]] = {c.key: {v: [] for v in VARIANTS} for c in CASES}
    async with AsyncExitStack() as stack:
        for app in apps.values():
            await stack.enter_async_context(app.router.lifespan_context(app))
        # Warm up: fill the caches with the popular scans, build the middleware stacks.
        for v, app in apps.items():
            for c in CASES:
                body = pool[0] if c.method == "POST" else b""
                status = await _call(app, c.method, c.path, body)
                if status != 200:
                    raise RuntimeError(f"{v} {c.key}: status {status}")
                warm = 50 if quick else POOL  # the whole popular pool cached (full runs)
                await _batch(
                    app,
                    c,
                    sequence(c, warm, -1, pool)
                    if c.mix != "mix"
                    else [pool[i % POOL] for i in range(warm)],
                )
        for r in range(rounds):
            order = VARIANTS[r % 4 :] + VARIANTS[: r % 4]
            for c in CASES:
                seq = sequence(c, per, r, pool)
                for v in order:
                    samples[c.key][v].append(await _batch(apps[v], c, seq))
        export = await _export_cost(apps["metrics"], CASES[1], pool, 500 if quick else 5000)
        profiles = {}
        prof_case = CASES[1]
        for v in ("metrics", "traces", "stock"):
            seq = sequence(prof_case, 100 if quick else 2000, 10_000, pool)
            profiles[v] = await _profile(apps[v], prof_case, seq)
        for app in apps.values():
            providers = getattr(app.state, "bench_providers", None)
            if providers:
                for p in providers:
                    p.shutdown()
    out: dict[str, Any] = {"rounds": rounds, "requests_per_batch": per, "cases": {}}
    for c in CASES:
        bare = samples[c.key]["bare"]
        row: dict[str, Any] = {"us_per_request": {}, "added_us": {}, "added_us_iqr": {}}
        for v in VARIANTS:
            row["us_per_request"][v] = rnd(median(samples[c.key][v]))
            if v != "bare":
                diffs = [a - b for a, b in zip(samples[c.key][v], bare, strict=True)]
                row["added_us"][v] = rnd(median(diffs))
                row["added_us_iqr"][v] = [rnd(x) for x in iqr(diffs)]
                row.setdefault("time_ratio_vs_bare", {})[v] = rnd(
                    median([a / b for a, b in zip(samples[c.key][v], bare, strict=True)])
                )
        out["cases"][c.key] = row
    out["export"] = export
    out["raw_us"] = samples
    out["recorders_us"] = rnd(
        median([_recorders_us(2000 if quick else 20000, sink_url) for _ in range(5)])
    )
    out["middleware_us"] = rnd(
        median([await _middleware_us(20_000 if quick else 200_000) for _ in range(5)])
    )
    out["profiles"] = profiles
    out["profile_case"] = prof_case.key
    return out


async def _profile(app: Any, case: Case, seq: list[bytes]) -> str:
    prof = cProfile.Profile(time.process_time)  # CPU time: immune to descheduling
    prof.enable()
    await _batch(app, case, seq)
    prof.disable()
    buf = io.StringIO()
    st = pstats.Stats(prof, stream=buf)
    # Only what instrumentation adds: mlpulse's own code and OpenTelemetry's.
    st.sort_stats("tottime").print_stats(r"instrumentation/|opentelemetry/", 12)
    text = buf.getvalue()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    start = next((i for i, ln in enumerate(lines) if "ncalls" in ln), 0)
    table = lines[start:]
    table = [re.sub(r"/\S*/(site-packages|lib/python3\.\d+)/", "", ln) for ln in table]
    table = [ln.replace(str(Path(__file__).resolve().parent.parent) + "/", "") for ln in table]
    total = sum(v[2] for v in st.stats.values())  # type: ignore[attr-defined]
    otel = sum(
        v[2]
        for (f, _l, _n), v in st.stats.items()  # type: ignore[attr-defined]
        if "opentelemetry/" in f or "/instrumentation/" in f
    )
    head = (
        f"{len(seq)} requests; time in instrumentation/ + opentelemetry/ functions: "
        f"{otel / len(seq) * 1e6:.0f} µs per request under cProfile "
        f"({otel / total:.0%} of the profiled time)"
    )
    return head + "\n" + "\n".join(table)


async def _export_cost(app: Any, case: Case, pool: list[bytes], n: int) -> dict[str, Any]:
    """CPU of one collection + OTLP export after `n` requests (about one 5 s interval of a
    busy server; the median of EXPORT_SAMPLES), run in this thread with `force_flush`
    (this thread's CPU time), with what dominates it."""
    # This thread's CPU: `force_flush` collects, encodes and sends in the calling thread,
    # while the discarding sink (and the other apps' export threads) run in other
    # threads of this process, which are not the server's cost.
    tel = app.state.telemetry
    tel.force_flush()
    # The median of several: one collection's CPU swings by 2-4x with what else the
    # machine runs (caches), more than the requests it folds vary.
    samples = []
    for k in range(1 if n < 5000 else EXPORT_SAMPLES):
        await _batch(app, case, sequence(case, n, 20_000 + k, pool))
        c0 = time.thread_time()
        tel.force_flush()
        samples.append(time.thread_time() - c0)
    plain = median(samples)
    await _batch(app, case, sequence(case, n, 20_100, pool))
    prof = cProfile.Profile(time.thread_time)
    c0 = time.thread_time()
    prof.enable()
    tel.force_flush()
    prof.disable()
    cpu = time.thread_time() - c0
    st = pstats.Stats(prof)
    total = sum(v[2] for v in st.stats.values()) or 1.0  # type: ignore[attr-defined]
    own = sorted(
        (
            (f"{Path(f).name}:{name}" if f != "~" else name, v[2])
            for (f, _l, name), v in st.stats.items()  # type: ignore[attr-defined]
        ),
        key=lambda x: -x[1],
    )[:5]
    return {
        "requests": n,
        "cpu_ms": rnd(plain * 1000),
        "cpu_ms_samples": [rnd(x * 1000) for x in samples],
        "us_per_request": rnd(plain / n * 1e6),
        "cpu_ms_profiled": rnd(cpu * 1000),
        "top_own": [[name, rnd(t / total, 3)] for name, t in own],
    }


async def _middleware_us(n: int) -> float:
    """CPU µs per request of the HTTP server middleware alone, in metrics-only mode.

    Timed around a trivial ASGI app (two `send`s, a matched route), with and without
    the middleware, back to back: a direct measurement, where the paired difference on
    a whole FastAPI app's /ping is lost in the app's own variance."""
    from mlpulse_instrumentation._hotpath import HotPath
    from mlpulse_instrumentation._http import HttpServerMiddleware

    class _Route:
        path_format = "/ping"

    route = _Route()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["route"] = route
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    hot_path = HotPath(exemplars=False)
    histogram = hot_path.histogram(
        "http.server.request.duration", "s", "bench", kind="explicit", boundaries=[0.1, 1.0]
    )
    wrapped = HttpServerMiddleware(app, histogram=histogram)
    scope = _scope("GET", "/ping", b"")

    async def send(_message: dict[str, Any]) -> None:
        return None

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def per_call(target: Any) -> float:
        t0 = time.process_time()
        for _ in range(n):
            await target(dict(scope), receive, send)
        return time.process_time() - t0

    bare = await per_call(app)
    timed = await per_call(wrapped)
    hot_path.flush()  # what the requests recorded, folded (a collection's work, not theirs)
    return (timed - bare) / n * 1e6


def _recorders_us(n: int, sink_url: str) -> float:
    """CPU µs per request of the model and cache recorders alone (what /predict records
    beyond the HTTP histogram, features included, as mlapi calls them).

    A collection + OTLP export runs every 5000 requests, as a server's reader would, but
    its CPU is left out: the estimate counts collection and export once, measured on the
    whole metrics-only app (`_export_cost`), which folds these values too."""
    from fastapi import FastAPI

    from mlpulse_instrumentation import instrument_app, uninstrument_app

    app = FastAPI()
    tel = instrument_app(
        app,
        service_name="bench",
        metrics_endpoint=f"{sink_url}/v1/metrics",
        export_interval_s=3600,
        span_processors=[],
        system_metrics=False,
    )
    try:
        from mlpulse.mlapi.scans import FEATURE_NAMES

        vector = tuple(float(k) for k in range(len(FEATURE_NAMES)))
        flushing = 0.0
        t0 = time.process_time()
        recorders: dict[tuple[str, str], Any] = {}
        for i in range(n):
            hit = i % 5 < 3
            # As mlapi's service does: the recorder of (model, version) looked up per
            # request (bound on first use), the feature vector as it is.
            recorder = recorders.get(("result", "1"))
            if recorder is None:
                recorder = recorders["result", "1"] = tel.models.bind("result", "1").with_features(
                    FEATURE_NAMES
                )
            recorder.record_prediction(
                value=10.0 + i % 7,
                confidence=0.8,
                duration_s=0.0004,
                cache_hit=hit,
                features=vector,
            )
            tel.cache.bind("result").record_lookup(hit=hit)
            if i % 5000 == 4999:
                f0 = time.process_time()
                tel.force_flush()
                flushing += time.process_time() - f0
        return (time.process_time() - t0 - flushing) / n * 1e6
    finally:
        uninstrument_app(app)


# ---------------------------------------------------------------- through uvicorn + wrk

_LUA = """
-- mlapi request bodies for wrk: %(mix)s
local popular = {%(popular)s}
local fresh = {%(fresh)s}
local cum = {%(cum)s}
local path, method, share = "%(path)s", "%(method)s", %(share)s
local reqs = {}
local i, f = 0, 0
local headers = {["Content-Type"] = "application/json"}
init = function(args)
  math.randomseed(tonumber(args[1]) or 1)
  for k, b in ipairs(popular) do reqs[k] = wrk.format(method, path, headers, b) end
end
request = function()
  if method == "GET" then return wrk.format(method, path) end
  if share >= 1 then
    i = i %% #reqs + 1
    return reqs[i]
  end
  if math.random() < share then
    local u = math.random()
    for k, c in ipairs(cum) do if u <= c then return reqs[k] end end
    return reqs[#reqs]
  end
  f = f %% #fresh + 1
  return wrk.format(method, path, headers, fresh[f])
end
"""


def _fresh(seed: int, n: int) -> list[bytes]:
    """Fresh scans (not in the popular pool): cache misses, a new set per round."""
    import numpy as np

    from mlpulse.mlapi.models import random_features

    rng = np.random.default_rng(100_000 + seed)
    return [_features_json(random_features(rng)) for _ in range(n)]


def _lua(case: Case, pool: list[bytes], workdir: Path, fresh: list[bytes], tag: str) -> Path:
    weights = _weights(len(pool))
    total, acc, cum = sum(weights), 0.0, []
    for w in weights:
        acc += w
        cum.append(acc / total)
    text = _LUA % {
        "mix": case.key,
        "popular": ", ".join("[[" + b.decode() + "]]" for b in pool),
        "fresh": ", ".join("[[" + b.decode() + "]]" for b in fresh) if case.mix == "mix" else "",
        "cum": ", ".join(f"{c:.6f}" for c in cum),
        "path": case.path,
        "method": case.method,
        "share": 1 if case.mix == "hit" else POPULAR_SHARE,
    }
    p = workdir / f"wrk-{re.sub(r'[^a-z]+', '-', case.key)}-{tag}.lua"
    p.write_text(text)
    return p


def _wrk(port: int, case: Case, seconds: float, lua: Path, seed: int) -> dict[str, float]:
    cmd = ["wrk", "-t1", "-c8", f"-d{max(1, round(seconds))}s", "-s", str(lua)]  # whole seconds
    cmd += [f"http://127.0.0.1:{port}{case.path}", "--", str(seed)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=True)
    found = re.search(r"Requests/sec:\s+([\d.]+)", _all_2xx(out.stdout, out.stderr, case.key))
    if found is None:
        raise RuntimeError(f"wrk said: {out.stdout} {out.stderr}")
    return {"rps": float(found.group(1))}


def _all_2xx(text: str, err: str, what: str) -> str:
    """wrk's report, once it shows no answer other than 2xx."""
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if non2xx and int(non2xx.group(1)) > 0:
        raise RuntimeError(f"wrk {what}: {non2xx.group(0)} {err}")
    return text


def _start_servers(
    servers: dict[tuple[str, int], Child],
    ports: dict[tuple[str, int], int],
    copies: dict[str, int],
    sink_url: str,
    workdir: Path,
    quick: bool,
    cpu: int | None = None,
) -> None:
    """Start `copies[variant]` servers of each variant into `servers` (the caller stops
    them, also those started before a failure), pinned to `cpu` if given; wait for all."""
    for v, count in copies.items():
        for k in range(count):
            port = ports[(v, k)] = free_port()
            argv = [PYTHON, "-m", "bench.instrumentation", "serve", v, str(port), sink_url]
            if quick:
                argv.append("--quick")
            tag = "mlapi" if cpu is None else "pinned"
            child = servers[(v, k)] = Child(argv, log=workdir / f"{tag}-{v}-{k}.log")
            if cpu is not None:
                child.ps.cpu_affinity([cpu])  # before it starts its threads
    for key, child in servers.items():
        try:
            wait_http(f"http://127.0.0.1:{ports[key]}/health", proc=child.proc)
        except Exception as exc:
            raise RuntimeError(f"{key}: {exc}: {child.log_tail()}") from None


def _through_uvicorn(quick: bool, sink_url: str, workdir: Path) -> dict[str, Any]:
    import shutil

    if shutil.which("wrk") is None:
        raise Skip("wrk not installed: run scripts/install-bench-deps.sh")
    pool = popular()
    # The smoke (--quick) starts two servers only: each import of scikit-learn costs seconds.
    variants = ("bare", "metrics") if quick else VARIANTS
    # Three server processes per variant, one per round in turn: one process can be a
    # few % faster or slower than another running the same code (memory layout, hash
    # seeds), which interleaving alone does not cancel.
    copies = 1 if quick else 3
    servers: dict[tuple[str, int], Child] = {}
    ports: dict[tuple[str, int], int] = {}
    try:
        _start_servers(servers, ports, {v: copies for v in variants}, sink_url, workdir, quick)
        cases = [CASES[1], CASES[3]] if quick else list(CASES)
        hit_lua = _lua(CASES[0], pool, workdir, [], "warm")
        rounds, secs = (1, 1.0) if quick else (ROUNDS, RUN_SECONDS)
        for key in servers if not quick else []:  # warm: caches, middleware stacks
            for c in cases:
                lua = hit_lua if c.mix == "mix" else _lua(c, pool, workdir, [], "warm")
                _wrk(ports[key], c, 1, lua, 0)
        # Per case and variant, one value per round that ran it: req/s and server CPU µs
        # per request, each the mean of the variant's runs in that round.
        rps: dict[str, dict[str, list[float]]] = {c.key: {v: [] for v in variants} for c in cases}
        cpu: dict[str, dict[str, list[float]]] = {c.key: {v: [] for v in variants} for c in cases}
        # The bare value of the rounds that also ran traces and stock (their pairs).
        rps_pair: dict[str, list[float]] = {c.key: [] for c in cases}
        cpu_pair: dict[str, list[float]] = {c.key: [] for c in cases}
        for r in range(rounds):
            fresh = _fresh(r, 500 if quick else 4000)
            luas = {c.key: _lua(c, pool, workdir, fresh, f"r{r}") for c in cases}
            others = [v for v in variants if v not in ("bare", "metrics")]
            with_others = bool(others) and (quick or r % OTHERS_EVERY == 0)
            for c in cases:
                # The judged pair, bare and metrics, runs ABBA (BAAB every other round),
                # on the same copy and back to back: a drift of the machine during the
                # round lands on both alike.
                order = ["bare", "metrics", "metrics", "bare"]
                if r % 2:
                    order.reverse()
                if quick:
                    order = ["bare", "metrics"]
                if with_others:
                    turn = (r // OTHERS_EVERY) % len(others)
                    order += others[turn:] + others[:turn]
                runs: dict[str, list[tuple[float, float]]] = {}
                for v in order:
                    key = (v, r % copies)
                    c0 = servers[key].cpu_s()
                    res = _wrk(ports[key], c, secs, luas[c.key], 1000 + r)
                    c1 = servers[key].cpu_s()
                    us = (c1 - c0) / max(res["rps"] * secs, 1) * 1e6
                    runs.setdefault(v, []).append((res["rps"], us))
                for v, vals in runs.items():
                    rps[c.key][v].append(sum(x for x, _ in vals) / len(vals))
                    cpu[c.key][v].append(sum(u for _, u in vals) / len(vals))
                if with_others:
                    rps_pair[c.key].append(rps[c.key]["bare"][-1])
                    cpu_pair[c.key].append(cpu[c.key]["bare"][-1])
    finally:
        for child in servers.values():
            child.stop()
    out: dict[str, Any] = {
        "rounds": rounds,
        "seconds_per_run": secs,
        "processes_per_variant": copies,
        "schedule": "per round and case: bare and metrics ABBA/BAAB on one copy; traces and "
        f"stock after them every {OTHERS_EVERY} rounds",
        "cases": {},
    }
    for c in cases:
        row: dict[str, Any] = {
            "rps": {v: rnd(median(rps[c.key][v])) for v in variants},
            "ratio_vs_bare": {},
            "ratio_iqr": {},
            "added_us_from_rps": {},
            "server_cpu_us_per_request": {v: rnd(median(cpu[c.key][v])) for v in variants},
            "rounds": {v: len(cpu[c.key][v]) for v in variants},
        }
        for v in variants[1:]:
            bare_rps = rps[c.key]["bare"] if v == "metrics" else rps_pair[c.key]
            bare_cpu = cpu[c.key]["bare"] if v == "metrics" else cpu_pair[c.key]
            ratios = [a / b for a, b in zip(rps[c.key][v], bare_rps, strict=True)]
            row["ratio_vs_bare"][v] = rnd(median(ratios))
            # A saturated single-process server's throughput on a core of its own is
            # 1 / (CPU per request): the ratio that descheduling noise does not blur.
            cpu_ratios = [b / a for a, b in zip(cpu[c.key][v], bare_cpu, strict=True)]
            row.setdefault("cpu_ratio_vs_bare", {})[v] = rnd(median(cpu_ratios))
            row.setdefault("cpu_ratio_iqr", {})[v] = [rnd(x) for x in iqr(cpu_ratios)]
            added_cpu = [a - b for a, b in zip(cpu[c.key][v], bare_cpu, strict=True)]
            row.setdefault("added_cpu_us", {})[v] = rnd(median(added_cpu))
            row["ratio_iqr"][v] = [rnd(x) for x in iqr(ratios)]
            added = [1e6 / a - 1e6 / b for a, b in zip(rps[c.key][v], bare_rps, strict=True)]
            row["added_us_from_rps"][v] = rnd(median(added))
        out["cases"][c.key] = row
    out["raw_rps"] = rps
    out["raw_cpu_us"] = cpu
    return out


# ------------------------------------------- through uvicorn, pinned pairs (judged)


def _wrk_popen(port: int, case: Case, seconds: int, lua: Path, seed: int, cpu: int) -> Any:
    """wrk in the background, on CPU `cpu` only (set before exec: its threads inherit it)."""
    import os

    cmd = ["wrk", "-t1", f"-c{PAIR_CONNECTIONS}", f"-d{seconds}s", "-s", str(lua)]
    cmd += [f"http://127.0.0.1:{port}{case.path}", "--", str(seed)]
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
    )


def _wrk_requests(proc: Any, what: str) -> int:
    out, err = proc.communicate(timeout=60)
    found = re.search(r"(\d+) requests in", _all_2xx(out, err, what))
    if proc.returncode or found is None:
        raise RuntimeError(f"wrk {what}: {out} {err}")
    return int(found.group(1))


def _pinned_pairs(quick: bool, sink_url: str, workdir: Path) -> dict[str, Any]:
    """Bare and metrics-only through uvicorn, loaded at once on one shared core.

    This machine's speed swings by 10-20 % from second to second (the host's other
    guests; it shows as CPU time too), so two runs one after the other differ by more
    than the 1 % judged (sequential A/A of two bare servers: per-round ratio sd ~11 %).
    Two servers pinned to the same CPU and loaded at the same time (two wrk on the
    other CPU) share every swing: the ratio of their CPU per request is the
    instrumentation's cost, with an A/A (two bare servers) beside it as the method's
    own floor of bias and noise. Copies rotate by round, as in the sequential runs."""
    import os
    import shutil

    if shutil.which("wrk") is None:
        raise Skip("wrk not installed: run scripts/install-bench-deps.sh")
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, load_cpu = cpus[-1], cpus[0]
    copies = 1 if quick else PAIR_COPIES
    pool = popular()
    servers: dict[tuple[str, int], Child] = {}
    ports: dict[tuple[str, int], int] = {}
    try:
        # A spare bare copy for the A/A pair.
        counts = {"bare": copies + 1, "metrics": copies}
        _start_servers(servers, ports, counts, sink_url, workdir, quick, cpu=server_cpu)
        cases = [CASES[1]] if quick else list(PREDICT_CASES)
        rounds, secs = (1, 1) if quick else (PAIR_ROUNDS, PAIR_SECONDS)
        warm = _lua(CASES[0], pool, workdir, [], "pinned-warm")
        for key in servers if not quick else []:
            _wrk_requests(_wrk_popen(ports[key], CASES[0], 1, warm, 0, load_cpu), str(key))
        pairs = [(c.key, c, "metrics") for c in cases]
        if not quick:
            pairs.append(("A/A " + CASES[0].key, CASES[0], "bare"))
        cpu: dict[str, dict[str, list[float]]] = {k: {"a": [], "b": []} for k, _, _ in pairs}
        for r in range(rounds):
            fresh = _fresh(r, 500 if quick else 4000)
            for name, c, other in pairs:
                lua = _lua(c, pool, workdir, fresh, f"pinned-r{r}")
                k = r % copies
                # Against metrics: the same copy number; the A/A: the next bare copy.
                key_a, key_b = ("bare", k), (other, k if other == "metrics" else k + 1)
                a, b = servers[key_a], servers[key_b]
                pa, pb = ports[key_a], ports[key_b]
                c0 = (a.cpu_s(), b.cpu_s())
                procs = (
                    _wrk_popen(pa, c, secs, lua, 1000 + r, load_cpu),
                    _wrk_popen(pb, c, secs, lua, 1000 + r, load_cpu),
                )
                n = (_wrk_requests(procs[0], name), _wrk_requests(procs[1], name))
                c1 = (a.cpu_s(), b.cpu_s())
                cpu[name]["a"].append((c1[0] - c0[0]) / max(n[0], 1) * 1e6)
                cpu[name]["b"].append((c1[1] - c0[1]) / max(n[1], 1) * 1e6)
    finally:
        for child in servers.values():
            child.stop()
    out: dict[str, Any] = {
        "rounds": rounds,
        "seconds_per_run": secs,
        "processes_per_variant": copies,
        "connections_per_wrk": PAIR_CONNECTIONS,
        "cpus": {"servers": server_cpu, "wrk": load_cpu},
        "pairs": {},
    }
    for name, _c, other in pairs:
        a_us, b_us = cpu[name]["a"], cpu[name]["b"]
        ratios = [x / y for x, y in zip(a_us, b_us, strict=True)]
        out["pairs"][name] = {
            "other": other,
            "cpu_ratio": rnd(median(ratios)),
            "cpu_ratio_iqr": [rnd(x) for x in iqr(ratios)],
            "bare_cpu_us": rnd(median(a_us)),
            "other_cpu_us": rnd(median(b_us)),
            "added_cpu_us": rnd(median([y - x for x, y in zip(a_us, b_us, strict=True)])),
            # Keyed by side: in the A/A pair both sides are "bare".
            "raw": {"a (bare)": a_us, f"b ({other})": b_us},
        }
    return out


# ---------------------------------------------------------------- the benchmark


def run(quick: bool, workdir: Path) -> dict[str, Any]:
    with Sink() as sink:
        inproc = asyncio.run(_in_process(quick, sink.url))
        try:
            thr: dict[str, Any] | None = _through_uvicorn(quick, sink.url, workdir)
            thr_error = None
        except Skip as exc:
            thr, thr_error = None, str(exc)
        try:
            pinned: dict[str, Any] | None = _pinned_pairs(quick, sink.url, workdir)
        except Skip:
            pinned = None
        sink_seen = dict(sink.requests)

    figures: list[dict[str, Any]] = []
    tables: list[dict[str, Any]] = []
    notes: list[str] = []
    ip = inproc["cases"]
    tables.append(
        {
            "title": "In-process (raw ASGI): µs per request of bare; added µs per request "
            "(median of per-round paired differences) of the others",
            "columns": [
                "case",
                "bare µs",
                "+metrics µs",
                "+traces+metrics µs",
                "+stock µs",
                "ours÷stock",
            ],
            "rows": [
                [c.key, ip[c.key]["us_per_request"]["bare"]]
                + [ip[c.key]["added_us"][v] for v in VARIANTS[1:]]
                + [_div(ip[c.key]["added_us"]["traces"], ip[c.key]["added_us"]["stock"])]
                for c in CASES
            ],
        }
    )
    for c in PREDICT_CASES:
        r = ip[c.key]
        t, s = r["added_us"]["traces"], r["added_us"]["stock"]
        figures.append(
            fig(
                f"in-process {c.key}: ours (traces+metrics) added µs ÷ stock's",
                _div(t, s),
                "x",
                note=f"ours +{t} µs, stock +{s} µs; context (export threads' work is "
                "shared out among all variants in one process)",
            )
        )
    for c in PREDICT_CASES:
        r = ip[c.key]
        figures.append(
            fig(
                f"in-process {c.key}: metrics-only throughput ÷ bare (1 / CPU per request)",
                _div(1.0, r["time_ratio_vs_bare"]["metrics"]),
                "x",
                note=f"+{r['added_us']['metrics']} µs on {r['us_per_request']['bare']} µs; "
                "context: the hot path only (collection and export run in threads whose CPU "
                "is shared out among the four apps of the process)",
            )
        )
    parts_us = _parts_us(inproc)
    for c in PREDICT_CASES:
        bare_us = ip[c.key]["us_per_request"]["bare"]
        if parts_us is None or not bare_us:
            continue
        figures.append(
            fig(
                f"estimate from parts {c.key}: metrics-only throughput ÷ bare (in-process)",
                bare_us / (bare_us + parts_us),
                "x",
                note=f"{_parts_note(inproc)} = {parts_us} µs per request, on in-process bare "
                f"{bare_us} µs; context: in-process bare lacks the server's HTTP work, so "
                "this overstates the relative cost a server pays",
            )
        )
    if thr is not None:
        te = thr["cases"]
        tables.append(
            {
                "title": "Through uvicorn (3 processes per variant, one per round in turn) + wrk "
                "-t1 -c8 from a second process, bare and metrics back to back (ABBA) every "
                f"round, traces and stock every {OTHERS_EVERY}: "
                "bare req/s; throughput ÷ bare, wall (wrk req/s) and CPU-normalised (bare's "
                "server CPU per request ÷ the variant's); added server CPU µs per request "
                "(medians of per-round paired values)",
                "columns": [
                    "case",
                    "bare req/s",
                    "metrics ÷ bare wall; CPU",
                    "traces+metrics ÷ bare wall; CPU",
                    "stock ÷ bare wall; CPU",
                    "+metrics CPU µs",
                    "+traces CPU µs",
                    "+stock CPU µs",
                ],
                "rows": [
                    [c.key, te[c.key]["rps"]["bare"]]
                    + [
                        _pair(
                            te[c.key]["ratio_vs_bare"].get(v),
                            te[c.key].get("cpu_ratio_vs_bare", {}).get(v),
                        )
                        for v in VARIANTS[1:]
                    ]
                    + [te[c.key].get("added_cpu_us", {}).get(v) for v in VARIANTS[1:]]
                    for c in CASES
                    if c.key in te
                ],
            }
        )
        for c in PREDICT_CASES:
            server_us = te.get(c.key, {}).get("server_cpu_us_per_request", {}).get("bare")
            if parts_us is None or not server_us:
                continue
            figures.append(
                fig(
                    f"estimate from parts {c.key}: metrics-only throughput ÷ bare "
                    "(on uvicorn's bare CPU per request)",
                    server_us / (server_us + parts_us),
                    "x",
                    note=f"{_parts_note(inproc)} = {parts_us} µs per request, on the bare "
                    f"server's {server_us} CPU µs per request (this run, through uvicorn); "
                    "context: parts timed alone in a hot loop cost less than inside a "
                    "server (the pinned pairs measure the whole)",
                )
            )
        for c in PREDICT_CASES:
            if c.key not in te:
                continue
            r = te[c.key]
            figures.append(
                fig(
                    f"uvicorn {c.key}: metrics-only throughput ÷ bare (CPU-normalised, "
                    "one after the other)",
                    r["cpu_ratio_vs_bare"]["metrics"],
                    "x",
                    note=f"IQR {r['cpu_ratio_iqr']['metrics']}; context: runs one after "
                    "the other swing by more than the 1 % judged (the pinned pairs are judged)",
                )
            )
            figures.append(
                fig(
                    f"uvicorn {c.key}: metrics-only throughput ÷ bare (wall, wrk req/s)",
                    r["ratio_vs_bare"]["metrics"],
                    "x",
                    note=f"IQR {r['ratio_iqr']['metrics']}; descheduling noise on a shared machine",
                )
            )
        for c in PREDICT_CASES:
            if c.key not in te:
                continue
            r = te[c.key]
            added = r.get("added_cpu_us", {})
            t, s = added.get("traces"), added.get("stock")
            if t is None or s is None:
                continue
            figures.append(
                fig(
                    f"uvicorn {c.key}: ours (traces+metrics) added CPU µs ÷ stock's",
                    _div(t, s),
                    "x",
                    at_most=0.5,
                    note=f"ours +{t} µs, stock +{s} µs",
                )
            )
    else:
        notes.append(f"throughput through uvicorn skipped: {thr_error}")
    if pinned is not None:
        for name, pr in pinned["pairs"].items():
            aa = pr["other"] == "bare"
            figures.append(
                fig(
                    f"uvicorn pinned pair {name}: "
                    + ("bare ÷ another bare" if aa else "metrics-only throughput ÷ bare")
                    + " (CPU per request, both on one core at once)",
                    pr["cpu_ratio"],
                    "x",
                    at_least=None if aa else 0.99,
                    note=f"IQR {pr['cpu_ratio_iqr']}; CPU µs per request bare "
                    f"{pr['bare_cpu_us']}, other {pr['other_cpu_us']} (added "
                    f"{pr['added_cpu_us']}); {pinned['rounds']} rounds of "
                    f"{pinned['seconds_per_run']} s"
                    + ("; context: the method's own bias and noise floor" if aa else ""),
                )
            )
    notes.append(
        f"Exporters: OTLP/HTTP protobuf to a local discarding sink (requests it saw: "
        f"{sink_seen}); metrics every 5 s (PeriodicExportingMetricReader), spans through a "
        "BatchSpanProcessor."
    )
    ex = inproc["export"]
    notes.append(
        f"One collection + OTLP export of the metrics-only app after {ex['requests']} "
        f"requests (about one 5 s interval of a busy server): {ex['cpu_ms']} ms CPU, "
        f"{ex['us_per_request']} µs per request; by own time: "
        + "; ".join(f"{n} {s:.0%}" for n, s in ex["top_own"])
        + " (shares under cProfile)."
    )
    notes += _analysis(figures, ip, inproc)
    profile = "\n\n".join(
        f"[{v}] {inproc['profile_case']}, cProfile by tottime\n{p}"
        for v, p in inproc["profiles"].items()
    )
    return {
        "method": (__doc__ or "").split("\n\n", 1)[1].strip(),
        "figures": figures,
        "tables": tables,
        "notes": notes,
        "profile": profile,
        "details": {
            "in_process": {k: v for k, v in inproc.items() if k != "profiles"},
            "uvicorn": thr,
            "pinned_pairs": pinned,
        },
    }


def _parts_us(inproc: dict[str, Any]) -> float | None:
    """What metrics-only adds per request, from parts timed alone: the HTTP middleware,
    the model and cache recorders, one collection + OTLP export's share."""
    mw, rec, exp = inproc.get("middleware_us"), inproc["recorders_us"], inproc["export"]
    if mw is None or rec is None or exp["us_per_request"] is None:
        return None
    return rnd(max(mw, 0.0) + rec + exp["us_per_request"])


def _parts_note(inproc: dict[str, Any]) -> str:
    return (
        f"HTTP middleware {inproc.get('middleware_us')} µs + model/cache recorders "
        f"{inproc['recorders_us']} µs + collection and OTLP export "
        f"{inproc['export']['us_per_request']} µs"
    )


def _analysis(
    figures: list[dict[str, Any]], ip: dict[str, Any], inproc: dict[str, Any]
) -> list[str]:
    """Where a target is missed: what dominates (from the profiles) and what would help."""
    out = []
    missed_metrics = [f for f in figures if "metrics-only" in f["figure"] and f.get("ok") is False]
    if missed_metrics:
        spread = {c.key: ip[c.key]["added_us_iqr"]["metrics"] for c in PREDICT_CASES if c.key in ip}
        out.append(
            "Metrics-only misses ≥ 0.99 in "
            + ", ".join(f["figure"].split(":")[0] for f in missed_metrics)
            + ". The pinned pairs measure the whole cost inside a running server; it is "
            f"more than the parts timed alone add up to ({_parts_note(inproc)} per "
            "request), which run in a hot loop with warm caches. Runs one after the other "
            f"(and in-process batches: IQR of added µs {spread}) swing by more than the 1 % "
            "judged, either way. What the request path does (profile above): the "
            "middleware's coroutine frame and `send` wrapper, `route_template`, one deque "
            "append per HTTP measurement, one row per prediction (the feature vector "
            "included) and one per cache lookup; collection folds them every 5 s. (The "
            "OpenTelemetry getters in the metrics profile are FastAPI's own telemetry hooks: "
            "they run in the bare app too.)"
        )
    missed_traces = [f for f in figures if "ours (traces" in f["figure"] and f.get("ok") is False]
    if missed_traces:
        out.append(
            "Ours (traces + metrics) misses ≤ 0.5 x stock in "
            + ", ".join(f["figure"].split(":")[0] for f in missed_traces)
            + ". Ours opens one SERVER span per request in its own middleware (no receive/send "
            "spans, no decoding of every header); what remains is the SDK's per-span work: "
            "`start_span` (sampler, ids, attribute cleaning), `end` and the BatchSpanProcessor, "
            "and OTLP encoding in its export thread (profile above)."
        )
    return out


def _pair(a: float | None, b: float | None) -> str:
    return f"{'—' if a is None else f'{a:.3f}'}; {'—' if b is None else f'{b:.3f}'}"


def _div(a: float | None, b: float | None) -> float | None:
    return rnd(a / b) if a is not None and b else None


def _serve(argv: list[str]) -> None:
    import uvicorn

    variant, port, sink_url = argv[0], int(argv[1]), argv[2]
    app = build_app(variant, sink_url, quick="--quick" in argv)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        _serve(sys.argv[2:])
