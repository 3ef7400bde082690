"""Rules as code: `mlpulse rules export|import` against a real backend; the same YAML through
the API; line-numbered errors; a bad file changes nothing; templates checked at save."""

from __future__ import annotations

import textwrap

import yaml
from alert_helpers import Receiver

from mlpulse.backend.notify.channels import redact_url
from mlpulse.cli import main

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

# A rules file using every new part, keys in the writer's own order (not export's).
RULES = """\
time_intervals:
  - name: nights
    time_zone: Europe/Berlin
    weekdays: [monday:friday]
    times:
      - {start: "22:00", end: "24:00"}
      - {start: "00:00", end: "06:00"}
  - name: weekends
    weekdays: [saturday:sunday]
    action: drop
channels:
  - type: console
    name: console
  - type: webhook
    name: team-slack
    url: @SLACK@
    format: slack
    group_by: [alertname, service]
    group_wait: 45s
    group_interval: 10m
    repeat_interval: 3h
    mute_time_intervals: [weekends]
  - type: prometheus-alertmanager
    name: am
    url: @AM@
rules:
  - name: high_p95_latency
    signal: p95_latency_ms
    comparison: ">"
    threshold: 500
    clear_threshold: 450
    window: 5m
    for: 1m
    severity: critical
    channels: [team-slack, am]
    title: "p95 {{ value | round(0) }} ms on {{ labels.service }}"
    message: "{{ signal }} above {{ threshold }} for {{ labels.service }}"
    mute_time_intervals: [nights]
  - min_samples: 10
    name: model_mae_degradation
    signal: mae_degradation_percent
    comparison: ">"
    threshold: 20.5
    group_by: model
    window: 15m
    channels: [console]
"""


def _canonical(text: str) -> str:
    """The document with every mapping's keys sorted: equal means equal modulo ordering."""
    return yaml.safe_dump(yaml.safe_load(text), sort_keys=True)


