"""The alert and admin HTTP API on a real server: auth on every state-changing route,
no secret in any GET, configuration semantics, history paging, silences, acks, tests."""

from __future__ import annotations

import http.server
import json
import threading
from typing import Any

import httpx
import pytest
from alert_helpers import Receiver, Script, rule

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WEBHOOK_SECRET = "whsec-8c1f0e2d"
SMTP_PASSWORD = "smtp-pw-77aa13"
MLAPI_SECRET = "mlapi-side-secret-5521"
SMTP_HOST = "127.0.0.1:1"  # the SMTP host passes the SSRF guard only when allowed

# OTLP exporters (the SDK, collectors) post metrics without the API token: ingest is the
# one state-changing route open by default (docs/contracts.md, "Auth");
# MLPULSE_INGEST_REQUIRE_TOKEN closes it too, checked below.
# OTLP endpoints are open like a collector's receiver; /v1/traces and /v1/logs change
# nothing (they answer where traces and logs go).
OPEN_BY_DESIGN = {("POST", "/v1/metrics"), ("POST", "/v1/traces"), ("POST", "/v1/logs")}


class FakeMlapi:
    """mlapi's /admin/* on loopback: records requests, answers JSON."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fake.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "auth": self.headers.get("Authorization"),
                        "body": body,
                    }
                )
                if self.path == "/admin/config":
                    doc: dict[str, Any] = {"model_dir": "/models", "api_token": MLAPI_SECRET}
                else:
                    doc = {"ok": True, "path": self.path, "method": self.command}
                data = json.dumps(doc).encode()
                self.send_response(202 if self.command == "POST" else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _answer

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mlapi():
    fake = FakeMlapi()
    yield fake
    fake.close()


def _configure_secrets(backend: Any, receiver: Receiver) -> None:
    config = {
        "channels": [
            {"name": "hook", "type": "webhook", "url": receiver.url, "secret": WEBHOOK_SECRET},
            {
                "name": "mail",
                "type": "email",
                "host": "127.0.0.1",
                "port": 1,
                "username": "u",
                "password": SMTP_PASSWORD,
                "from_addr": "a@example.test",
                "to_addrs": ["b@example.test"],
            },
        ],
        "rules": [rule(channels=["hook", "mail"])],
    }
    resp = backend.client.post("/alerts/configure", json=config, headers=AUTH)
    assert resp.status_code == 200, resp.text
    assert WEBHOOK_SECRET not in resp.text
    assert SMTP_PASSWORD not in resp.text


def _routes(app: Any) -> set[tuple[str, str]]:
    """Every (method, path) of the app: the OpenAPI paths plus a walk of the routers
    (which also finds routes hidden from the schema)."""
    found = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }

    def walk(routes: list[Any]) -> None:
        for route in routes:
            if hasattr(route, "original_router"):  # an included router
                walk(route.original_router.routes)
            elif isinstance(getattr(route, "methods", None), set):
                found.update((m, route.path) for m in route.methods)

    walk(app.routes)
    return found


def _concrete(path: str) -> str:
    return path.replace("{alert_id}", "abc").replace("{silence_id}", "abc")


def test_every_state_changing_route_needs_the_token_and_no_get_leaks_a_secret(
    alert_backend, receivers, mlapi
):
    receiver = Receiver([200])
    receivers.append(receiver)
    backend = alert_backend(
        backend={"mlapi_url": mlapi.url}, webhook_allowed_hosts=[receiver.host, SMTP_HOST]
    )
    _configure_secrets(backend, receiver)
    engine = backend.app.state.alerts
    script = Script()
    script.set(50.0, 100, service="mlapi")
    engine.source = script
    engine.evaluate_once()  # some state, history and receipts to read back

    routes = _routes(backend.app)
    unsafe = {(m, path) for m, path in routes if m not in ("GET", "HEAD")}
    assert {
        ("POST", "/alerts/configure"),
        ("POST", "/alerts/silences"),
        ("DELETE", "/alerts/silences/{silence_id}"),
        ("POST", "/alerts/{alert_id}/acknowledge"),
        ("POST", "/alerts/test"),
        ("POST", "/admin/retrain"),
        ("POST", "/admin/cache/clear"),
        ("POST", "/admin/scenario"),
        ("DELETE", "/admin/scenario"),
    } <= unsafe
    for method, path in sorted(unsafe - OPEN_BY_DESIGN):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            resp = backend.client.request(method, _concrete(path), json={}, headers=headers)
            assert resp.status_code == 401, (method, path, headers, resp.status_code)
    assert mlapi.requests == []  # nothing was proxied without the token
    # Admin reads need the token too.
    for path in ("/admin/config", "/admin/diagnostics", "/admin/scenario"):
        assert backend.client.get(path).status_code == 401

    secrets = [WEBHOOK_SECRET, SMTP_PASSWORD, TOKEN, MLAPI_SECRET]
    gets = sorted(path for m, path in routes if m == "GET" and path != "/events")
    assert "/alerts/configure" in gets
    checked = 0
    for path in [*gets, "/alerts/configure?format=yaml", "/alerts/history?limit=5"]:
        for headers in ({}, AUTH):
            resp = backend.client.get(_concrete(path), headers=headers)
            for secret in secrets:
                assert secret not in resp.text, (path, secret)
            checked += 1
    assert checked >= 2 * 10
    shown = backend.get("/alerts/configure")
    hook = next(c for c in shown["channels"] if c["name"] == "hook")
    mail = next(c for c in shown["channels"] if c["name"] == "mail")
    assert hook["secret"] == "[REDACTED]"
    assert mail["password"] == "[REDACTED]"
    admin_config = backend.client.get("/admin/config", headers=AUTH).json()
    assert admin_config["backend"]["api_token"] == "[REDACTED]"
    assert admin_config["mlapi"]["api_token"] == "[REDACTED]"
    assert admin_config["mlapi"]["model_dir"] == "/models"
    assert admin_config["backend"]["mlapi_url"] == mlapi.url


def test_ingest_needs_the_token_when_configured(alert_backend):
    backend = alert_backend(backend={"ingest_require_token": True})
    resp = backend.client.post(
        "/v1/metrics", content=b"", headers={"Content-Type": "application/x-protobuf"}
    )
    assert resp.status_code == 401


def test_admin_routes_proxy_to_mlapi_with_the_token(alert_backend, mlapi):
    backend = alert_backend(backend={"mlapi_url": mlapi.url})
    resp = backend.client.post("/admin/retrain", json={"model": "result"}, headers=AUTH)
    assert resp.status_code == 202
    assert resp.json() == {"ok": True, "path": "/admin/retrain", "method": "POST"}
    assert backend.client.post("/admin/cache/clear", headers=AUTH).status_code == 202
    assert backend.client.get("/admin/diagnostics", headers=AUTH).status_code == 200
    resp = backend.client.post(
        "/admin/scenario", json={"name": "error-burst", "duration_s": 60}, headers=AUTH
    )
    assert resp.status_code == 202
    assert backend.client.get("/admin/scenario", headers=AUTH).status_code == 200
    assert backend.client.delete("/admin/scenario", headers=AUTH).status_code == 200
    seen = [(r["method"], r["path"]) for r in mlapi.requests]
    assert seen == [
        ("POST", "/admin/retrain"),
        ("POST", "/admin/cache/clear"),
        ("GET", "/admin/diagnostics"),
        ("POST", "/admin/scenario"),
        ("GET", "/admin/scenario"),
        ("DELETE", "/admin/scenario"),
    ]
    assert {r["auth"] for r in mlapi.requests} == {f"Bearer {TOKEN}"}
    assert json.loads(mlapi.requests[0]["body"]) == {"model": "result"}
    assert json.loads(mlapi.requests[3]["body"]) == {"name": "error-burst", "duration_s": 60}


def test_admin_proxy_reports_an_unreachable_mlapi(alert_backend, mlapi):
    url = mlapi.url
    mlapi.close()  # nothing listens there any more
    backend = alert_backend(backend={"mlapi_url": url})
    resp = backend.client.post("/admin/retrain", headers=AUTH)
    assert resp.status_code == 502
    assert "unreachable" in resp.json()["detail"]
    config = backend.client.get("/admin/config", headers=AUTH).json()
    assert "unreachable" in config["mlapi"]["error"]
    assert config["backend"]["api_token"] == "[REDACTED]"


def test_seed_rules_are_served_and_yaml_round_trips(alert_backend):
    backend = alert_backend()
    config = backend.get("/alerts/configure")
    by_signal = {r["signal"]: r for r in config["rules"]}
    assert by_signal["error_rate_percent"]["comparison"] == ">"
    assert by_signal["error_rate_percent"]["threshold"] == 5
    assert by_signal["p95_latency_ms"]["threshold"] == 500
    assert by_signal["mae_degradation_lower_percent"]["threshold"] == 20
    assert by_signal["mae_degradation_lower_percent"]["min_coverage_percent"] == 5
    assert by_signal["prediction_psi"]["threshold"] == 0.25
    assert by_signal["cache_hit_rate_percent"]["comparison"] == "<"
    assert by_signal["cache_hit_rate_percent"]["threshold"] == 20
    for signal in ("cpu_percent", "memory_percent", "disk_percent"):
        assert (by_signal[signal]["comparison"], by_signal[signal]["threshold"]) == (">", 80)
    assert by_signal["error_rate_percent"]["for"] == 60  # seconds in JSON
    text = backend.client.get("/alerts/configure", params={"format": "yaml"}).text
    assert "for: 1m" in text
    # Posting the YAML back replaces the configuration with an identical one.
    resp = backend.client.post(
        "/alerts/configure", content=text, headers={**AUTH, "Content-Type": "application/yaml"}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json() == config


def test_configure_upserts_deletes_and_refuses_bad_rules_naming_the_field(alert_backend):
    backend = alert_backend()
    before = backend.get("/alerts/configure")
    post = lambda body: backend.client.post("/alerts/configure", json=body, headers=AUTH)  # noqa: E731
    bad = {
        "threshold": ({"threshold": "high"}, "rules[0].threshold: "),
        "comparison": ({"comparison": "=="}, "rules[0].comparison: "),
        "signal": ({"signal": "p42_latency_ms"}, "rules[0].signal: "),
        "window": ({"window": "5 minutes"}, "rules[0].window: invalid duration"),
        "for": ({"for": -1}, "rules[0].for: "),
        "min_samples": ({"min_samples": -3}, "rules[0].min_samples: "),
        "group_by": ({"group_by": "pod"}, "rules[0].group_by: "),
        "severity": ({"severity": "apocalyptic"}, "rules[0].severity: "),
        "clear_threshold": ({"clear_threshold": 9}, "rules[0]: clear_threshold (9.0) must be"),
        "unknown field": ({"treshold": 1}, "rules[0].treshold: Extra inputs"),
        "channels": ({"channels": ["pager"]}, "names unknown channel 'pager'"),
    }
    for field, (overrides, message) in bad.items():
        resp = post({"rules": [rule(**overrides)]})
        assert resp.status_code == 422, (field, resp.text)
        assert message in resp.json()["detail"], (field, resp.json()["detail"])
    assert backend.get("/alerts/configure") == before

    resp = post({"rules": [rule(name="new_rule", threshold=7)]})
    assert resp.status_code == 200
    names = [r["name"] for r in resp.json()["rules"]]
    assert names[-1] == "new_rule"
    assert len(names) == len(before["rules"]) + 1
    resp = post({"rules": [rule(name="new_rule", threshold=9)]})  # update in place
    assert [r["threshold"] for r in resp.json()["rules"] if r["name"] == "new_rule"] == [9]
    resp = post({"delete_rules": ["new_rule", "high_cpu"]})
    assert {r["name"] for r in resp.json()["rules"]} == {r["name"] for r in before["rules"]} - {
        "high_cpu"
    }
    assert post({"delete_rules": ["nope"]}).status_code == 422
    # A channel still used by a rule cannot be deleted.
    resp = post({"delete_channels": ["console"]})
    assert resp.status_code == 422
    assert "unknown channel 'console'" in resp.json()["detail"]
    # File channels saved through the API stay inside the data directory.
    resp = post({"channels": [{"name": "f", "type": "file", "path": "/etc/cron.d/x"}]})
    assert resp.status_code == 422
    assert resp.json()["detail"].startswith("channels[0].path: ")
    assert post({"channels": [{"name": "f", "type": "file", "path": "x.jsonl"}]}).status_code == 200


def test_redacted_secret_keeps_the_stored_one(alert_backend, receivers):
    receiver = Receiver([200])
    receivers.append(receiver)
    backend = alert_backend(webhook_allowed_hosts=[receiver.host, SMTP_HOST])
    _configure_secrets(backend, receiver)
    hook = next(c for c in backend.get("/alerts/configure")["channels"] if c["name"] == "hook")
    assert hook["secret"] == "[REDACTED]"
    hook["description"] = "edited"
    resp = backend.client.post("/alerts/configure", json={"channels": [hook]}, headers=AUTH)
    assert resp.status_code == 200, resp.text
    stored = backend.app.state.alerts.config.channel("hook")
    assert stored.secret.get_secret_value() == WEBHOOK_SECRET
    assert stored.description == "edited"
    # The test route signs with the kept secret.
    resp = backend.client.post("/alerts/test", json={"channel": "hook"}, headers=AUTH)
    assert resp.status_code == 200, resp.text
    assert resp.json()["delivered"] is True
    (request,) = receiver.requests
    from mlpulse.backend.notify.webhook import sign

    assert request["headers"]["x-mlpulse-signature"] == sign(WEBHOOK_SECRET, request["body"])
    assert json.loads(request["body"])["kind"] == "test"


def test_test_route_reports_a_failing_channel(alert_backend, receivers):
    receiver = Receiver([503])
    receivers.append(receiver)
    backend = alert_backend(webhook_allowed_hosts=[receiver.host, SMTP_HOST])
    _configure_secrets(backend, receiver)
    resp = backend.client.post("/alerts/test", json={"channel": "hook"}, headers=AUTH)
    assert resp.status_code == 502
    assert resp.json()["error"] == "HTTP 503"
    assert resp.json()["attempts"] == 1
    resp = backend.client.post("/alerts/test", json={"channel": "nope"}, headers=AUTH)
    assert resp.status_code == 404


def test_history_filters_and_paging(alert_backend):
    backend = alert_backend()
    post = backend.client.post(
        "/alerts/configure",
        json={
            "replace": True,
            "channels": [{"name": "console", "type": "console"}],
            "rules": [rule(name="a"), rule(name="b", threshold=50)],
        },
        headers=AUTH,
    )
    assert post.status_code == 200
    engine = backend.app.state.alerts
    script = Script()
    engine.source = script
    for value in (10, 1, 60, 1, 10, 1):  # a fires/resolves 3 times, b once
        script.set(value, 100, service="mlapi")
        engine.evaluate_once()
    page = backend.get("/alerts/history")
    assert page["total"] == 8
    assert [(e["rule"], e["to"]) for e in page["entries"][:2]] == [
        ("a", "resolved"),
        ("a", "firing"),
    ]
    assert page["entries"][0]["value"] == 1
    assert page["entries"][1]["value"] == 10
    assert page["entries"][1]["threshold"] == 5
    assert backend.get("/alerts/history", rule="b")["total"] == 2
    assert backend.get("/alerts/history", rule="a", state="firing")["total"] == 3
    # limit/offset and cursor paging visit every entry once, newest first.
    ids = [e["id"] for e in page["entries"]]
    assert ids == sorted(ids, reverse=True)
    by_offset = [
        e["id"]
        for off in range(0, 8, 3)
        for e in backend.get("/alerts/history", limit=3, offset=off)["entries"]
    ]
    assert by_offset == ids
    by_cursor, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = backend.get("/alerts/history", **params)
        by_cursor += [e["id"] for e in page["entries"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert by_cursor == ids
    at = page["entries"][-1]["at"]
    assert backend.get("/alerts/history", until=str(at - 1))["total"] == 0
    iso = "2000-01-01T00:00:00Z"
    assert backend.get("/alerts/history", since=iso)["total"] == 8
    bad = backend.client.get("/alerts/history", params={"since": "yesterday"})
    assert bad.status_code == 422
    assert "since" in bad.json()["detail"]


def test_silences_and_acknowledge_through_the_api(alert_backend):
    backend = alert_backend()
    backend.client.post(
        "/alerts/configure",
        json={"replace": True, "channels": [{"name": "console", "type": "console"}],
              "rules": [rule(name="a", repeat_interval="1s")]},
        headers=AUTH,
    )  # fmt: skip
    engine = backend.app.state.alerts
    script = Script()
    engine.source = script
    script.set(10, 100, service="mlapi")

    bad = backend.client.post("/alerts/silences", json={"matchers": []}, headers=AUTH)
    assert bad.status_code == 422
    bad = backend.client.post(
        "/alerts/silences",
        json={"matchers": [{"name": "alertname", "op": "=~", "value": "("}], "duration": 60},
        headers=AUTH,
    )
    assert bad.status_code == 422
    resp = backend.client.post(
        "/alerts/silences",
        json={
            "matchers": [
                {"name": "alertname", "value": "a"},
                {"name": "service", "value": "mlapi"},
            ],
            "duration": 600,
            "created_by": "alice",
            "comment": "maintenance",
        },
        headers=AUTH,
    )
    assert resp.status_code == 201, resp.text
    silence = resp.json()
    assert silence["active"] is True
    engine.evaluate_once()
    (alert,) = backend.get("/alerts/active")["alerts"]
    assert alert["state"] == "firing"
    assert alert["silenced_by"] == silence["id"]
    entries = backend.get("/alerts/history")["entries"]
    assert entries[0]["silenced_by"] == silence["id"]
    assert entries[0]["notifications"] == []
    assert [s["id"] for s in backend.get("/alerts/silences")["silences"]] == [silence["id"]]
    assert (
        backend.client.delete(f"/alerts/silences/{silence['id']}", headers=AUTH).status_code == 204
    )
    assert (
        backend.client.delete(f"/alerts/silences/{silence['id']}", headers=AUTH).status_code == 404
    )
    engine.evaluate_once()  # no longer silenced: the firing notification goes out now
    assert [n["kind"] for n in backend.get("/alerts/history")["entries"][0]["notifications"]] == [
        "firing"
    ]

    resp = backend.client.post(
        f"/alerts/{alert['id']}/acknowledge", json={"by": "bob", "comment": "on it"}, headers=AUTH
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["acknowledged_by"] == "bob"
    assert backend.get("/alerts/active")["alerts"][0]["ack_comment"] == "on it"
    assert backend.client.post("/alerts/nope/acknowledge", headers=AUTH).status_code == 404
    script.set(0, 100, service="mlapi")
    engine.evaluate_once()
    resp = backend.client.post(f"/alerts/{alert['id']}/acknowledge", headers=AUTH)
    assert resp.status_code == 409  # resolved: nothing to acknowledge


def test_alert_transitions_reach_the_live_stream(alert_backend):
    backend = alert_backend()
    backend.client.post(
        "/alerts/configure",
        json={"replace": True, "channels": [{"name": "console", "type": "console"}],
              "rules": [rule(name="a")]},
        headers=AUTH,
    )  # fmt: skip
    engine = backend.app.state.alerts
    script = Script()
    engine.source = script
    script.set(10, 100, service="mlapi")
    events: list[dict[str, Any]] = []
    with httpx.stream("GET", f"{backend.url}/events", timeout=5) as stream:
        lines = stream.iter_lines()
        assert next(lines).startswith("retry:")
        engine.evaluate_once()
        event = None
        for line in lines:
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            if line.startswith("data:") and event == "alert":
                events.append(json.loads(line.split(":", 1)[1]))
                break
    (data,) = events
    assert data["rule"] == "a"
    assert data["labels"] == {"service": "mlapi"}
    assert (data["from"], data["to"], data["value"]) == ("inactive", "firing", 10)
    assert isinstance(data["at"], float)
