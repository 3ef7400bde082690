"""`mlpulse scenario`: switch a fault scenario on a running mlapi, without a restart.

Each scenario provokes one of the seed alerts and stops by itself after `--for`.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import httpx

SCENARIOS = {
    "latency-spike": "predictions slow down by hundreds of ms (fires the p95 latency alert)",
    "error-burst": "a share of predictions fail with 500 (fires the error-rate alert)",
    "model-drift": "predictions drift from the truth and from the training distribution "
    "(fires prediction_drift, then model_mae_degradation: run it --for 12m)",
    "cache-flush": "the cache is cleared and bypassed (fires the cache-hit-rate alert)",
    "cpu-burn": "every core is kept busy (fires the CPU alert)",
}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")


def parse_duration(text: str) -> float:
    """Parse `90`, `90s`, `2m`, `1h` or `500ms` into seconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (try 90s, 2m or 1h)")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[unit]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the scenario command's options."""
    parser.add_argument(
        "name",
        choices=[*SCENARIOS, "stop", "status"],
        help="; ".join(f"{k}: {v}" for k, v in SCENARIOS.items())
        + "; stop: end the running scenario; status: show it",
    )
    parser.add_argument(
        "--for",
        dest="duration",
        type=parse_duration,
        default=120.0,
        help="how long the scenario lasts before it stops by itself (default 2m)",
    )
    parser.add_argument(
        "--url",
        default=os.environ.get("MLPULSE_MLAPI_URL", "http://127.0.0.1:8002"),
        help="mlapi base URL (default $MLPULSE_MLAPI_URL or %(default)s)",
    )
    parser.add_argument(
        "--token",
        default=None,
        help="admin token (default $MLPULSE_API_TOKEN, else .data/demo/api-token)",
    )


def _token(explicit: str | None) -> str:
    if explicit:
        return explicit
    if os.environ.get("MLPULSE_API_TOKEN"):
        return os.environ["MLPULSE_API_TOKEN"]
    data_dir = Path(os.environ.get("MLPULSE_DATA_DIR", ".data/demo"))
    path = data_dir / "api-token"
    if path.exists():
        return path.read_text().strip()
    raise SystemExit("no admin token: pass --token, set MLPULSE_API_TOKEN or run the demo first")


def run(args: argparse.Namespace) -> int:
    """Start, stop or show a scenario on mlapi's admin API."""
    headers = {"Authorization": f"Bearer {_token(args.token)}"}
    url = f"{args.url.rstrip('/')}/admin/scenario"
    try:
        if args.name == "stop":
            response = httpx.delete(url, headers=headers, timeout=10)
        elif args.name == "status":
            response = httpx.get(url, headers=headers, timeout=10)
        else:
            response = httpx.post(
                url,
                headers=headers,
                timeout=10,
                json={"name": args.name, "duration_s": args.duration},
            )
    except httpx.HTTPError as exc:
        print(f"cannot reach mlapi at {args.url}: {exc}")
        return 1
    if response.status_code >= 400:
        print(f"mlapi refused ({response.status_code}): {response.text}")
        return 1
    print(response.text)
    return 0
