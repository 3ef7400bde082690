"""`mlpulse rules`: alert rules as code, exported from and imported into a running backend.

  mlpulse rules export [-o rules.yaml]      write the backend's rules, channels and time
                                            intervals as a rules file (secrets [REDACTED])
  mlpulse rules import rules.yaml           replace them with the file's, all or nothing
  mlpulse rules import --check rules.yaml   only validate the file, send nothing

The file has the schema of MLPULSE_ALERT_RULES_FILE (docs/alerts.md). The backend
validates it and expands ${env:NAME} references from its own environment (--check uses
yours). Errors name the line (`rules.yaml:12: rules[2].threshold: Input should be a valid
number`) and a bad file changes nothing. A channel exported with `[REDACTED]` secrets
keeps the backend's stored secret when imported back. The backend is MLPULSE_BACKEND_URL
(default http://127.0.0.1:8003); import sends the API token from --token, MLPULSE_API_TOKEN or
<MLPULSE_DATA_DIR>/api-token.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import httpx

from mlpulse.backend.alerts.rules import ConfigError, load_yaml

DEFAULT_URL = "http://127.0.0.1:8003"
_LINE = re.compile(r"^line (\d+): ")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the rules command's subcommands and options."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        default=os.environ.get("MLPULSE_BACKEND_URL", DEFAULT_URL),
        help="the backend (default: MLPULSE_BACKEND_URL or %(default)s)",
    )
    common.add_argument("--token", help="API token (default: MLPULSE_API_TOKEN or the data dir's)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    export = sub.add_parser(
        "export", parents=[common], help="write the backend's rules as a YAML rules file"
    )
    export.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    load = sub.add_parser(
        "import", parents=[common], help="replace the backend's rules with a YAML rules file"
    )
    load.add_argument("file", type=Path, help="the rules file")
    load.add_argument("--check", action="store_true", help="validate only, send nothing")


def _token(args: argparse.Namespace) -> str | None:
    if args.token:
        return str(args.token)
    if os.environ.get("MLPULSE_API_TOKEN"):
        return os.environ["MLPULSE_API_TOKEN"]
    path = Path(os.environ.get("MLPULSE_DATA_DIR", "./.data")) / "api-token"
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def print_errors(name: str, messages: list[str]) -> None:
    """Print one ``file:line: message`` line per error."""
    for message in messages:
        match = _LINE.match(message)
        if match:
            print(f"{name}:{match.group(1)}: {message[match.end() :]}", file=sys.stderr)
        else:
            print(f"{name}: {message}", file=sys.stderr)


def _export(args: argparse.Namespace) -> int:
    token = _token(args)  # reads may be open; sent anyway for backends that protect them
    response = httpx.get(
        f"{args.url.rstrip('/')}/alerts/configure",
        params={"format": "yaml"},
        headers={"Authorization": f"Bearer {token}"} if token else {},
        timeout=30,
    )
    if response.status_code != 200:
        print(f"error: {args.url} answered {response.status_code}", file=sys.stderr)
        return 1
    if args.output is None:
        sys.stdout.write(response.text)
    else:
        args.output.write_text(response.text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _counts(rules: int, channels: int, intervals: int) -> str:
    return f"{rules} rules, {channels} channels, {intervals} time intervals"


def _import(args: argparse.Namespace) -> int:
    name = str(args.file)
    try:
        text = args.file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: cannot read {name}: {exc}", file=sys.stderr)
        return 1
    if args.check:
        # Offline: ${env:NAME} references take this shell's environment.
        try:
            config = load_yaml(text)
        except ConfigError as exc:
            print_errors(name, exc.errors)
            print(f"{name}: not valid", file=sys.stderr)
            return 1
        counts = _counts(len(config.rules), len(config.channels), len(config.time_intervals))
        print(f"{name}: valid ({counts})")
        return 0
    # The backend validates (with line numbers) and expands ${env:NAME} from its own
    # environment, where the secrets live; it applies all of the file or none.
    token = _token(args)
    headers = {"Content-Type": "application/yaml"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    response = httpx.post(
        f"{args.url.rstrip('/')}/alerts/configure",
        content=text.encode(),
        headers=headers,
        timeout=30,
    )
    try:
        answer = response.json()
    except ValueError:
        answer = {"detail": response.text}
    if response.status_code == 200:
        counts = _counts(
            len(answer.get("rules", [])),
            len(answer.get("channels", [])),
            len(answer.get("time_intervals", [])),
        )
        print(f"{name}: imported into {args.url} ({counts})")
        return 0
    detail = str(answer.get("detail", response.text)) if isinstance(answer, dict) else ""
    if response.status_code in (401, 403):
        print(f"error: {args.url} refused the API token ({detail})", file=sys.stderr)
        return 1
    print_errors(name, re.split(r"; (?=line \d+: )", detail))
    print(f"{name}: not imported (HTTP {response.status_code}); nothing changed", file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    """Run `mlpulse rules export|import`."""
    try:
        return _export(args) if args.action == "export" else _import(args)
    except httpx.HTTPError as exc:
        print(f"error: cannot reach the backend at {args.url}: {exc}", file=sys.stderr)
        return 1
