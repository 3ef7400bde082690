"""The `mlpulse` command: one entry point, a subcommand per part of the system."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from mlpulse import __version__

_DESCRIPTION = """\
mlpulse: observability for machine-learning prediction APIs.

  mlpulse backend    OTLP ingest, storage, alerts, query API and the dashboard (:8003)
  mlpulse mlapi      the observed ML API, instrumented with OpenTelemetry (:8002)
  mlpulse demo       everything at once, with load and fault scenarios
  mlpulse loadgen    realistic traffic and delayed ground truth against a running mlapi
  mlpulse scenario   switch a fault scenario on a running mlapi (latency-spike, ...)
  mlpulse rules      export / import the alert rules of a running backend (YAML)
  mlpulse bench      run the benchmarks and write BENCHMARKS.md

Settings come from MLPULSE_* environment variables (see docs/operations.md) and the
standard OTEL_* variables. Run `mlpulse <command> --help` for each command's options.
"""


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-5s %(name)s: %(message)s",
    )
    # One line per HTTP request drowns the lines people need; keep httpx's warnings only.
    logging.getLogger("httpx").setLevel(logging.DEBUG if verbose else logging.WARNING)


def _run_backend(args: argparse.Namespace) -> int:
    import uvicorn
    from pydantic import ValidationError

    from mlpulse.backend.alerts.config import AlertSettings
    from mlpulse.backend.app import create_app
    from mlpulse.backend.config import BackendSettings
    from mlpulse.backend.storage.base import StoreUnavailableError

    try:  # a bad setting, rules file or database: one line each, no traceback
        settings = BackendSettings()
        rules_file = AlertSettings().alert_rules_file
        if rules_file is not None and not _rules_file_ok(rules_file):
            return 2
        app = create_app(settings)
    except ValidationError as exc:
        for error in exc.errors():
            name = "MLPULSE_" + "_".join(str(part) for part in error["loc"]).upper()
            print(f"mlpulse backend: {name}: {error['msg']}", file=sys.stderr)
        return 2
    except StoreUnavailableError as exc:
        print(f"mlpulse backend: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="info",
        # Long-lived /events streams must not hold a shutdown forever.
        timeout_graceful_shutdown=5,
        # Outlive clients' and load balancers' idle expiry (httpx 5 s, AWS ALB 60 s):
        # when the server closes an idle connection first, a request sent on it at
        # that instant gets a connection reset. (Go clients, the collector's among
        # them, re-send such a request themselves.)
        timeout_keep_alive=75,
    )
    return 0


def _rules_file_ok(path: Path) -> bool:
    """Say what is wrong with the rules file, one line per problem; as Prometheus does,
    the backend never runs on rules it would have to drop."""
    from mlpulse.backend.alerts.rules import ConfigError, read_rules_file
    from mlpulse.rules import print_errors

    try:
        read_rules_file(path)
    except ConfigError as exc:
        print_errors(f"mlpulse backend: {path}", exc.errors)
        return False
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        print(f"mlpulse backend: cannot read {path}: {reason}", file=sys.stderr)
        return False
    return True


def _run_mlapi(args: argparse.Namespace) -> int:
    import uvicorn

    from mlpulse.mlapi.app import create_app

    uvicorn.run(
        create_app(),
        host=args.host,
        port=args.port,
        log_level="info",
        # Long-lived /events streams must not hold a shutdown forever.
        timeout_graceful_shutdown=5,
        # Outlive clients' and load balancers' idle expiry (httpx 5 s, AWS ALB 60 s):
        # when the server closes an idle connection first, a request sent on it at
        # that instant gets a connection reset. (Go clients, the collector's among
        # them, re-send such a request themselves.)
        timeout_keep_alive=75,
    )
    return 0


def _run_bench(args: argparse.Namespace) -> int:
    import runpy
    from pathlib import Path

    # bench/ lives beside the packages in the source tree (it is not installed).
    runner = Path(__file__).resolve().parent.parent / "bench" / "run.py"
    if not runner.exists():
        print(f"no benchmark runner at {runner}: run from a source checkout")
        return 2
    argv = ["bench/run.py", *(["--quick"] if args.quick else []), *args.only]
    sys.argv = argv
    runpy.run_path(str(runner), run_name="__main__")
    return 0


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlpulse",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mlpulse {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    backend = sub.add_parser(
        "backend",
        help="run the backend and the dashboard page",
        description="Run the backend: OTLP/HTTP metrics ingest on POST /v1/metrics, "
        "storage (SQLite in MLPULSE_DATA_DIR, or the PostgreSQL database of "
        "MLPULSE_STORAGE_URL=postgresql://user@host:port/dbname, shared by replicas), "
        "the alert engine, the query API and the dashboard page at /.",
    )
    backend.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default %(default)s)"
    )
    backend.add_argument("--port", type=int, default=8003, help="port (default %(default)s)")
    backend.set_defaults(func=_run_backend)

    mlapi = sub.add_parser(
        "mlapi",
        help="run the observed ML API",
        description="Run the ML API under observation: result and duration predictors, "
        "a prediction cache, ground-truth feedback and admin actions. Telemetry is "
        "exported per the standard OTEL_* variables; without OTEL_EXPORTER_OTLP_ENDPOINT "
        "metrics go to the backend at MLPULSE_BACKEND_URL (default http://127.0.0.1:8003).",
    )
    mlapi.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    mlapi.add_argument("--port", type=int, default=8002, help="port (default %(default)s)")
    mlapi.set_defaults(func=_run_mlapi)

    from mlpulse import demo, loadgen, rules, scenario

    # Each of these modules declares its own options and runs itself; its docstring is
    # its --help text.
    for name, module, summary in (
        ("demo", demo, "run everything at once, with load and fault scenarios"),
        ("loadgen", loadgen, "send realistic traffic and delayed ground truth to a running mlapi"),
        (
            "scenario",
            scenario,
            "switch a fault scenario on a running mlapi (latency-spike, error-burst, ...)",
        ),
        ("rules", rules, "export or import the alert rules of a running backend as YAML"),
    ):
        command = sub.add_parser(
            name,
            help=summary,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(command)
        command.set_defaults(func=module.run)

    bench_parser = sub.add_parser(
        "bench",
        help="run the benchmarks and write BENCHMARKS.md",
        description="Run the benchmarks in bench/ and write bench/results/*.json and "
        "BENCHMARKS.md. --quick runs a small smoke of each.",
    )
    bench_parser.add_argument("--quick", action="store_true", help="a small, fast run")
    bench_parser.add_argument("only", nargs="*", help="benchmark names to run (default: all)")
    bench_parser.set_defaults(func=_run_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the chosen subcommand."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    _configure_logging(args.verbose)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
