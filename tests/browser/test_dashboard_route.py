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


def test_a_batch_answers_each_read_exactly_as_its_own_get(tmp_path: Path) -> None:
    server, client = _serve(tmp_path)
    try:
        gets = [
            "health",
            "alerts/active",
            "metrics/history?metric=request_rate&from=0&to=600&step=60",
            "metrics/history?metric=no_such_signal&from=0&to=600&step=60",  # a 404 of its own
            "metrics/history?metric=request_rate&from=600&to=0&step=60",  # a 4xx of its own
            "dashboard/config",
        ]
        resp = client.get("/dashboard/batch", params=[("get", g) for g in gets])
        assert resp.status_code == 200
        answers = resp.json()["responses"]
        assert len(answers) == len(gets)
        for ref, answer in zip(gets, answers, strict=True):
            alone = client.get("/" + ref)
            assert answer["status"] == alone.status_code, ref
            body, want = answer["body"], alone.json()
            if ref == "health":  # ages and clocks move between the two reads
                assert body["status"] == want["status"] and body["storage"] == want["storage"]
            elif ref == "alerts/active":
                assert body["alerts"] == want["alerts"]
            else:
                assert body == want, ref
        assert answers[3]["status"] == 404 and answers[4]["status"] in (400, 422)
    finally:
        client.close()
        server.stop()


def test_a_batch_refuses_anything_but_the_page_reads(tmp_path: Path) -> None:
    server, client = _serve(tmp_path)
    try:
        for ref in ("admin/diagnostics", "v1/metrics", "dashboard/batch?get=health",
                    "http://elsewhere.example/health", "js/main.js"):  # fmt: skip
            resp = client.get("/dashboard/batch", params={"get": ref})
            assert resp.status_code == 400, ref
            assert "batchable" in resp.json()["detail"]
        assert client.get("/dashboard/batch").status_code == 422  # no `get` at all
        too_many = [("get", "health")] * (dashboard.BATCH_MAX + 1)
        assert client.get("/dashboard/batch", params=too_many).status_code == 400
    finally:
        client.close()
        server.stop()


def test_page_files_come_with_an_etag_and_change_when_the_file_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = tmp_path / "page"
    (page / "js").mkdir(parents=True)
    (page / "index.html").write_text("<!doctype html><title>x</title>", encoding="utf-8")
    module = page / "js" / "main.js"
    module.write_text("export const a = 1;", encoding="utf-8")
    monkeypatch.setenv("MLPULSE_DASHBOARD_DIR", str(page))
    server, client = _serve(tmp_path)
    try:
        first = client.get("/js/main.js")
        assert first.text == "export const a = 1;"
        etag = first.headers["etag"]
        again = client.get("/js/main.js", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        assert "script-src 'self'" in again.headers["content-security-policy"]
        module.write_text("export const a = 22;", encoding="utf-8")  # a new size: a new file
        changed = client.get("/js/main.js", headers={"If-None-Match": etag})
        assert changed.status_code == 200 and changed.text == "export const a = 22;"
        assert changed.headers["etag"] != etag
    finally:
        client.close()
        server.stop()