def _line(text: str, needle: str) -> int:
    """The 1-based number of the first line holding ``needle``."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["rules", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _setup(alert_backend, receivers, tmp_path):
    receiver = Receiver()
    receivers.append(receiver)
    backend = alert_backend(webhook_allowed_hosts=[receiver.host])
    text = RULES.replace("@SLACK@", receiver.url).replace("@AM@", f"http://{receiver.host}")
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return backend, text, path


def test_import_then_export_round_trips_the_file(alert_backend, receivers, tmp_path, capsys):
    backend, text, path = _setup(alert_backend, receivers, tmp_path)
    code, out, err = _cli(capsys, "import", str(path), "--url", backend.url, "--token", TOKEN)
    assert code == 0, err
    assert out == f"{path}: imported into {backend.url} (2 rules, 3 channels, 2 time intervals)\n"
    code, exported, _ = _cli(capsys, "export", "--url", backend.url)
    assert code == 0
    # Byte for byte modulo ordering: the same document once keys are sorted, but for
    # the Slack URL, whose path is its secret: exported redacted, kept on re-import.
    slack_url = receivers[0].url
    assert exported.count("[REDACTED]") == 1
    redacted = text.replace(slack_url, redact_url(slack_url))
    assert _canonical(exported) == _canonical(redacted)
    # Exported, imported again, exported again: identical bytes.
    again = tmp_path / "exported.yaml"
    again.write_text(exported)
    assert _cli(capsys, "import", str(again), "--url", backend.url, "--token", TOKEN)[0] == 0
    code, _, _ = _cli(capsys, "export", "--url", backend.url, "-o", str(tmp_path / "b.yaml"))
    assert code == 0
    assert (tmp_path / "b.yaml").read_text() == exported
    engine = backend.app.state.alerts
    assert [r.name for r in engine.config.rules] == ["high_p95_latency", "model_mae_degradation"]
    assert engine.config.channel("team-slack").group_wait == 45.0
    assert engine.config.channel("team-slack").url == slack_url


def test_a_bad_file_gets_line_numbered_errors_and_changes_nothing(
    alert_backend, receivers, tmp_path, capsys
):
    backend, text, path = _setup(alert_backend, receivers, tmp_path)
    assert _cli(capsys, "import", str(path), "--url", backend.url, "--token", TOKEN)[0] == 0
    before = backend.client.get("/alerts/configure")
    bad = (
        text.replace("threshold: 500\n", "threshold: high\n")
        .replace("action: drop", "action: snooze")
        .replace('{{ labels.service }}"\n    message', '{{ labels.service }"\n    message')
    )
    bad_path = tmp_path / "bad.yaml"
    bad_path.write_text(bad)
    code, out, err = _cli(capsys, "import", str(bad_path), "--url", backend.url, "--token", TOKEN)
    assert code == 1 and out == ""
    reported = err.splitlines()
    assert reported == [
        f"{bad_path}:{_line(bad, 'threshold: high')}: rules[0].threshold: Input should be a "
        "valid number, unable to parse string as a number",
        f"{bad_path}:{_line(bad, 'title:')}: rules[0].title: template error (line 1): "
        "unexpected '}'",
        f"{bad_path}:{_line(bad, 'action: snooze')}: time_intervals[1].action: Input should "
        "be 'hold' or 'drop'",
        f"{bad_path}: not imported (HTTP 422); nothing changed",
    ]
    # With the fields right, a cross-reference error is reported with its line too.
    only_ref = text.replace("channels: [console]", "channels: [console, pager]")
    bad_path.write_text(only_ref)
    code, _, err = _cli(capsys, "import", str(bad_path), "--url", backend.url, "--token", TOKEN)
    assert code == 1
    ref_line = _line(only_ref, "channels: [console, pager]")
    assert err.splitlines()[0] == (
        f"{bad_path}:{ref_line}: rules[1].channels: rule 'model_mae_degradation' names "
        "unknown channel 'pager' (defined: console, team-slack, am)"
    )
    # The API gives the same line-numbered message for the same YAML.
    resp = backend.client.post(
        "/alerts/configure",
        content=only_ref,
        headers={**AUTH, "Content-Type": "application/yaml"},
    )
    assert resp.status_code == 422
    assert resp.json()["detail"].startswith(f"line {ref_line}: rules[1].channels: rule")
    after = backend.client.get("/alerts/configure")
    assert after.headers["etag"] == before.headers["etag"]
    assert after.json() == before.json()


def test_what_only_the_backend_can_check_is_refused_and_changes_nothing(
    alert_backend, receivers, tmp_path, capsys
):
    backend, text, path = _setup(alert_backend, receivers, tmp_path)
    before = backend.client.get("/alerts/configure").headers["etag"]
    # Valid YAML and schema, but the SSRF guard refuses a metadata address.
    blocked = text.replace(receivers[0].url, "http://169.254.169.254/latest")
    path.write_text(blocked)
    code, out, err = _cli(capsys, "import", str(path), "--url", backend.url, "--token", TOKEN)
    assert code == 1 and out == ""
    assert err.splitlines()[0].startswith(f"{path}: channels[1].url: ")
    assert err.splitlines()[-1] == f"{path}: not imported (HTTP 422); nothing changed"
    assert backend.client.get("/alerts/configure").headers["etag"] == before
    # Without the token: a one-line error, nothing changed.
    path.write_text(text)
    code, _, err = _cli(capsys, "import", str(path), "--url", backend.url, "--token", "wrong")
    assert code == 1 and err.startswith(f"error: {backend.url} refused the API token")
    assert backend.client.get("/alerts/configure").headers["etag"] == before


def test_check_validates_without_sending(tmp_path, capsys):
    path = tmp_path / "rules.yaml"
    path.write_text(
        RULES.replace("@SLACK@", "https://hooks.slack.com/x").replace("@AM@", "http://am:9093")
    )
    code, out, _ = _cli(capsys, "import", "--check", str(path), "--url", "http://127.0.0.1:9")
    assert code == 0
    assert out == f"{path}: valid (2 rules, 3 channels, 2 time intervals)\n"
    code, _, err = _cli(capsys, "import", str(path), "--url", "http://127.0.0.1:9")
    assert code == 1 and err.startswith("error: cannot reach the backend at http://127.0.0.1:9")


def test_bad_templates_are_refused_at_save_time_through_the_api(alert_backend):
    backend = alert_backend()
    before = backend.client.get("/alerts/configure")
    base = {
        "name": "t",
        "signal": "error_rate_percent",
        "comparison": ">",
        "threshold": 5,
        "channels": ["console"],
    }
    cases = {
        "{{ value": "rules[0].title: template error (line 1): unexpected end of template",
        "{{ nosuch }}": "rules[0].title: template error: 'nosuch' is undefined",
        "{{ ''.__class__.__mro__ }}": "rules[0].title: template error: access to attribute "
        "'__class__' of 'str' object is unsafe.",
        "{{ 'x' * 1000000 }}": "rules[0].title: template error: repetition longer than 10000",
        "{% for i in range(99999999) %}x{% endfor %}": "rules[0].title: template error: "
        "'range' is undefined",
    }
    for template, message in cases.items():
        resp = backend.client.post(
            "/alerts/configure", json={"rules": [{**base, "title": template}]}, headers=AUTH
        )
        assert resp.status_code == 422, template
        assert resp.json()["detail"].startswith(message), resp.json()["detail"]
    after = backend.client.get("/alerts/configure")
    assert after.headers["etag"] == before.headers["etag"]
    ok = backend.client.post(
        "/alerts/configure",
        json={"rules": [{**base, "title": "{{ rule }} at {{ value | round(1) }}"}]},
        headers=AUTH,
    )
    assert ok.status_code == 200


def test_templates_render_into_the_notification(tmp_path, receivers):
    from alert_helpers import Clock, pipeline, rule

    receiver = Receiver()
    receivers.append(receiver)
    engine, script, dispatcher = pipeline(
        tmp_path,
        {
            "channels": [{"name": "hook", "type": "webhook", "url": receiver.url}],
            "rules": [
                rule(
                    channels=["hook"],
                    title="{{ rule | upper }}: {{ value | round(2) }} {{ comparison }} "
                    "{{ threshold }} on {{ labels.service }}{{ labels.model }}",
                    message=textwrap.dedent(
                        """\
                        {% if status == 'firing' %}Errors at {{ value }}%{% else %}\
                        Recovered{% endif %} ({{ samples }} samples)"""
                    ),
                )
            ],
        },
        [receiver.host],
        Clock(),
    )
    try:
        script.set(12.3456, 80, service="mlapi")
        engine.evaluate_once()
        assert dispatcher.wait_idle(10)
    finally:
        dispatcher.stop()
    import json

    (request,) = receiver.requests
    body = json.loads(request["body"])
    assert body["title"] == "ERR: 12.35 > 5.0 on mlapi"
    assert body["message"] == "Errors at 12.3456% (80 samples)"


def test_groups_route_shows_a_pending_group_and_its_next_look(alert_backend, receivers):
    from alert_helpers import Script

    receiver = Receiver()
    receivers.append(receiver)
    backend = alert_backend(webhook_allowed_hosts=[receiver.host])
    channel = {
        "name": "team",
        "type": "webhook",
        "url": receiver.url,
        "format": "slack",
        "group_by": ["service"],
        "group_wait": "45s",
    }
    rules = [
        {
            "name": f"r{i}",
            "signal": "error_rate_percent",
            "comparison": ">",
            "threshold": i,
            "for": 0,
            "channels": ["team"],
        }
        for i in range(3)
    ]
    resp = backend.client.post(
        "/alerts/configure",
        json={"channels": [channel], "rules": rules, "replace": True},
        headers=AUTH,
    )
    assert resp.status_code == 200, resp.text
    engine = backend.app.state.alerts
    script = Script()
    script.set(10.0, 100, service="mlapi")
    engine.source = script
    engine.evaluate_once()
    (group,) = backend.get("/alerts/groups")["groups"]
    assert group["channel"] == "team" and group["labels"] == {"service": "mlapi"}
    assert sorted(a["rule"] for a in group["alerts"]) == ["r0", "r1", "r2"]
    assert group["sent_at"] is None
    assert group["next_at"] == group["created_at"] + 45
    assert receiver.requests == []


def test_time_intervals_are_upserted_and_deleted_through_the_json_api(alert_backend):
    backend = alert_backend()

    def post(body: dict) -> object:
        return backend.client.post("/alerts/configure", json=body, headers=AUTH)

    nights = {"name": "nights", "times": [{"start": "22:00", "end": "24:00"}]}
    rule = {
        "name": "quiet",
        "signal": "cpu_percent",
        "comparison": ">",
        "threshold": 90,
        "channels": ["console"],
        "mute_time_intervals": ["nights"],
    }
    assert post({"time_intervals": [nights], "rules": [rule]}).status_code == 200
    shown = backend.get("/alerts/configure")
    assert shown["time_intervals"] == [
        {
            "name": "nights",
            "time_zone": "UTC",
            "weekdays": [],
            "times": [{"start": "22:00", "end": "24:00"}],
            "action": "hold",
            "description": "",
        }
    ]
    at = [r["name"] for r in shown["rules"]].index("quiet")  # after the seed rules
    refused = post({"delete_time_intervals": ["nights"]})
    assert refused.status_code == 422
    assert refused.json()["detail"] == (
        f"rules[{at}].mute_time_intervals: 'quiet' names unknown time interval 'nights'"
        " (defined: none)"
    )
    assert post({"delete_time_intervals": ["lunch"]}).json()["detail"] == (
        "delete_time_intervals: no time interval 'lunch'"
    )
    both = post({"delete_time_intervals": ["nights"], "delete_rules": ["quiet"]})
    assert both.status_code == 200 and both.json()["time_intervals"] == []
