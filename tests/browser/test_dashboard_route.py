"""`backend/api/routes/dashboard.py` without a browser: where the page comes from, headers."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from browser_testing import TOKEN, ServerThread

from mlpulse.backend.api.routes import dashboard
from mlpulse.backend.app import create_app
from mlpulse.backend.config import BackendSettings


def _serve(tmp_path: Path, **settings: object) -> tuple[ServerThread, httpx.Client]:
    app = create_app(BackendSettings(data_dir=tmp_path / "data", api_token=TOKEN, **settings))
    server = ServerThread(app)
    return server, httpx.Client(base_url=server.start(), timeout=10)


def test_the_dashboard_dir_setting_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page = tmp_path / "page"
    (page / "js").mkdir(parents=True)
    (page / "index.html").write_text("<!doctype html><title>custom</title>", encoding="utf-8")
    (page / "js" / "main.js").write_text("export {};", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("no", encoding="utf-8")
    monkeypatch.setenv("MLPULSE_DASHBOARD_DIR", str(page))
    server, client = _serve(tmp_path)
    try:
        resp = client.get("/")
        assert resp.status_code == 200 and "custom" in resp.text
        assert "script-src 'self'" in resp.headers["content-security-policy"]
        assert resp.headers["x-content-type-options"] == "nosniff"
        js = client.get("/js/main.js")
        assert js.status_code == 200
        assert js.headers["content-type"].startswith("text/javascript")
        assert "default-src 'self'" in js.headers["content-security-policy"]
        for path in ("/js/../../secret.txt", "/js/%2e%2e/%2e%2e/secret.txt", "/js/nope.js"):
            assert client.get(path).status_code == 404, path
    finally:
        client.close()
        server.stop()


def test_without_page_files_the_root_says_which_setting_to_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dashboard, "_candidates", lambda settings: [tmp_path / "nowhere"])
    server, client = _serve(tmp_path)
    try:
        resp = client.get("/")
        assert resp.status_code == 503
        assert "MLPULSE_DASHBOARD_DIR" in resp.text
    finally:
        client.close()
        server.stop()


def test_the_checkout_page_is_found_next_to_the_backend_package() -> None:
    found = dashboard.find_dashboard_dir(None)
    assert found is not None and (found / "index.html").is_file()
    assert (found / "vendor" / "uplot" / "LICENSE").is_file()


def test_trace_links_are_hidden_without_a_jaeger_url(tmp_path: Path) -> None:
    for configured, expected in (
        ("", ""),
        ("javascript:alert(1)", ""),
        ("https://jaeger.example/", "https://jaeger.example"),
    ):
        server, client = _serve(tmp_path, jaeger_ui_url=configured)
        try:
            assert client.get("/dashboard/config").json()["jaeger_ui_url"] == expected
        finally:
            client.close()
            server.stop()
