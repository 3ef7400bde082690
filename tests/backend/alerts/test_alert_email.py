"""Email delivery to a real SMTP server (aiosmtpd) with STARTTLS and AUTH."""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from alert_helpers import Script, rule

from mlpulse.backend.alerts.engine import AlertEngine
from mlpulse.backend.alerts.rules import parse_config
from mlpulse.backend.alerts.store import AlertStore
from mlpulse.backend.notify.dispatcher import Dispatcher
from mlpulse.backend.notify.email import EmailSender
from mlpulse.backend.notify.ssrf import Policy
from mlpulse.backend.notify.webhook import WebhookSender

PASSWORD = "smtp-pass-9d2e"
# The SMTP host is behind the SSRF guard: the local test server must be allowed.
LOOPBACK = Policy.of(False, ["127.0.0.1"])


class Inbox:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.logins: list[tuple[bytes, bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            {
                "from": envelope.mail_from,
                "to": list(envelope.rcpt_tos),
                "tls": session.ssl is not None,
                "auth": session.authenticated,
                "message": email.message_from_bytes(envelope.content, policy=email.policy.default),
            }
        )
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        self.logins.append((auth_data.login, auth_data.password))
        ok = auth_data.login == b"alerts" and auth_data.password == PASSWORD.encode()
        return AuthResult(success=ok)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def smtp_server(tls_files):
    cert, key = tls_files
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    inbox = Inbox()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=_free_port(),
        tls_context=server_tls,
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        authenticator=inbox.authenticate,
    )
    controller.start()
    client_tls = ssl.create_default_context(cafile=str(cert))
    yield controller, inbox, client_tls
    controller.stop()


def _email_channel(port: int, **overrides: Any) -> dict[str, Any]:
    channel = {
        "name": "mail",
        "type": "email",
        "host": "127.0.0.1",
        "port": port,
        "username": "alerts",
        "password": PASSWORD,
        "starttls": "auto",
        "from_addr": "mlpulse@example.test",
        "to_addrs": ["oncall@example.test", "ml-team@example.test"],
        "timeout": 5,
    }
    channel.update(overrides)
    return channel


def test_email_arrives_with_the_alerts_content(tmp_path, smtp_server):
    controller, inbox, client_tls = smtp_server
    store = AlertStore(tmp_path / "alerts.db")
    script = Script()
    engine = AlertEngine(store, script)
    engine.dispatcher = Dispatcher(
        store,
        engine.channel,
        tmp_path,
        webhook=WebhookSender(Policy()),
        email=EmailSender(max_attempts=1, ssl_context=client_tls, policy=LOOPBACK),
    )
    engine.set_config(
        parse_config(
            {
                "channels": [_email_channel(controller.port)],
                "rules": [
                    rule(
                        name="high_p95_latency",
                        signal="p95_latency_ms",
                        threshold=500,
                        severity="critical",
                        description="p95 <b>too</b> high",
                        channels=["mail"],
                    )
                ],
            }
        )
    )
    engine.dispatcher.start()
    try:
        script.set(812.5, 240, service="mlapi")
        engine.evaluate_once()
        assert engine.dispatcher.wait_idle(15)
    finally:
        engine.dispatcher.stop()
    assert inbox.logins == [(b"alerts", PASSWORD.encode())]
    (got,) = inbox.messages
    assert got["tls"] is True  # STARTTLS happened before AUTH and DATA
    assert got["auth"] is True
    assert got["from"] == "mlpulse@example.test"
    assert got["to"] == ["oncall@example.test", "ml-team@example.test"]
    msg = got["message"]
    assert msg["Subject"] == '[FIRING] high_p95_latency (service="mlapi") critical'
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    for body in (text, html):
        assert "high_p95_latency" in body
        assert "812.5" in body
        assert "p95_latency_ms" in body
        assert "240" in body  # samples
        assert "500" in body  # threshold
    assert "p95 &lt;b&gt;too&lt;/b&gt; high" in html  # escaped, never markup
    assert "p95 <b>too</b> high" in text
    entries, _ = store.history(state="firing")
    (receipt,) = entries[0]["notifications"]
    assert receipt["status"] == "delivered"
    assert receipt["channel"] == "mail"
    store.close()


def test_wrong_password_is_a_failed_receipt_without_the_password(tmp_path, smtp_server):
    controller, inbox, client_tls = smtp_server
    store = AlertStore(tmp_path / "alerts.db")
    dispatcher = Dispatcher(
        store,
        lambda name: parse_config(
            {"channels": [_email_channel(controller.port, password="wrong-" + PASSWORD, timeout=1)]}
        ).channel(name),
        tmp_path,
        webhook=WebhookSender(Policy()),
        email=EmailSender(max_attempts=1, ssl_context=client_tls, policy=LOOPBACK),
    )
    note = store.add_notification(
        None,
        {"channel": "mail", "kind": "test", "payload": {"rule": "t"}, "created_at": time.time()},
    )
    result = dispatcher.deliver(note)
    assert not result.delivered
    assert result.attempts == 1
    assert inbox.logins  # the server saw the login attempt and refused it
    receipt = store.notification(note)
    assert receipt is not None
    assert receipt["status"] == "failed"
    assert PASSWORD not in str(receipt)
    assert inbox.messages == []
    store.close()
