"""Issue 16, alert classes 6-7: the file channel's folder, webhook URLs as secrets, the
SMTP host behind the SSRF guard, and optimistic concurrency on `POST /alerts/configure`.

On the old behaviour a file channel could be saved onto `mlpulse.db` or `api-token` (both
inside the data dir), a GET showed the whole webhook URL, an SMTP host on loopback was
accepted, and a change made from a stale read silently overwrote a newer one.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from alert_helpers import Receiver, rule

from mlpulse.backend.alerts.store import AlertStore
from mlpulse.backend.notify.channels import EmailChannel, FileChannel
from mlpulse.backend.notify.dispatcher import Dispatcher
from mlpulse.backend.notify.email import EmailSender
from mlpulse.backend.notify.ssrf import Policy
from mlpulse.backend.notify.webhook import WebhookSender

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SLACK_KEY = "T000/B000/XXXXsecretXXXX"


def _post(backend: Any, body: dict[str, Any], **headers: str) -> Any:
    return backend.client.post("/alerts/configure", json=body, headers={**AUTH, **headers})


def _file(path: str, name: str = "f") -> dict[str, Any]:
    return {"name": name, "type": "file", "path": path}


def test_file_channel_paths_outside_its_folder_are_refused(alert_backend: Any) -> None:
    backend = alert_backend()
    data_dir: Path = backend.settings.data_dir
    before = {p: p.read_bytes() for p in (data_dir / "mlpulse.db", data_dir / "api-token")
              if p.exists()}  # fmt: skip
    refused = [
        "../mlpulse.db",
        "../api-token",
        "../alerts.db",
        str(data_dir / "mlpulse.db"),
        "/etc/cron.d/x",
        "sub/../../mlpulse.db-wal",
        "bad\x00name",
        ".",
    ]
    for path in refused:
        resp = _post(backend, {"channels": [_file(path)]})
        assert resp.status_code == 422, (path, resp.text)
        assert resp.json()["detail"].startswith("channels[0].path: "), path
    # A symlink planted in the folder cannot lead out of it either.
    folder = data_dir / "alerts"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "link.jsonl").symlink_to(data_dir / "api-token")
    assert _post(backend, {"channels": [_file("link.jsonl")]}).status_code == 422
    assert {p: p.read_bytes() for p in before} == before
    # Inside the folder: accepted, and the test notification lands there.
    resp = _post(backend, {"channels": [_file("ops/alerts.jsonl")]})
    assert resp.status_code == 200, resp.text
    sent = backend.client.post("/alerts/test", json={"channel": "f"}, headers=AUTH)
    assert sent.json()["delivered"] is True
    assert (folder / "ops" / "alerts.jsonl").read_text().count("\n") == 1


def test_file_channel_from_a_rules_file_is_refused_at_delivery(tmp_path: Path) -> None:
    """Config as code bypasses the API's check: the write itself refuses the path."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    token = data_dir / "api-token"
    token.write_text("secret\n")
    channels = {"own": FileChannel(name="own", path=str(token)),
                "up": FileChannel(name="up", path="../api-token")}  # fmt: skip
    store = AlertStore(data_dir / "alerts.db")
    dispatcher = Dispatcher(store, channels.get, data_dir, webhook=WebhookSender(Policy()))
    for name in channels:
        note = store.add_notification(
            None, {"channel": name, "kind": "test", "payload": {"rule": "r"},
                   "created_at": time.time()},
        )  # fmt: skip
        result = dispatcher.deliver(note)
        assert not result.delivered
        assert "file channel path" in (result.error or "")
        receipt = store.notification(note)
        assert receipt is not None and receipt["status"] == "failed"
    assert token.read_text() == "secret\n"
    store.close()


def test_webhook_url_is_redacted_in_gets_and_round_trips(
    alert_backend: Any, receivers: list[Any]
) -> None:
    receiver = Receiver([200])
    receivers.append(receiver)
    backend = alert_backend(webhook_allowed_hosts=[receiver.host])
    url = f"{receiver.url}/services/{SLACK_KEY}?token=abc123"
    resp = _post(backend, {"channels": [{"name": "hook", "type": "webhook", "url": url}]})
    assert resp.status_code == 200, resp.text
    assert SLACK_KEY not in resp.text
    shown = backend.client.get("/alerts/configure")
    yaml_text = backend.client.get("/alerts/configure", params={"format": "yaml"}).text
    for text in (shown.text, yaml_text):
        assert SLACK_KEY not in text
        assert "abc123" not in text
    hook = next(c for c in shown.json()["channels"] if c["name"] == "hook")
    assert hook["url"] == f"http://{receiver.host}/[REDACTED]"
    assert yaml.safe_load(yaml_text)["channels"][-1]["url"] == hook["url"]
    # Sent back as shown, the stored URL is kept; the notification reaches its full path.
    hook["description"] = "edited"
    assert _post(backend, {"channels": [hook]}).status_code == 200
    sent = backend.client.post("/alerts/test", json={"channel": "hook"}, headers=AUTH)
    assert sent.json()["delivered"] is True, sent.text
    assert receiver.requests[0]["path"] == f"/hook/services/{SLACK_KEY}?token=abc123"
    # A redacted URL naming another host is not a way to keep the secret path.
    other = dict(hook, url="http://127.0.0.2:9/[REDACTED]")
    resp = _post(backend, {"channels": [other]})
    assert resp.status_code == 422
    assert "channels.hook.url" in resp.json()["detail"]
    stored = backend.app.state.alerts.config.channel("hook")
    assert stored.url == url


