"""The prometheus-alertmanager channel against a real Alertmanager (v0.28.1, built by
scripts/build-binaries.sh), run as a process on free ports."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from alert_helpers import pipeline, rule

from mlpulse import _binaries

CONFIG = """\
route:
  receiver: blackhole
  group_wait: 1h
receivers:
  - name: blackhole
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    """A real Alertmanager on a free loopback port; yields its base URL."""
    try:
        binary = _binaries.alertmanager()
    except RuntimeError as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))
    folder = tmp_path / "alertmanager"
    folder.mkdir()
    (folder / "alertmanager.yml").write_text(CONFIG)
    port = _free_port()
    log = (folder / "log.txt").open("wb")
    process = subprocess.Popen(
        [
            str(binary),
            f"--config.file={folder / 'alertmanager.yml'}",
            f"--storage.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no gossip: a single instance
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise AssertionError(f"alertmanager exited: {(folder / 'log.txt').read_text()}")
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("alertmanager did not become ready")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _listed(url: str) -> dict[str, dict]:
    alerts = httpx.get(f"{url}/api/v2/alerts", timeout=5).json()
    return {f"{a['labels']['alertname']}/{a['labels'].get('service', '')}": a for a in alerts}


def test_alertmanager_lists_the_alerts_the_channel_posts(tmp_path, alertmanager):
    host = alertmanager.removeprefix("http://")
    engine, script, dispatcher = pipeline(
        tmp_path,
        {
            "channels": [{"name": "am", "type": "prometheus-alertmanager", "url": alertmanager}],
            "rules": [
                rule(
                    name="errors",
                    channels=["am"],
                    severity="critical",
                    title="{{ value }}% errors on {{ labels.service }}",
                ),
                rule(name="latency", signal="p95_latency_ms", threshold=500, channels=["am"]),
            ],
        },
        [host],
        clock=time.time,
    )
    try:
        script.set(30.0, 100, service="mlapi")
        script.set(900.0, 100, service="search")
        # The script answers every rule: errors fires for both services (> 5), latency
        # only for search (> 500).
        engine.evaluate_once()
        assert dispatcher.wait_idle(10)
        listed = _listed(alertmanager)
        assert sorted(listed) == ["errors/mlapi", "errors/search", "latency/search"]
        errors = listed["errors/mlapi"]
        assert errors["labels"] == {
            "alertname": "errors",
            "severity": "critical",
            "service": "mlapi",
        }
        assert errors["annotations"]["summary"] == "30.0% errors on mlapi"
        assert errors["status"]["state"] == "active"
        mlapi_id = next(
            i.id
            for i in engine.instances()
            if i.rule == "errors" and i.labels["service"] == "mlapi"
        )
        assert errors["generatorURL"] == f"http://mlpulse.example:8003/#alerts?alert={mlapi_id}"
        assert errors["fingerprint"] != mlapi_id  # Alertmanager computes its own
        # Alertmanager keeps them active: endsAt is four refreshes (4 min) ahead.
        ends = httpx.get(f"{alertmanager}/api/v2/alerts", timeout=5).json()[0]["endsAt"]
        from datetime import datetime

        ahead = datetime.fromisoformat(ends.replace("Z", "+00:00")).timestamp() - time.time()
        assert 200 < ahead <= 240
        (receipt,) = engine.store.notifications()  # one group: one POST of three alerts
        assert receipt["status"] == "delivered"

        # mlapi's error rate recovers: the resolution reaches Alertmanager, which drops it.
        script.set(1.0, 100, service="mlapi")
        script.set(900.0, 100, service="search")
        engine.evaluate_once()
        assert dispatcher.wait_idle(10)
    finally:
        dispatcher.stop()
    listed = _listed(alertmanager)
    assert sorted(listed) == ["errors/search", "latency/search"]
