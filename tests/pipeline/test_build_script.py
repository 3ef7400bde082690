"""scripts/build-binaries.sh: idempotent (a matching stamp skips the build) and strict about
its arguments. Only the cheap paths run here; the build itself runs before the tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .harness import REPO, bin_cache

SCRIPT = REPO / "scripts" / "build-binaries.sh"


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


def test_matching_stamps_skip_the_build(tmp_path: Path) -> None:
    cache = bin_cache()
    names = ("otelcol-mlpulse", "jaeger", "alertmanager")
    if not all((cache / n).is_file() and (cache / f"{n}.stamp").is_file() for n in names):
        if os.environ.get("CI"):
            pytest.fail(f"no stamped binaries in {cache}; run: bash scripts/build-binaries.sh")
        pytest.skip(f"no stamped binaries in {cache}; run: bash scripts/build-binaries.sh")
    if shutil.which("go") is None and not Path("/usr/local/go/bin/go").exists():
        pytest.skip("go is not installed")

    # A private cache holding links to the built binaries and copies of their stamps.
    for name in names:
        (tmp_path / name).symlink_to(cache / name)
        shutil.copy(cache / f"{name}.stamp", tmp_path / f"{name}.stamp")

    result = _run(env={"MLPULSE_BIN_CACHE": str(tmp_path), "MLPULSE_BUILD_FORCE": "0"})
    assert result.returncode == 0, result.stderr
    assert "otelcol-mlpulse: up to date" in result.stdout, result.stdout
    assert "jaeger: up to date" in result.stdout, result.stdout
    assert "alertmanager: up to date" in result.stdout, result.stdout
    assert f"MLPULSE_OTELCOL_BIN={tmp_path}/otelcol-mlpulse" in result.stdout
    # Nothing was rebuilt: the links are still links.
    assert all((tmp_path / n).is_symlink() for n in names)


def test_unknown_argument_is_refused() -> None:
    result = _run("--frobnicate")
    assert result.returncode != 0
    assert "unknown argument" in result.stderr


def test_help_describes_the_cache() -> None:
    result = _run("--help")
    assert result.returncode == 0
    assert "MLPULSE_BIN_CACHE" in result.stdout
