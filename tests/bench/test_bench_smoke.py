"""Each benchmark still runs: `bench/run.py --quick NAME` writes its JSON with figures.

Benchmarks measure and never assert thresholds; these tests check only that every one
produces results (no error, at least one figure with a value), so the benches keep
working while the code they measure changes. Sizes are the runner's --quick ones
(a few seconds each); the report renderer is checked on what they wrote.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNNER = REPO / "bench" / "run.py"
CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [pytest.mark.bench, pytest.mark.timeout(180)]


def _need(ok: bool, why: str) -> None:
    if ok:
        return
    if os.environ.get("CI"):
        pytest.fail(why, pytrace=False)
    pytest.skip(why)


def _run(name: str, results: Path) -> dict:
    proc = subprocess.run(
        [
            sys.executable,
            str(RUNNER),
            "--quick",
            "--no-markdown",
            "--results-dir",
            str(results),
            name,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    path = results / f"{name}.json"
    assert path.exists(), f"no {path}: {proc.stdout[-2000:]} {proc.stderr[-2000:]}"
    doc = json.loads(path.read_text())
    assert "error" not in doc, f"{doc.get('error')}\n{doc.get('traceback', '')}"
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    values = [f["value"] for f in doc["figures"] if f.get("value") is not None]
    assert values, f"{name} produced no figure: {doc['figures']}"
    return doc


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench-results")


def test_instrumentation_bench_runs(results: Path) -> None:
    doc = _run("instrumentation", results)
    # Without wrk (scripts/install-bench-deps.sh) the bench runs its in-process half only.
    if shutil.which("wrk") is not None:
        assert doc["details"]["uvicorn"] is not None


def test_ingest_bench_runs(results: Path) -> None:
    doc = _run("ingest", results)
    assert doc["details"]["total_sent"] > 0


def test_percentiles_bench_runs(results: Path) -> None:
    doc = _run("percentiles", results)
    assert doc["details"]["results"]


@pytest.mark.browser
def test_live_bench_runs(results: Path) -> None:
    _need(CHROMIUM.is_file(), f"Chromium not found at {CHROMIUM}")
    _run("live", results)


@pytest.mark.browser
def test_dashboard_bench_runs(results: Path) -> None:
    _need(CHROMIUM.is_file(), f"Chromium not found at {CHROMIUM}")
    _run("dashboard", results)


def test_query_bench_runs(results: Path) -> None:
    _run("query", results)


def test_resources_bench_runs(results: Path) -> None:
    _run("resources", results)


def test_scale_bench_runs(results: Path) -> None:
    _run("scale", results)  # a throwaway PostgreSQL server and up to 3 replicas


def test_report_renders(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    subprocess.run(
        [
            sys.executable,
            str(RUNNER),
            "--render-only",
            "--results-dir",
            str(results),
            "--markdown",
            str(out),
        ],
        cwd=REPO,
        check=True,
        timeout=60,
    )
    text = out.read_text()
    assert text.startswith("# mlpulse benchmarks")
    for path in sorted(results.glob("*.json")):
        doc = json.loads(path.read_text())
        assert f"## {doc['id']} " in text
