"""The SSRF guard: webhook URLs to loopback, private, link-local and metadata addresses,
names resolving to them and non-http schemes are refused at save time and at send time."""

from __future__ import annotations

import json

import pytest
from alert_helpers import Receiver

from mlpulse.backend.notify.channels import WebhookChannel
from mlpulse.backend.notify.ssrf import Policy, UrlRefused, check_url
from mlpulse.backend.notify.webhook import WebhookSender

TOKEN = "test-token"

REFUSED = [
    ("http://127.0.0.1:9/hook", "loopback"),
    ("http://127.8.9.10/hook", "loopback"),
    ("http://[::1]:9/hook", "loopback"),
    ("http://[::ffff:127.0.0.1]/hook", "loopback"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://[fd00:ec2::254]/", "metadata"),
    ("http://169.254.1.1/", "link-local"),
    ("http://10.0.0.1/hook", "private"),
    ("http://10.255.255.254:8080/hook", "private"),
    ("http://192.168.1.10/", "private"),
    ("http://172.16.0.1/", "private"),
    ("http://localhost:9/hook", "loopback"),
    ("http://0.0.0.0:9/", "unspecified"),
    ("http://2130706433/", "loopback"),  # 127.0.0.1 as an integer
    ("http://224.0.0.1/", "multicast"),
    ("file:///etc/passwd", "scheme"),
    ("gopher://127.0.0.1:25/", "scheme"),
    ("ftp://example.org/", "scheme"),
]


@pytest.mark.parametrize(("url", "why"), REFUSED)
def test_guard_refuses(url, why):
    with pytest.raises(UrlRefused, match=why):
        check_url(url, Policy())


def test_guard_accepts_a_public_address_and_pins_it():
    target = check_url("https://hooks.example.com/x?y=1", Policy(), lambda h, p: ["93.184.215.14"])
    assert target.pinned_url() == "https://93.184.215.14:443/x?y=1"
    assert target.host_header() == "hooks.example.com"


def test_a_name_with_any_private_address_is_refused():
    # A name resolving to a public and a private address is refused (no partial trust).
    with pytest.raises(UrlRefused, match="private"):
        check_url("http://mixed.example/", Policy(), lambda h, p: ["93.184.215.14", "10.0.0.5"])


def test_allow_private_setting_never_allows_metadata():
    policy = Policy.of(True, [])
    assert check_url("http://127.0.0.1:9/", policy).addresses == ("127.0.0.1",)
    with pytest.raises(UrlRefused, match="metadata"):
        check_url("http://169.254.169.254/", policy)
    with pytest.raises(UrlRefused, match="metadata"):
        check_url("http://169.254.169.254/", Policy.of(False, ["169.254.169.254"]))


def test_allowlist_is_per_host_and_port():
    policy = Policy.of(False, ["127.0.0.1:8765"])
    check_url("http://127.0.0.1:8765/hook", policy)
    with pytest.raises(UrlRefused):
        check_url("http://127.0.0.1:8766/hook", policy)


def test_refused_at_save_time_through_the_api(alert_backend):
    backend = alert_backend()
    before = backend.get("/alerts/configure")
    for url, _why in REFUSED:
        resp = backend.client.post(
            "/alerts/configure",
            json={"channels": [{"name": "hook", "type": "webhook", "url": url}]},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert resp.status_code == 422, (url, resp.text)
        detail = resp.json()["detail"]
        assert detail.startswith("channels[0].url: "), detail
    assert backend.get("/alerts/configure") == before  # nothing changed


def test_refused_at_send_time(tmp_path, receivers):
    """A URL that was acceptable when saved (here: allowed, then not) is re-checked."""
    receiver = Receiver([200])
    receivers.append(receiver)
    channel = WebhookChannel(name="hook", url=receiver.url)
    sender = WebhookSender(Policy(), backoff_base=0.01)
    result = sender.send(channel, b"{}", "1", sleep=lambda s: False)
    assert not result.delivered
    assert result.attempts == 1
    assert "loopback" in (result.error or "")
    assert receiver.requests == []


def test_allowed_host_reaches_the_receiver_with_the_original_host_header(receivers):
    receiver = Receiver([200])
    receivers.append(receiver)
    sender = WebhookSender(Policy.of(False, [f"localhost:{receiver.port}"]))
    channel = WebhookChannel(name="hook", url=f"http://localhost:{receiver.port}/hook?x=1")
    result = sender.send(channel, json.dumps({"a": 1}).encode(), "7", sleep=lambda s: False)
    assert result.delivered, result.error
    (request,) = receiver.requests
    assert request["headers"]["host"] == f"localhost:{receiver.port}"
    assert request["path"] == "/hook?x=1"
    assert "x-mlpulse-signature" not in request["headers"]  # no secret configured
