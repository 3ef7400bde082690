"""The Jaeger UI kept in collector-config/jaeger-ui/: what ORIGIN.md says it is, and what
the locally built Jaeger serves (the real UI, never the placeholder page).

The browser side (the UI lists mlapi, shows spans, exemplar links land) is
tests/browser/test_jaeger_ui.py.
"""

from __future__ import annotations

import hashlib
import re

import pytest
import yaml

from .harness import CONFIG_DIR, JAEGER_UI_ASSETS, Jaeger, http_get

pytestmark = pytest.mark.pipeline

PLACEHOLDER = b"This is not the Jaeger UI you are looking for"


def _listed() -> dict[str, str]:
    sums: dict[str, str] = {}
    for line in (JAEGER_UI_ASSETS / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        sums[name] = digest
    return sums


def test_the_vendored_assets_match_their_checksums_origin_and_license() -> None:
    listed = _listed()
    on_disk = {
        str(p.relative_to(JAEGER_UI_ASSETS)) for p in JAEGER_UI_ASSETS.rglob("*") if p.is_file()
    }
    assert set(listed) == on_disk - {"SHA256SUMS", "ORIGIN.md", "LICENSE"}
    for name, digest in listed.items():
        assert hashlib.sha256((JAEGER_UI_ASSETS / name).read_bytes()).hexdigest() == digest, name
    origin = (JAEGER_UI_ASSETS / "ORIGIN.md").read_text()
    assert "`v1.76.0`" in origin and "1ceadb6f6fb29774bfaa77a6148499ff7a04902b" in origin
    assert "Apache License" in (JAEGER_UI_ASSETS / "LICENSE").read_text()
    # index.html loads exactly the modern bundle and stylesheet that are here.
    index = (JAEGER_UI_ASSETS / "index.html").read_text()
    modern = re.findall(r'<script type="module" crossorigin src="\./(static/[^"]+)"', index)
    css = re.findall(r'<link rel="stylesheet" crossorigin href="\./(static/[^"]+)"', index)
    assert modern and css and set(modern + css) <= set(listed)
    total = sum((JAEGER_UI_ASSETS / n).stat().st_size for n in listed)
    assert total < 6 << 20  # no source maps, no legacy bundles (ORIGIN.md)


def test_jaeger_yaml_points_ui_assets_path_at_them() -> None:
    config = yaml.safe_load((CONFIG_DIR / "jaeger.yaml").read_text())
    assets = config["extensions"]["jaeger_query"]["ui"]["assets_path"]
    # Empty unless MLPULSE_JAEGER_UI_ASSETS names the folder: the official image of
    # docker-compose has its own UI and no such folder.
    assert assets == "${env:MLPULSE_JAEGER_UI_ASSETS:-}"


def test_the_built_jaeger_serves_the_real_ui_from_the_repository(jaeger: Jaeger) -> None:
    for path in ("/", "/search", "/trace/0123456789abcdef0123456789abcdef"):
        status, body = http_get(jaeger.query_url + path)
        assert status == 200, path
        assert PLACEHOLDER not in body, path
        assert b"<title>Jaeger UI</title>" in body, path
        assert b'id="jaeger-ui-root"' in body
    listed = _listed()
    for name, digest in listed.items():
        if not name.startswith("static/"):
            continue
        status, body = http_get(f"{jaeger.query_url}/{name}", timeout=10)
        assert status == 200, name
        assert hashlib.sha256(body).hexdigest() == digest, name
