"""Run mlpulse's benchmarks; write bench/results/<name>.json and the table in BENCHMARKS.md.

    mlpulse bench                      # every benchmark, full size (~25 min on 2 cores)
    mlpulse bench --quick              # a small smoke of each (~1 min)
    mlpulse bench ingest percentiles   # some of them (names below)
    .venv/bin/python bench/run.py --results-dir /tmp/r --no-markdown --quick live

Each benchmark runs in its own child process (no state leaks between them: OpenTelemetry
providers, event loops, the browser) and returns figures, each with its target and the
ratio against it. Benchmarks measure; they never assert. BENCHMARKS.md is rebuilt from
every JSON in the results folder, so re-running one benchmark updates its rows only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# name -> (id, module); the order of the report.
BENCHMARKS: dict[str, str] = {
    "instrumentation": "B1",
    "ingest": "B2",
    "percentiles": "B3",
    "live": "B4",
    "dashboard": "B5",
    "query": "B6",
    "resources": "B7",
    "scale": "B8",
}
DEFAULT_RESULTS = REPO / "bench" / "results"
DEFAULT_MARKDOWN = REPO / "BENCHMARKS.md"
CHILD_TIMEOUT_S = {"quick": 240, "full": 1500}


def _run_child(name: str, quick: bool, results: Path) -> dict[str, Any]:
    """Run one benchmark in this process and write its JSON (the child side)."""
    from bench._common import dump, machine

    module = importlib.import_module(f"bench.{name}")
    workdir = results / f".work-{name}"
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    doc: dict[str, Any] = {
        "name": name,
        "id": BENCHMARKS[name],
        "title": module.TITLE,
        "quick": quick,
        "started": dt.datetime.fromtimestamp(started, dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
    }
    try:
        out = module.run(quick=quick, workdir=workdir)
        doc.update(out)
    except Exception as exc:
        doc["error"] = f"{type(exc).__name__}: {exc}"
        doc["traceback"] = traceback.format_exc()
        doc.setdefault("figures", [])
    doc["duration_s"] = round(time.time() - started, 1)
    dump(results / f"{name}.json", doc)
    import shutil

    if not os.environ.get("MLPULSE_BENCH_KEEP_WORK"):  # keep logs and data to debug a run
        shutil.rmtree(workdir, ignore_errors=True)
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlpulse bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small, fast variants (smoke)")
    parser.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--markdown", type=Path, default=DEFAULT_MARKDOWN)
    parser.add_argument("--no-markdown", action="store_true", help="write the JSON only")
    parser.add_argument(
        "--render-only", action="store_true", help="rebuild the markdown from the JSON only"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("names", nargs="*", help=f"which to run: {', '.join(BENCHMARKS)}")
    args = parser.parse_args(argv)

    if args.child:
        doc = _run_child(args.child, args.quick, args.results_dir)
        return 1 if "error" in doc else 0

    if args.render_only:
        from bench.report import write_markdown

        write_markdown(args.results_dir, args.markdown, BENCHMARKS)
        print(f"==> wrote {args.markdown}")
        return 0
    names = args.names or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in names:
        t0 = time.time()
        print(f"==> {BENCHMARKS[name]} {name}{' (quick)' if args.quick else ''}", flush=True)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name]
        cmd += ["--results-dir", str(args.results_dir)]
        if args.quick:
            cmd.append("--quick")
        timeout = CHILD_TIMEOUT_S["quick" if args.quick else "full"]
        try:
            rc = subprocess.run(cmd, cwd=REPO, timeout=timeout, check=False).returncode
        except subprocess.TimeoutExpired:
            rc = -1
            from bench._common import dump

            dump(
                args.results_dir / f"{name}.json",
                {
                    "name": name,
                    "id": BENCHMARKS[name],
                    "quick": args.quick,
                    "error": f"timed out after {timeout} s",
                    "figures": [],
                },
            )
        doc = _load(args.results_dir / f"{name}.json")
        if rc != 0 or doc is None or "error" in doc:
            failed.append(name)
            print(f"    FAILED: {(doc or {}).get('error', rc)}", flush=True)
        for fig in (doc or {}).get("figures", []):
            print(f"    {_fig_line(fig)}", flush=True)
        print(f"    ({time.time() - t0:.0f} s)", flush=True)
    if not args.no_markdown:
        from bench.report import write_markdown

        write_markdown(args.results_dir, args.markdown, BENCHMARKS)
        print(f"==> wrote {args.markdown}")
    return 1 if failed else 0


def _load(path: Path) -> dict[str, Any] | None:
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
        return doc
    except (OSError, ValueError):
        return None


def _fig_line(fig: dict[str, Any]) -> str:
    from bench.report import fmt

    tgt = f"  target {fig['target']}" if fig.get("target") else ""
    ratio = f"  ratio {fmt(fig.get('ratio'))}" if fig.get("ratio") is not None else ""
    return f"{fig['figure']}: {fmt(fig.get('value'))} {fig.get('unit', '')}{tgt}{ratio}"


if __name__ == "__main__":
    sys.exit(main())
