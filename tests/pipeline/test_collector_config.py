"""collector-config/ is consistent: one release, exactly the components used, documented knobs,
and every supported layering of the config files accepted by the real collector."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from .harness import CONFIG_DIR, REPO, Binaries

ENV_REF = re.compile(r"\$\{env:([A-Z0-9_]+)")
COLLECTOR_FILES = [
    "otelcol.yaml",
    "otelcol-extras.yaml",
    "otelcol-extras.example.yaml",
    "otelcol-debug.yaml",
]


def _manifest() -> dict:
    return yaml.safe_load((CONFIG_DIR / "builder-config.yaml").read_text())


def _gomods(manifest: dict, kind: str) -> list[tuple[str, str]]:
    return [tuple(entry["gomod"].split()) for entry in manifest.get(kind) or []]


def test_builder_manifest_is_one_release() -> None:
    manifest = _manifest()
    core, contrib, stable = set(), set(), set()
    for kind in ("receivers", "processors", "exporters", "extensions"):
        for module, version in _gomods(manifest, kind):
            if module.startswith("go.opentelemetry.io/collector/"):
                core.add(version)
            else:
                contrib.add(version)
    for module, version in _gomods(manifest, "providers"):
        assert module.startswith("go.opentelemetry.io/collector/confmap/provider/")
        stable.add(version)
    assert len(core) == 1, f"core components at several versions: {core}"
    assert len(stable) == 1, f"providers at several versions: {stable}"
    (core_version,) = core
    # Contrib patch releases follow the core minor: v0.165.x with core v0.165.0.
    assert all(v.rsplit(".", 1)[0] == core_version.rsplit(".", 1)[0] for v in contrib), contrib
    assert manifest["telemetry"]["gomod"].split()[1] == core_version
    assert manifest["dist"]["cgo_enabled"] is False

    script = (REPO / "scripts" / "build-binaries.sh").read_text()
    builder = re.search(r'^BUILDER_VERSION="(v[\d.]+)"', script, re.MULTILINE)
    assert builder and builder.group(1) == core_version, "ocb must match the core components"


def _used_component_types() -> dict[str, set[str]]:
    used: dict[str, set[str]] = {
        "receivers": set(),
        "processors": set(),
        "exporters": set(),
        "extensions": set(),
    }
    for name in COLLECTOR_FILES:
        config = yaml.safe_load((CONFIG_DIR / name).read_text()) or {}
        for kind, found in used.items():
            found.update(key.split("/")[0] for key in config.get(kind) or {})
    return used


def test_builder_manifest_has_exactly_the_components_used(binaries: Binaries) -> None:
    out = subprocess.run(
        [str(binaries.otelcol), "components"], capture_output=True, text=True, check=True
    ).stdout
    built = yaml.safe_load(out)
    for kind, used in _used_component_types().items():
        names = {c["name"] for c in built[kind] or []}
        assert names == used, f"{kind}: built {sorted(names)}, the configs use {sorted(used)}"


def test_every_env_var_is_documented() -> None:
    readme = (CONFIG_DIR / "README.md").read_text()
    referenced = set()
    for path in CONFIG_DIR.glob("*.yaml"):
        if path.name == "builder-config.yaml":
            continue
        referenced |= set(ENV_REF.findall(path.read_text()))
    referenced.discard("NAME")  # the syntax, shown in a comment
    assert referenced, "no ${env:...} found?"
    missing = sorted(v for v in referenced if f"`{v}`" not in readme)
    assert not missing, f"not documented in collector-config/README.md: {missing}"


@pytest.mark.parametrize(
    ("files", "env"),
    [
        (["otelcol.yaml", "otelcol-extras.yaml"], {}),
        (["otelcol.yaml", "otelcol-extras.yaml", "otelcol-debug.yaml"], {}),
        (
            ["otelcol.yaml", "otelcol-extras.example.yaml"],
            {"MLPULSE_VENDOR_OTLP_ENDPOINT": "https://otlp.vendor.invalid"},
        ),
    ],
    ids=["default", "debug", "vendor"],
)
def test_config_layers_validate(
    binaries: Binaries, tmp_path: Path, files: list[str], env: dict[str, str]
) -> None:
    argv = [str(binaries.otelcol), "validate"]
    for name in files:
        argv += ["--config", str(CONFIG_DIR / name)]
    full_env = {**os.environ, "MLPULSE_OTELCOL_STORAGE_DIR": str(tmp_path), **env}
    result = subprocess.run(argv, capture_output=True, text=True, env=full_env, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