def _listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    sock.setblocking(False)
    return sock


def test_smtp_host_goes_through_the_ssrf_guard(alert_backend: Any) -> None:
    backend = alert_backend()
    listener = _listener()
    port = listener.getsockname()[1]
    mail = {"name": "mail", "type": "email", "host": "127.0.0.1", "port": port,
            "from_addr": "a@example.test", "to_addrs": ["b@example.test"]}  # fmt: skip
    for host in ("127.0.0.1", "localhost", "169.254.169.254", "10.0.0.8", "[::1]"):
        resp = _post(backend, {"channels": [dict(mail, host=host)]})
        assert resp.status_code == 422, (host, resp.text)
        assert resp.json()["detail"].startswith("channels[0].host: "), host
    # At send time too (a channel from a rules file): refused before any connection.
    sender = EmailSender(max_attempts=1)
    result = sender.send(EmailChannel.model_validate(mail), {"rule": "r"}, sleep=lambda _: False)
    assert not result.delivered
    assert "SMTP host refused" in (result.error or "")
    time.sleep(0.1)
    try:
        listener.accept()
        raise AssertionError("the sender connected to a loopback SMTP host")
    except BlockingIOError:
        pass
    finally:
        listener.close()
    # Metadata addresses stay refused even with private addresses allowed.
    allowed = EmailSender(max_attempts=1, policy=Policy.of(True, []))
    meta = EmailChannel.model_validate(dict(mail, host="169.254.169.254"))
    assert "metadata" in (allowed.send(meta, {}, sleep=lambda _: False).error or "")


def test_stale_configure_gets_412_and_changes_nothing(
    alert_backend: Any, receivers: list[Any]
) -> None:
    receiver = Receiver([200])
    receivers.append(receiver)
    backend = alert_backend(webhook_allowed_hosts=[receiver.host])
    first = backend.client.get("/alerts/configure")
    tag = first.headers["etag"]
    assert tag.startswith('"') and tag.endswith('"')
    # Alice saves from her read: accepted, and she gets the new version.
    alice = _post(backend, {"rules": [rule(name="alice")]}, **{"If-Match": tag})
    assert alice.status_code == 200, alice.text
    assert alice.headers["etag"] != tag
    assert backend.client.get("/alerts/configure").headers["etag"] == alice.headers["etag"]
    # Bob, from the same (now stale) read, would overwrite her: refused.
    bob = _post(backend, {"rules": [rule(name="bob")], "replace": True}, **{"If-Match": tag})
    assert bob.status_code == 412
    names = {r["name"] for r in backend.client.get("/alerts/configure").json()["rules"]}
    assert "alice" in names and "bob" not in names
    # Re-reading gives him the current version; "*" and no If-Match mean "any version".
    fresh = backend.client.get("/alerts/configure").headers["etag"]
    assert _post(backend, {"rules": [rule(name="bob")]}, **{"If-Match": fresh}).status_code == 200
    assert _post(backend, {"rules": [rule(name="carol")]}, **{"If-Match": "*"}).status_code == 200
    assert _post(backend, {"rules": [rule(name="dave")]}).status_code == 200
    # A secret change alone changes the version (without showing the secret).
    before = backend.client.get("/alerts/configure").headers["etag"]
    hook = {"name": "h", "type": "webhook", "url": receiver.url, "secret": "s1"}
    assert _post(backend, {"channels": [hook]}).status_code == 200
    mid = backend.client.get("/alerts/configure").headers["etag"]
    assert _post(backend, {"channels": [dict(hook, secret="s2")]}).status_code == 200
    after = backend.client.get("/alerts/configure").headers["etag"]
    assert len({before, mid, after}) == 3


def test_concurrent_configure_changes_all_survive(alert_backend: Any, receivers: list[Any]) -> None:
    """Each change merges onto the previous one's result (no read-merge-write race)."""
    receiver = Receiver([200])
    receivers.append(receiver)
    backend = alert_backend(webhook_allowed_hosts=[receiver.host])
    errors: list[str] = []

    def add(i: int) -> None:
        channel = {"name": f"hook{i}", "type": "webhook", "url": receiver.url}
        body = {"channels": [channel], "rules": [rule(name=f"r{i}", channels=[f"hook{i}"])]}
        resp = _post(backend, body)
        if resp.status_code != 200:
            errors.append(resp.text)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    rules = {r["name"] for r in backend.client.get("/alerts/configure").json()["rules"]}
    assert {f"r{i}" for i in range(12)} <= rules
