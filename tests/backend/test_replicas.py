"""Several `mlpulse backend` processes on one real PostgreSQL: correct under any routing.

Three replicas run as real processes (`python -m mlpulse.cli backend`, the user's
command) on the session's throwaway PostgreSQL server; exports go to them round-robin,
as a load balancer without affinity would send them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from backend_testing import metric_request

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "replica-token"
RULES = """
channels:
  - name: file
    type: file
    path: alerts.jsonl
rules:
  - name: queue_high
    signal: cache_entries
    comparison: ">"
    threshold: 100
    window: 20s
    for: 15s
    min_samples: 1
    severity: warning
    group_by: none
    channels: [file]
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Replica:
    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(env["MLPULSE_DATA_DIR"] + ".log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlpulse.cli", "backend", "--port", str(self.port)],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"{self.name} exited"
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{self.name} did not start")

    def health(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/health", timeout=5).json())

    def post(self, body: bytes) -> httpx.Response:
        return httpx.post(
            f"{self.url}/v1/metrics", content=body, timeout=10,
            headers={"Content-Type": "application/x-protobuf"},
        )  # fmt: skip

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


@pytest.fixture
def replicas(postgres_url: str, tmp_path: Path) -> Iterator[list[Replica]]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    started: list[Replica] = []
    for i in range(3):
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "MLPULSE_STORAGE_URL": postgres_url,
            "MLPULSE_DATA_DIR": str(tmp_path / f"replica-{i}"),
            "MLPULSE_API_TOKEN": TOKEN,
            "MLPULSE_ALERT_RULES_FILE": str(rules),
            "MLPULSE_ALERT_EVAL_INTERVAL": "1",
            "MLPULSE_ALERT_FILE_DIR": str(tmp_path / "alerts"),  # one folder: count all lines
        }
        started.append(Replica(f"replica-{i}", env))
    try:
        for replica in started:
            replica.wait_ready()
        yield started
    finally:
        for replica in started:
            replica.stop()


def _counter(value: float, t: float, start: float) -> bytes:
    req = metric_request(
        "ml.model.predictions", temporality=2,
        points=[{"value": value, "start_s": start, "time_s": t,
                 "attributes": {"ml.model.name": "m"}}],
    )  # fmt: skip
    return bytes(req.SerializeToString())


def _queue(value: float, t: float) -> bytes:
    req = metric_request("ml.cache.entries", kind="gauge", points=[{"value": value, "time_s": t}])
    return bytes(req.SerializeToString())


def _predictions(replica: Replica) -> float:
    snap = httpx.get(f"{replica.url}/metrics/current", params={"window": "5m"}, timeout=10).json()
    return float(snap["model_metrics"]["m"]["predictions_count"])


def _evaluators(replicas: list[Replica]) -> list[str]:
    return [r.name for r in replicas if r.proc.poll() is None and r.health()["alert_evaluator"]]


