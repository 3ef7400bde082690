"""Helpers for the alert tests: a settable clock, a scripted signal source, configs."""

from __future__ import annotations

from typing import Any

from mlpulse.backend.alerts.engine import Sample
from mlpulse.backend.alerts.rules import AlertConfig, Rule, parse_config


class Clock:
    """A settable clock: ``clock.t`` seconds since the epoch."""

    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> float:
        self.t += seconds
        return self.t


class Script:
    """A signal source whose value per group the test sets, like promtool's input series."""

    def __init__(self) -> None:
        self.values: dict[tuple[tuple[str, str], ...], tuple[float | None, int]] = {}
        self.calls: list[tuple[str, float]] = []

    def set(self, value: float | None, samples: int = 100, **labels: str) -> None:
        self.values[tuple(sorted(labels.items()))] = (value, samples)

    def clear(self) -> None:
        self.values.clear()

    def __call__(self, rule: Rule, now: float) -> list[Sample]:
        self.calls.append((rule.name, now))
        return [Sample(dict(key), value, n) for key, (value, n) in self.values.items()]


def make_config(
    *rules: dict[str, Any], channels: list[dict[str, Any]] | None = None
) -> AlertConfig:
    """Return a config with the given rules and a console channel."""
    return parse_config(
        {"channels": channels or [{"name": "console", "type": "console"}], "rules": list(rules)}
    )


class Receiver:
    """A webhook receiver on 127.0.0.1:0 that answers from a script and records requests.

    ``script`` items: an int status, ``("redirect", url)``, or ``("hang", seconds)``;
    the last item repeats. ``check(body)`` (optional) validates a body the way a real
    receiver does: it returns an error text, and the receiver answers 400 with it.
    """

    def __init__(self, script: list[Any] | None = None, check: Any = None) -> None:
        import http.server
        import threading

        self.check = check
        self.rejected: list[str] = []
        self.script = list(script or [200])
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                import time

                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver.requests.append(
                        {
                            "at": time.monotonic(),
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": body,
                            "path": self.path,
                        }
                    )
                    n = len(receiver.requests)
                    action = receiver.script[min(n, len(receiver.script)) - 1]
                problem = receiver.check(body) if receiver.check is not None else None
                if problem:
                    receiver.rejected.append(problem)
                    data = problem.encode()
                    self.send_response(400)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                if isinstance(action, tuple) and action[0] == "hang":
                    receiver._release.wait(action[1])
                    action = 200
                if isinstance(action, tuple) and action[0] == "redirect":
                    self.send_response(307)
                    self.send_header("Location", action[1])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(int(action))
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.host = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()


def pipeline(
    tmp_path: Any,
    config: dict[str, Any],
    hosts: list[str],
    clock: Any = None,
    external_url: str = "http://mlpulse.example:8003",
    store: str | None = None,
) -> tuple[Any, Script, Any]:
    """An engine, a scripted source and started delivery workers for ``config``, with the
    SSRF guard letting ``hosts`` through (alert tables in ``store``, a PostgreSQL URL,
    or a SQLite file in ``tmp_path``). Returns ``(engine, script, dispatcher)``."""
    from mlpulse.backend.alerts.engine import AlertEngine
    from mlpulse.backend.alerts.store import AlertStore
    from mlpulse.backend.notify.dispatcher import Dispatcher
    from mlpulse.backend.notify.ssrf import Policy
    from mlpulse.backend.notify.webhook import WebhookSender

    alert_store = AlertStore(store or tmp_path / "alerts.db")
    script = Script()
    engine = AlertEngine(alert_store, script, clock=clock or Clock(), repeat_interval=3600)
    webhook = WebhookSender(Policy.of(False, hosts), timeout=5, max_attempts=2, backoff_base=0.05)
    engine.dispatcher = Dispatcher(
        alert_store, engine.channel, tmp_path, webhook=webhook, workers=2, external_url=external_url
    )
    engine.set_config(parse_config(config))
    engine.dispatcher.start()
    return engine, script, engine.dispatcher


def rule(**overrides: Any) -> dict[str, Any]:
    """Return a rule dict (error rate > 5 %, for 0) with ``overrides``."""
    base: dict[str, Any] = {
        "name": "err",
        "signal": "error_rate_percent",
        "comparison": ">",
        "threshold": 5,
        "for": 0,
        "min_samples": 1,
        "group_by": "service",
        "channels": ["console"],
    }
    base.update(overrides)
    return base


class Server:
    """The backend app under uvicorn on a free loopback port, stoppable (for restarts)."""

    def __init__(self, app: Any) -> None:
        import threading

        import uvicorn

        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            timeout_keep_alive=75,  # outlives httpx's 5 s idle expiry
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.app = app

    def start(self) -> str:
        import time

        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
