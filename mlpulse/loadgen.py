"""`mlpulse loadgen`: realistic traffic and delayed ground truth against a running mlapi.

The mix: both models, a pool of popular scans asked again and again (so the prediction
cache has something to hit), a share of malformed requests (so the API's 4xx path is
exercised), and ground truth posted back to `/feedback` after a realistic delay, drawn
from the same synthetic world the models were trained on — so when a fault scenario
makes a model drift, its measured error really rises.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import random
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from mlpulse.mlapi.scans import (
    MODEL_NAMES,
    ModelName,
    ScanFeatures,
    random_features,
    representative_scans,
    simulate_actual,
)

log = logging.getLogger("mlpulse.loadgen")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the load generator's options."""
    parser.add_argument("--url", default="http://127.0.0.1:8002", help="mlapi base URL")
    parser.add_argument("--rate", type=float, default=8.0, help="requests per second")
    parser.add_argument(
        "--duration", type=float, default=0.0, help="seconds to run (0: until Ctrl-C)"
    )
    parser.add_argument(
        "--bad-share", type=float, default=0.03, help="share of malformed requests (default 3%%)"
    )
    parser.add_argument(
        "--feedback-share",
        type=float,
        default=0.8,
        help="share of fresh (non-popular) predictions whose ground truth is posted back "
        "(default 80%%)",
    )
    parser.add_argument(
        "--feedback-delay",
        default="2-10",
        help="seconds before ground truth arrives, as MIN-MAX (default %(default)s)",
    )
    parser.add_argument(
        "--popular-share",
        type=float,
        default=0.75,
        help="share of requests for a popular, likely cached scan",
    )
    parser.add_argument("--seed", type=int, default=7, help="random seed (default %(default)s)")
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=64,
        help="cap on concurrent requests (default %(default)s)",
    )


