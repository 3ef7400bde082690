"""CPU and memory utilisation split by `cpu.mode` / `system.memory.state` (the semantic
conventions the instrumentation follows): the signals report the busy share."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.backend.backend_testing import metric_request, post_otlp


def _gauges(metric: str, instance: str, values: dict[tuple[str, str], float]) -> bytes:
    t = time.time() - 1
    req = metric_request(
        metric,
        kind="gauge",
        instance=instance,
        points=[{"value": v, "time_s": t, "attributes": {k: m}} for (k, m), v in values.items()],
    )
    return bytes(req.SerializeToString())


def test_cpu_and_memory_report_the_busy_share_per_instance(backend: Any) -> None:
    cpu = "system.cpu.utilization"
    for instance, user, system, idle, iowait in (
        ("a", 0.30, 0.10, 0.55, 0.05),
        ("b", 0.5, 0.2, 0.3, 0.0),
    ):
        modes = {("cpu.mode", "user"): user, ("cpu.mode", "system"): system,
                 ("cpu.mode", "idle"): idle, ("cpu.mode", "iowait"): iowait}  # fmt: skip
        assert post_otlp(backend, _gauges(cpu, instance, modes)).status_code == 200
    proc = {("cpu.mode", "user"): 0.12, ("cpu.mode", "system"): 0.03}
    assert post_otlp(backend, _gauges("process.cpu.utilization", "a", proc)).status_code == 200
    mem = {("system.memory.state", "used"): 0.42, ("system.memory.state", "free"): 0.58}
    assert post_otlp(backend, _gauges("system.memory.utilization", "a", mem)).status_code == 200
    system = backend.get("/metrics/current")["system_metrics"]
    assert system["cpu_percent"] == pytest.approx(70.0)  # instance b: user + system
    assert system["process_cpu_percent"] == pytest.approx(15.0)
    assert system["memory_percent"] == pytest.approx(42.0)  # the used share, not the free