def _wait(predicate: Any, timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if predicate():
            return time.monotonic() - t0
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _alert_lines(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "alerts" / "alerts.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_three_replicas_share_one_database(replicas: list[Replica], tmp_path: Path) -> None:
    # 1. Alternating exports of one cumulative series: exact totals on every replica,
    #    and replays through other replicas change nothing.
    now = time.time()
    start = now - 100
    values = [4, 9, 9, 17, 30, 31, 47, 60, 64]
    for i, v in enumerate(values):
        assert replicas[i % 3].post(_counter(v, now - 90 + 10 * i, start)).status_code == 200
    for i, v in enumerate(values):
        assert replicas[(i + 2) % 3].post(_counter(v, now - 90 + 10 * i, start)).status_code == 200
    assert [_predictions(r) for r in replicas] == [64.0, 64.0, 64.0]

    # 2. Exactly one replica evaluates the rules.
    _wait(lambda: len(_evaluators(replicas)) == 1, 20, "one evaluator")
    assert len(_evaluators(replicas)) == 1

    # 3. An SSE client on one replica receives the event of an export posted to another.
    evaluator = next(r for r in replicas if r.name == _evaluators(replicas)[0])
    others = [r for r in replicas if r is not evaluator]
    events: list[str] = []
    connected = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", f"{others[0].url}/events", timeout=30) as resp:
            connected.set()
            for line in resp.iter_lines():
                if line.startswith("event: ingest"):
                    events.append(line)
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert connected.wait(10)
    time.sleep(0.5)  # the subscription is registered once the stream is open
    assert others[1].post(_counter(70, time.time(), start)).status_code == 200
    listener.join(15)
    assert events == ["event: ingest"]

    # 4. Edits on one replica hold on all: a new rule, a silence.
    auth = {"Authorization": f"Bearer {TOKEN}"}
    extra = {
        "name": "never_fires", "signal": "cache_entries", "comparison": ">",
        "threshold": 1e12, "window": "20s", "group_by": "none", "channels": ["file"],
    }  # fmt: skip
    made = httpx.post(f"{replicas[0].url}/alerts/configure", json={"rules": [extra]}, headers=auth)
    assert made.status_code == 200, made.text
    silence = httpx.post(
        f"{replicas[1].url}/alerts/silences", headers=auth,
        json={"matchers": [{"name": "alertname", "value": "never_fires"}], "duration": 600},
    )  # fmt: skip
    assert silence.status_code == 201, silence.text

    def edited(replica: Replica) -> bool:
        rules = httpx.get(f"{replica.url}/alerts/configure", timeout=5).json()["rules"]
        silences = httpx.get(f"{replica.url}/alerts/silences", timeout=5).json()["silences"]
        return "never_fires" in [r["name"] for r in rules] and [x["id"] for x in silences] == [
            silence.json()["id"]
        ]

    for replica in replicas:
        _wait(lambda r=replica: edited(r), 10, f"the edits on {replica.name}")

    # 5. A rule pending on the evaluator fires after it is killed, notified exactly once.
    stop = threading.Event()

    def feed() -> None:
        i = 0
        while not stop.is_set():
            target = [r for r in replicas if r.proc.poll() is None][i % 2]
            with contextlib.suppress(httpx.TransportError):  # the one killed
                target.post(_queue(500, time.time()))
            i += 1
            stop.wait(1.0)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:

        def pending() -> bool:
            active = httpx.get(f"{others[0].url}/alerts/active", timeout=5).json()
            return any(
                a["rule"] == "queue_high" and a["state"] == "pending" for a in active["alerts"]
            )

        _wait(pending, 20, "queue_high pending")
        evaluator.proc.send_signal(signal.SIGKILL)
        evaluator.proc.wait(10)
        took = _wait(lambda: len(_evaluators(others)) == 1, 30, "a new evaluator")
        assert took <= 30
        _wait(
            lambda: any(n.get("status") == "firing" for n in _alert_lines(tmp_path)),
            40,
            "the notification",
        )
        time.sleep(5)  # more evaluations on the new evaluator: still one notification
    finally:
        stop.set()
        feeder.join(5)
    firing = [
        n
        for n in _alert_lines(tmp_path)
        if n.get("rule") == "queue_high" and n.get("status") == "firing"
    ]
    assert len(firing) == 1
    history = httpx.get(
        f"{others[0].url}/alerts/history", params={"rule": "queue_high"}, timeout=5
    ).json()
    assert [e["to"] for e in reversed(history["entries"])][:2] == ["pending", "firing"]


def test_losing_the_database_gives_503_then_recovers_losing_nothing(tmp_path: Path) -> None:
    from backend_testing import ServerThread, make_settings

    from mlpulse._pgcluster import Cluster
    from mlpulse.backend.app import create_app

    with Cluster.start() as cluster:  # its own server: this test stops it
        url = cluster.create_database("loss")
        app = create_app(make_settings(tmp_path / "data", storage_url=url))
        with ServerThread(app) as base:
            acknowledged = 0
            statuses: list[int] = []
            # Down longer than the pool waits for a connection (5 s): some exports must
            # get their 503 rather than wait the outage out.
            outage = threading.Thread(target=cluster.restart, kwargs={"down_for": 8.0})
            t0 = time.time()
            for i in range(400):
                if i == 20:
                    outage.start()
                t = t0 + i * 0.05
                req = metric_request(
                    "ml.model.predictions",
                    points=[{"value": 1, "time_s": t, "start_s": t - 0.05,
                             "attributes": {"ml.model.name": "m"}}],
                )  # fmt: skip
                resp = httpx.post(
                    f"{base}/v1/metrics", content=req.SerializeToString(), timeout=30,
                    headers={"Content-Type": "application/x-protobuf"},
                )  # fmt: skip
                statuses.append(resp.status_code)
                if resp.status_code == 200:
                    acknowledged += 1
                else:
                    assert resp.status_code == 503
                    assert resp.headers["Retry-After"]
                if i > 40 and not outage.is_alive() and statuses[-5:] == [200] * 5:
                    break
                time.sleep(0.05)
            outage.join(30)
            assert 503 in statuses  # the outage was seen
            assert statuses[-5:] == [200] * 5  # and ingest came back by itself
            snap = httpx.get(f"{base}/metrics/current", params={"window": "5m"}, timeout=10).json()
            assert snap["model_metrics"]["m"]["predictions_count"] == acknowledged


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql://postgres:s3cret@127.0.0.1:{port}/mlpulse", "cannot use the database at"),
        ("mysql://root@127.0.0.1/mlpulse", "MLPULSE_STORAGE_URL: Value error, must be"),
    ],
)
def test_a_wrong_storage_url_stops_the_backend_with_one_clear_line(
    url: str, says: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MLPULSE_STORAGE_URL": url.format(port=_free_port()),  # nothing listens there
        "MLPULSE_DATA_DIR": str(tmp_path),
        "MLPULSE_API_TOKEN": TOKEN,
    }
    done = subprocess.run(
        [sys.executable, "-m", "mlpulse.cli", "backend", "--port", str(_free_port())],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"mlpulse backend: {says}"), done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "s3cret" not in done.stderr  # the password never shows


def test_recorded_annotations_are_shared_by_replicas(postgres_url: str) -> None:
    from mlpulse.backend.annotations import AnnotationLog

    a, b = AnnotationLog(postgres_url), AnnotationLog(postgres_url)
    try:
        now = time.time()
        made = a.add("scenario", "latency-spike started", service="mlapi", at=now)
        b.add("restart", "backend started", at=now + 1)
        assert [x["id"] for x in b.between(now - 1, now + 2, "mlapi")] == [
            made["id"],
            "restart-2",
        ]
        assert [x["kind"] for x in a.between(now - 1, now + 2, "other")] == ["restart"]
    finally:
        a.close()
        b.close()