@dataclass
class LoadStats:
    """What the load generator has done so far."""

    sent: int = 0
    ok: int = 0
    client_errors: int = 0
    server_errors: int = 0
    transport_errors: int = 0
    cache_hits: int = 0
    feedback_sent: int = 0
    feedback_ok: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def line(self) -> str:
        """One progress line."""
        lat = sorted(self.latencies_ms)
        p50 = lat[len(lat) // 2] if lat else 0.0
        p95 = lat[int(len(lat) * 0.95)] if lat else 0.0
        self.latencies_ms.clear()
        return (
            f"sent {self.sent}  ok {self.ok}  4xx {self.client_errors}  "
            f"5xx {self.server_errors}  errors {self.transport_errors}  "
            f"cache hits {self.cache_hits}  feedback {self.feedback_ok}/{self.feedback_sent}  "
            f"latency p50 {p50:.0f} ms p95 {p95:.0f} ms"
        )


class LoadGenerator:
    """Poisson arrivals at `rate` per second, each a prediction and maybe a feedback."""

    def __init__(self, args: argparse.Namespace) -> None:
        self._args = args
        self._rng = np.random.default_rng(args.seed)
        self._random = random.Random(args.seed)
        lo, _, hi = str(args.feedback_delay).partition("-")
        self._delay = (float(lo), float(hi or lo))
        # A few hundred popular scans with Zipf-like weights: realistic cache reuse. The
        # traffic must stay in the training distribution, or a healthy demo shows drift
        # (PSI ~0.1): the pool has the distribution's timeframe and market-hours shares
        # exactly, and the exponent is mild (0.5), so no handful of scans dominates.
        self._popular = representative_scans(300, self._rng)
        self._weights = [1.0 / (rank + 1) ** 0.5 for rank in range(len(self._popular))]
        self.stats = LoadStats()
        self._in_flight = asyncio.Semaphore(args.max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> LoadStats:
        """Send until `stop` is set or the duration has passed."""
        limits = httpx.Limits(max_connections=self._args.max_in_flight)
        async with httpx.AsyncClient(
            base_url=self._args.url, timeout=10.0, limits=limits
        ) as client:
            if not await _wait_ready(client, stop):
                return self.stats
            deadline = time.monotonic() + self._args.duration if self._args.duration else None
            next_report = time.monotonic() + 10.0
            while not stop.is_set():
                if deadline and time.monotonic() >= deadline:
                    break
                await self._in_flight.acquire()
                self._spawn(self._one_request(client))
                if time.monotonic() >= next_report:
                    log.info("%s", self.stats.line())
                    next_report += 10.0
                wait = self._random.expovariate(self._args.rate)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=wait)
            # Let in-flight answers land; feedback still waiting for its delay is dropped,
            # as it would be when a real client goes away.
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=2.0)
            for task in self._tasks:
                task.cancel()
        log.info("done: %s", self.stats.line())
        return self.stats

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _pick(self) -> tuple[ModelName, ScanFeatures, bool]:
        """A model, a scan, and whether the scan is one of the popular ones."""
        model: ModelName = MODEL_NAMES[0] if self._random.random() < 0.55 else MODEL_NAMES[1]
        if self._random.random() < self._args.popular_share:
            return model, self._random.choices(self._popular, weights=self._weights)[0], True
        return model, random_features(self._rng), False

    def _bad_body(self) -> dict[str, Any]:
        body = dataclasses.asdict(random_features(self._rng))
        kind = self._random.randrange(3)
        if kind == 0:
            body["symbol_count"] = -5
        elif kind == 1:
            body.pop("lookback_days")
        else:
            body["timeframe"] = "13m"
        return body

    async def _one_request(self, client: httpx.AsyncClient) -> None:
        try:
            model, features, popular = self._pick()
            bad = self._random.random() < self._args.bad_share
            body = self._bad_body() if bad else dataclasses.asdict(features)
            started = time.perf_counter()
            self.stats.sent += 1
            try:
                response = await client.post(f"/predict/{model}", json=body)
            except httpx.HTTPError:
                self.stats.transport_errors += 1
                return
            self.stats.latencies_ms.append((time.perf_counter() - started) * 1000)
            if response.status_code >= 500:
                self.stats.server_errors += 1
                return
            if response.status_code >= 400:
                self.stats.client_errors += 1
                return
            self.stats.ok += 1
            answer = response.json()
            if answer.get("cache_hit"):
                self.stats.cache_hits += 1
        finally:
            self._in_flight.release()
        # Ground truth comes from an audit sample of fresh scans: the same few hundred
        # popular scans, graded again and again, would measure the model on them rather
        # than on the traffic it was trained for (their errors do not average out).
        if not popular and self._random.random() < self._args.feedback_share:
            actual = simulate_actual(model, features, self._rng)
            self._spawn(self._feedback(client, answer["prediction_id"], actual))

    async def _feedback(self, client: httpx.AsyncClient, prediction_id: str, actual: float) -> None:
        await asyncio.sleep(self._random.uniform(*self._delay))
        self.stats.feedback_sent += 1
        with contextlib.suppress(httpx.HTTPError):
            response = await client.post(
                "/feedback", json={"prediction_id": prediction_id, "actual": actual}
            )
            if response.status_code == 200:
                self.stats.feedback_ok += 1


async def _wait_ready(client: httpx.AsyncClient, stop: asyncio.Event) -> bool:
    """Wait until mlapi answers /health (it may still be training); False if stopped."""
    waited = 0.0
    while not stop.is_set():
        with contextlib.suppress(httpx.HTTPError):
            if (await client.get("/health", timeout=2.0)).status_code == 200:
                return True
        if waited and waited % 10 < 0.25:
            log.info("waiting for mlapi at %s (%.0f s)", client.base_url, waited)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=0.25)
        waited += 0.25
    return False


def run(args: argparse.Namespace) -> int:
    """Run the load generator until Ctrl-C, SIGTERM or `--duration`."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        log.info("loadgen: %.3g requests/s against %s", args.rate, args.url)
        await LoadGenerator(args).run(stop)

    asyncio.run(main())
    return 0
