"""`mlpulse backend` refuses to start on a rules file it would have to drop: one line per
problem (file:line), exit 2, no traceback, nothing created in the data folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _backend(rules_file: Path, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MLPULSE_DATA_DIR": str(data_dir),
        "MLPULSE_ALERT_RULES_FILE": str(rules_file),
    }
    env.pop("MLPULSE_STORAGE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "mlpulse.cli", "backend", "--port", "0"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_a_bad_rules_file_stops_the_backend_with_a_line_per_problem(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n"
        "  - name: queue_high\n"
        "    signal: no_such_signal\n"
        "    comparison: '>'\n"
        "    threshold: lots\n",
        encoding="utf-8",
    )
    data = tmp_path / "data"
    done = _backend(rules, data)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2, done.stderr
    assert lines[0].startswith(f"mlpulse backend: {rules}:3: rules[0].signal: unknown signal")
    assert lines[1].startswith(f"mlpulse backend: {rules}:5: rules[0].threshold: ")
    assert "Traceback" not in done.stderr + done.stdout
    assert not data.exists() or not any(data.iterdir())


@pytest.mark.parametrize("content", [None, b"\xff\xfe not utf-8"])
def test_an_unreadable_rules_file_stops_the_backend(content: bytes | None, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    if content is not None:
        rules.write_bytes(content)
    done = _backend(rules, tmp_path / "data")
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"mlpulse backend: cannot read {rules}: "), done.stderr
    assert "Traceback" not in done.stderr
