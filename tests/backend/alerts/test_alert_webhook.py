"""Webhook delivery against real HTTP receivers on loopback: retries with growing gaps,
no retry on 4xx, no redirects, timeouts off the ingest path, HMAC signatures, receipts."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path

from alert_helpers import Receiver, Script, rule
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from mlpulse.backend.alerts.engine import AlertEngine
from mlpulse.backend.alerts.rules import parse_config
from mlpulse.backend.alerts.store import AlertStore
from mlpulse.backend.notify.dispatcher import Dispatcher
from mlpulse.backend.notify.ssrf import Policy
from mlpulse.backend.notify.webhook import WebhookSender, sign

SECRET = "whsec-test-4f1c"
TOKEN = "test-token"


def _pipeline(tmp_path: Path, receiver: Receiver, **sender: float):
    store = AlertStore(tmp_path / "alerts.db")
    script = Script()
    engine = AlertEngine(store, script)
    webhook = WebhookSender(
        Policy.of(False, [receiver.host]),
        timeout=sender.get("timeout", 2.0),
        max_attempts=int(sender.get("max_attempts", 5)),
        backoff_base=sender.get("backoff_base", 0.1),
        backoff_max=5.0,
    )
    dispatcher = Dispatcher(store, engine.channel, tmp_path, webhook=webhook, workers=2)
    engine.dispatcher = dispatcher
    engine.set_config(
        parse_config(
            {
                "channels": [
                    {"name": "hook", "type": "webhook", "url": receiver.url, "secret": SECRET}
                ],
                "rules": [rule(channels=["hook"])],
            }
        )
    )
    dispatcher.start()
    return engine, script, dispatcher


def _receipts(engine: AlertEngine, state: str = "firing") -> list[dict]:
    entries, _ = engine.store.history(state=state)
    return [n for e in entries for n in e["notifications"]]


def test_500_500_200_delivers_once_with_growing_gaps(tmp_path, receivers):
    receiver = Receiver([500, 500, 200])
    receivers.append(receiver)
    engine, script, dispatcher = _pipeline(tmp_path, receiver, backoff_base=0.15)
    try:
        script.set(50.0, 100, service="mlapi")
        engine.evaluate_once()
        assert dispatcher.wait_idle(10)
    finally:
        dispatcher.stop()
    assert len(receiver.requests) == 3
    times = [r["at"] for r in receiver.requests]
    gap1, gap2 = times[1] - times[0], times[2] - times[1]
    assert 0.15 <= gap1 < 0.3, gap1  # base, plus up to 25 % jitter
    assert 0.3 <= gap2 < 0.6, gap2  # doubled
    assert gap2 > gap1
    # The three requests are one delivery: same delivery id, same body.
    assert len({r["headers"]["x-mlpulse-delivery"] for r in receiver.requests}) == 1
    assert len({r["body"] for r in receiver.requests}) == 1
    (receipt,) = _receipts(engine)
    assert receipt["status"] == "delivered"
    assert receipt["attempts"] == 3
    assert receipt["last_error"] is None
    assert receipt["delivered_at"] is not None


def test_hmac_signature_verifies(tmp_path, receivers):
    receiver = Receiver([200])
    receivers.append(receiver)
    engine, script, dispatcher = _pipeline(tmp_path, receiver)
    try:
        script.set(12.5, 100, service="mlapi")
        engine.evaluate_once()
        assert dispatcher.wait_idle(10)
    finally:
        dispatcher.stop()
    (request,) = receiver.requests
    body, headers = request["body"], request["headers"]
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-mlpulse-signature"], expected)
    assert headers["x-mlpulse-signature"] == sign(SECRET, body)
    assert abs(int(headers["x-mlpulse-timestamp"]) - time.time()) < 30
    assert headers["content-type"] == "application/json"
    # A tampered body does not verify.
    tampered = body.replace(b"12.5", b"1.5")
    assert tampered != body
    assert not hmac.compare_digest(headers["x-mlpulse-signature"], sign(SECRET, tampered))
    doc = json.loads(body)
    assert doc["kind"] == "firing"
    assert doc["rule"] == "err"
    assert doc["labels"] == {"service": "mlapi"}
    assert doc["value"] == 12.5
    assert doc["threshold"] == 5


def test_400_is_not_retried(tmp_path, receivers):
    receiver = Receiver([400, 200])
    receivers.append(receiver)
    engine, script, dispatcher = _pipeline(tmp_path, receiver, backoff_base=0.05)
    try:
        script.set(50.0, 100, service="mlapi")
        engine.evaluate_once()
        assert dispatcher.wait_idle(10)
        time.sleep(0.2)  # a retry would come within 0.06 s
    finally:
        dispatcher.stop()
    assert len(receiver.requests) == 1
    (receipt,) = _receipts(engine)
    assert receipt["status"] == "failed"
    assert receipt["attempts"] == 1
    assert receipt["last_error"] == "HTTP 400"


def test_429_is_retried(tmp_path, receivers):
    receiver = Receiver([429, 200])
    receivers.append(receiver)
    engine, script, dispatcher = _pipeline(tmp_path, receiver, backoff_base=0.05)
    try:
        script.set(50.0, 100, service="mlapi")
        engine.evaluate_once()
        assert dispatcher.wait_idle(10)
    finally:
        dispatcher.stop()
    assert len(receiver.requests) == 2
    assert _receipts(engine)[0]["status"] == "delivered"


def test_redirect_to_loopback_is_not_followed(tmp_path, receivers):
    target = Receiver([200])
    redirector = Receiver([("redirect", target.url)])
    receivers.extend([target, redirector])
    # Only the redirector is allowed; the redirect target is another loopback port.
    engine, script, dispatcher = _pipeline(tmp_path, redirector, backoff_base=0.05)
    try:
        script.set(50.0, 100, service="mlapi")
        engine.evaluate_once()
        assert dispatcher.wait_idle(10)
    finally:
        dispatcher.stop()
    assert len(redirector.requests) == 1
    assert target.requests == []
    (receipt,) = _receipts(engine)
    assert receipt["status"] == "failed"
    assert receipt["attempts"] == 1
    assert "redirect not followed" in receipt["last_error"]


def test_resolve_is_notified_once(tmp_path, receivers):
    receiver = Receiver([200])
    receivers.append(receiver)
    engine, script, dispatcher = _pipeline(tmp_path, receiver)
    try:
        script.set(50.0, 100, service="mlapi")
        engine.evaluate_once()
        engine.evaluate_once()
        script.set(0.0, 100, service="mlapi")
        engine.evaluate_once()
        engine.evaluate_once()
        assert dispatcher.wait_idle(10)
    finally:
        dispatcher.stop()
    kinds = [json.loads(r["body"])["kind"] for r in receiver.requests]
    assert sorted(kinds) == ["firing", "resolved"]
    resolved = _receipts(engine, "resolved")
    assert [r["status"] for r in resolved] == ["delivered"]


def _meter(url: str) -> tuple[MeterProvider, object]:
    exporter = OTLPMetricExporter(endpoint=f"{url}/v1/metrics", timeout=5)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(
        metric_readers=[reader],
        resource=Resource.create({"service.name": "mlapi", "service.instance.id": "i-1"}),
    )
    counter = provider.get_meter("test").create_counter("ml.model.predictions")
    return provider, counter


def test_hanging_receiver_times_out_without_delaying_ingest_or_evaluation(alert_backend, receivers):
    receiver = Receiver([("hang", 30)])
    receivers.append(receiver)
    backend = alert_backend(
        webhook_allowed_hosts=[receiver.host],
        webhook_timeout=1.0,
        webhook_max_attempts=2,
        webhook_backoff_base=0.1,
    )
    auth = {"Authorization": f"Bearer {TOKEN}"}
    config = {
        "replace": True,
        "channels": [{"name": "hook", "type": "webhook", "url": receiver.url, "secret": SECRET}],
        "rules": [rule(channels=["hook"])],
    }
    resp = backend.client.post("/alerts/configure", json=config, headers=auth)
    assert resp.status_code == 200, resp.text
    engine: AlertEngine = backend.app.state.alerts
    script = Script()
    script.set(50.0, 100, service="mlapi")
    engine.source = script

    started = time.monotonic()
    engine.evaluate_once()
    assert time.monotonic() - started < 0.5  # delivery is queued, not awaited

    provider, counter = _meter(backend.url)
    try:
        deadline = time.monotonic() + 0.5
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        assert receiver.requests, "the delivery should be in flight (hanging)"
        for _ in range(3):
            counter.add(5, {"ml.model.name": "result"})
            t0 = time.monotonic()
            assert provider.force_flush(5_000)
            assert time.monotonic() - t0 < 0.5  # ingest is not held up by the hanging hook
            health = backend.client.get("/health")
            assert health.status_code == 200
    finally:
        provider.shutdown()

    assert engine.dispatcher is not None
    assert engine.dispatcher.wait_idle(10)
    assert time.monotonic() - started < 5
    entries = backend.get("/alerts/history", state="firing")["entries"]
    (receipt,) = entries[0]["notifications"]
    assert receipt["status"] == "failed"
    assert receipt["attempts"] == 2
    assert receipt["last_error"].startswith("timeout")
    assert len(receiver.requests) == 2
