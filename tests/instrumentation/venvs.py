"""Virtualenvs for the packaging tests, built with the interpreter running the tests.

pip's own cache (~/.cache/pip) makes repeated installs fast; `cached_venv` also keeps a
whole environment under ~/.cache/mlpulse/venvs, keyed by what was installed, so CI pays
for the download once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
DISTRIBUTION = REPO / "instrumentation"
CACHE = Path(os.environ.get("MLPULSE_VENV_CACHE", Path.home() / ".cache" / "mlpulse" / "venvs"))


def python_of(venv: Path) -> Path:
    return venv / "bin" / "python"


def pip_env() -> dict[str, str]:
    """The environment for pip and the venv's programs: none of this venv's variables."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return {k: v for k, v in env.items() if not k.startswith("OTEL_")}


def create(venv: Path) -> Path:
    """A new, empty virtualenv at `venv`; returns its python."""
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True, env=pip_env())
    return python_of(venv)


def pip_install(python: Path, args: Sequence[str]) -> None:
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *args],
        capture_output=True,
        text=True,
        env=pip_env(),
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def cached_venv(name: str, requirements: Sequence[str]) -> Path:
    """A virtualenv with `requirements` and the instrumentation distribution (reinstalled
    from the checkout on every call, its dependencies from the cached environment)."""
    key = hashlib.sha256(
        "\n".join([*requirements, (DISTRIBUTION / "pyproject.toml").read_text()]).encode()
    ).hexdigest()[:12]
    venv = CACHE / f"{name}-{key}"
    python = python_of(venv)
    if not (venv / ".complete").exists():
        shutil.rmtree(venv, ignore_errors=True)
        venv.parent.mkdir(parents=True, exist_ok=True)
        create(venv)
        pip_install(python, [str(DISTRIBUTION), *requirements])
        (venv / ".complete").touch()
    pip_install(python, ["--no-deps", "--force-reinstall", str(DISTRIBUTION)])
    return python
