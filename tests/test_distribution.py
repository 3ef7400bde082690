"""The `mlpulse` distribution (backend, mlapi, the command line) installs one top-level
package, `mlpulse`: nothing generic such as `backend` or `mlapi` lands in a user's
site-packages. Built here with pip from the source tree, as a user's `pip install .` does."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        cwd=build,
        timeout=540,
    )
    (found,) = out.glob("mlpulse-*.whl")
    return zipfile.ZipFile(found)


def test_the_only_top_level_package_is_mlpulse(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert {t for t in tops if not t.startswith("mlpulse-")} == {"mlpulse"}, tops
    (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
    assert wheel.read(top_level).decode().split() == ["mlpulse"]
    assert "mlpulse/backend/app.py" in names
    assert "mlpulse/mlapi/app.py" in names
    assert not [n for n in names if n.startswith("mlpulse/") and "mlpulse_instrumentation" in n]


def test_the_wheel_carries_the_rules_and_the_page(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    assert "mlpulse/backend/default_rules.yaml" in names
    assert any(n.endswith("/data/share/mlpulse/dashboards/index.html") for n in names)
    assert any(n.endswith("/data/share/mlpulse/dashboards/js/main.js") for n in names)
