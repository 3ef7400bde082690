"""Helpers for the browser tests: a real backend on a free port, filled through
`/v1/metrics` by the OTel SDK, and Debian's Chromium driven by Playwright.

Chromium is `/usr/bin/chromium` from `apt-get install chromium` (Playwright's own browser
download cannot work here). Without it the tests skip locally — and fail in CI (`CI` set),
so a missing install can never pass silently.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import uvicorn
from browser_traffic import XSS, Traffic
from fastapi import FastAPI

TOKEN = "browser-test-token"
CHROMIUM = os.environ.get("MLPULSE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"


def require_chromium() -> None:
    if Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK):
        return
    message = f"Chromium not found at {CHROMIUM}: apt-get install -y chromium"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


class ServerThread:
    """uvicorn serving an app in a background thread, on a free port."""

    def __init__(self, app: FastAPI) -> None:
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="on",
            # The server must outlive httpx's 5 s idle expiry, or a reused
            # connection can meet the server's close: connection reset.
            timeout_keep_alive=75,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@dataclass
class Backend:
    """A running backend and an HTTP client for the API."""

    url: str
    app: FastAPI
    client: httpx.Client
    traffic: Traffic
    extra: dict[str, Any] = field(default_factory=dict)

    def get(self, path: str, **params: Any) -> Any:
        resp = self.client.get(path, params=params)
        assert resp.status_code == 200, f"{path}: {resp.status_code} {resp.text[:300]}"
        return resp.json()


XSS_MODEL = XSS
XSS_ROUTE = "/" + XSS


@dataclass
class PageProbe:
    """A page plus everything suspicious it did: dialogs, JS errors, CSP violations."""

    page: Any
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    responses: list[Any] = field(default_factory=list)


BATCH_PATH = "/dashboard/batch"


def batch_urls(url: str) -> list[str]:
    """The URLs a `/dashboard/batch` request carries (its `get`s, absolute); [] otherwise."""
    parts = urlsplit(url)
    if parts.path != BATCH_PATH:
        return []
    base = f"{parts.scheme}://{parts.netloc}/"
    return [base + ref.lstrip("/") for ref in parse_qs(parts.query).get("get", [])]


class BatchPart:
    """One read answered inside a `/dashboard/batch` response, shaped like the Playwright
    `Response` its own GET would have been (`url`, `status`, `ok`, `json()`, `text()`).

    The page's first load asks its ~20 reads in one batch; tests that look for the page's
    responses by path see each of them as if it had been fetched alone. The batch's body
    is read when a part is first looked at (never inside Playwright's event callback).
    """

    def __init__(self, batch: Any, index: int, url: str, bodies: dict[int, Any]) -> None:
        self.batch = batch
        self.index = index
        self.url = url
        self._bodies = bodies  # the batch's parsed body, shared by its parts, read once

    def _answer(self) -> dict[str, Any]:
        key = id(self.batch)
        if key not in self._bodies:
            try:
                self._bodies[key] = self.batch.json()["responses"]
            except Exception:  # the page navigated away before the body was read
                self._bodies[key] = None
        answers = self._bodies[key]
        if answers is None:
            return {"status": 0, "body": None}  # gone, as an unread Response's body would be
        answer: dict[str, Any] = answers[self.index]
        return answer

    @property
    def status(self) -> int:
        return int(self._answer()["status"])

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        return self._answer()["body"]

    def text(self) -> str:
        return json.dumps(self.json())


def with_batch_parts(resp: Any, bodies: dict[int, Any] | None = None) -> list[Any]:
    """A response, followed by the parts of a batch response (see BatchPart)."""
    shared: dict[int, Any] = {} if bodies is None else bodies
    return [resp, *(BatchPart(resp, i, u, shared) for i, u in enumerate(batch_urls(resp.url)))]


def save_screenshot(pg: Any, name: str = "dashboard.png") -> Path:
    """Save a full-page screenshot into test-artifacts/ (git-ignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    pg.screenshot(path=str(path), full_page=True)
    return path
