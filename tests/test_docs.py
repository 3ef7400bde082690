"""The docs that are generated or quoted stay true to the code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_api_reference_is_generated_from_the_current_openapi_schema() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_api_reference.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_cli_subcommand_of_the_readme_has_help() -> None:
    readme = (ROOT / "README.md").read_text()
    for command in ("backend", "mlapi", "demo", "loadgen", "scenario", "bench"):
        assert f"mlpulse {command}" in readme
        result = subprocess.run(
            [sys.executable, "-m", "mlpulse", command, "--help"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "usage: mlpulse " + command in result.stdout


def test_readme_links_point_at_existing_files() -> None:
    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if target.startswith("http"):
            continue
        assert (ROOT / target).exists(), target
