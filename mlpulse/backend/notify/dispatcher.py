"""The delivery worker: a queue and a few threads, off the ingest and evaluation paths.

The alert engine records each notification (a receipt row, status ``queued``: the
outbox) and hands its id to `Dispatcher.submit`; a worker thread claims it (one atomic
UPDATE, so with several replicas on one database exactly one delivers it), delivers it
through the named channel and writes the outcome (``delivered`` / ``failed``, attempts,
last error, ``delivered_at``) back to the receipt. Notifications nobody delivers (left
by a stopped process, or claimed by a replica that died and whose claim expired) are
queued again by `resubmit_due`, at start and by the alert job, so none is lost.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from mlpulse.backend.notify.channels import (
    AlertmanagerChannel,
    ConsoleChannel,
    EmailChannel,
    FileChannel,
    WebhookChannel,
)
from mlpulse.backend.notify.console import send_console
from mlpulse.backend.notify.email import EmailSender
from mlpulse.backend.notify.file import protected_files, send_file
from mlpulse.backend.notify.formats import alertmanager_alerts, webhook_body
from mlpulse.backend.notify.result import DeliveryResult
from mlpulse.backend.notify.webhook import WebhookSender

log = logging.getLogger(__name__)

AnyChannel = ConsoleChannel | FileChannel | WebhookChannel | EmailChannel | AlertmanagerChannel


class Receipts(Protocol):
    """Where notifications and their receipts are kept (the alert store)."""

    def notification(self, note_id: int) -> dict[str, Any] | None: ...

    def update_receipt(
        self,
        note_id: int,
        *,
        status: str,
        attempts: int,
        last_error: str | None,
        at: float,
        delivered_at: float | None = None,
        claimed_until: float | None = None,
    ) -> None: ...

    def claim(self, note_id: int, owner: str, now: float, until: float) -> bool: ...

    def due(self, now: float, limit: int = 100) -> list[int]: ...


class Dispatcher:
    """Deliver notifications on worker threads and record receipts.

    >>> dispatcher = Dispatcher(store, lambda name: config.channel(name), data_dir,
    ...                         webhook=WebhookSender(Policy()))  # doctest: +SKIP
    >>> dispatcher.start(); dispatcher.submit(note_id)  # doctest: +SKIP
    """

    def __init__(
        self,
        receipts: Receipts,
        channel_lookup: Callable[[str], AnyChannel | None],
        data_dir: Path,
        *,
        webhook: WebhookSender,
        email: EmailSender | None = None,
        workers: int = 4,
        clock: Callable[[], float] = time.time,
        file_dir: Path | None = None,
        protected: frozenset[Path] | None = None,
        claim_s: float = 120.0,
        external_url: str = "http://127.0.0.1:8003",
    ) -> None:
        self._receipts = receipts
        self._lookup = channel_lookup
        self._data_dir = data_dir
        # File channels write only inside this folder, never onto the backend's files.
        self._file_dir = file_dir if file_dir is not None else data_dir / "alerts"
        self._protected = protected if protected is not None else protected_files(data_dir)
        self.webhook = webhook
        self.email = email or EmailSender()
        self.external_url = external_url  # links back to the page in Slack, PagerDuty, ...
        self._workers = max(1, workers)
        self._clock = clock
        self._queue: queue.Queue[int | None] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._idle = threading.Condition()
        self._busy = 0
        # The outbox claim: who delivers, and for how long a silent deliverer keeps it
        # (extended on every attempt; a replica that died loses it after this).
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.claim_s = claim_s

    def start(self) -> None:
        """Start the workers and resubmit receipts left queued by a previous run."""
        if self._threads:
            return
        self._stop.clear()
        for i in range(self._workers):
            thread = threading.Thread(target=self._run, name=f"mlpulse-notify-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self.resubmit_due()

    def resubmit_due(self) -> int:
        """Queue the notifications nobody is delivering (left by a stopped process or a
        replica that died); return how many. A claim decides who delivers each."""
        due = self._receipts.due(self._clock())
        for note_id in due:
            self.submit(note_id)
        return len(due)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the workers; a delivery waiting on a backoff gives up at once."""
        self._stop.set()
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = []

    def submit(self, note_id: int) -> None:
        """Queue a recorded notification for delivery; returns at once."""
        with self._idle:
            self._busy += 1
        self._queue.put(note_id)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every submitted notification is done (for tests and shutdown)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    def _sleep(self, seconds: float) -> bool:
        return self._stop.wait(seconds)

    def _run(self) -> None:
        while True:
            note_id = self._queue.get()
            if note_id is None:
                return
            try:
                self.deliver(note_id)
            except Exception:
                log.exception("notification %s: delivery crashed", note_id)
            finally:
                with self._idle:
                    self._busy -= 1
                    self._idle.notify_all()

    def deliver(self, note_id: int, *, max_attempts: int | None = None) -> DeliveryResult:
        """Deliver one recorded notification now, on the calling thread."""
        note = self._receipts.notification(note_id)
        if note is None:
            return DeliveryResult(False, 0, "no such notification")
        channel = self._lookup(note["channel"])
        if channel is None:
            result = DeliveryResult(False, 0, f"channel {note['channel']!r} no longer exists")
        else:
            payload = dict(note["payload"], delivery_id=str(note_id))
            now = self._clock()
            if not self._receipts.claim(note_id, self.owner, now, now + self.claim_s):
                return DeliveryResult(False, 0, "delivered or being delivered elsewhere")

            def failed(attempt: int, error: str | None) -> None:
                at = self._clock()
                self._receipts.update_receipt(
                    note_id,
                    status="sending",
                    attempts=attempt,
                    last_error=error,
                    at=at,
                    claimed_until=at + self.claim_s,
                )

            result = self._send(channel, payload, note_id, failed, max_attempts)
        now = self._clock()
        self._receipts.update_receipt(
            note_id,
            status="delivered" if result.delivered else "failed",
            attempts=result.attempts,
            last_error=result.error,
            at=now,
            delivered_at=now if result.delivered else None,
        )
        if not result.delivered:
            log.warning(
                "notification %s via channel %r failed after %d attempt(s): %s",
                note_id,
                note["channel"],
                result.attempts,
                result.error,
            )
        return result

    def _send(
        self,
        channel: AnyChannel,
        payload: dict[str, Any],
        note_id: int,
        failed: Callable[[int, str | None], None],
        max_attempts: int | None,
    ) -> DeliveryResult:
        if isinstance(channel, ConsoleChannel):
            return send_console(channel, payload)
        if isinstance(channel, FileChannel):
            return send_file(channel, payload, self._file_dir, self._protected)
        if isinstance(channel, AlertmanagerChannel):
            alerts = alertmanager_alerts(channel, payload, self.external_url, time.time())
            target = WebhookChannel(
                name=channel.name,
                url=channel.alerts_url(),
                timeout=channel.timeout,
                max_attempts=channel.max_attempts,
            )
            return self.webhook.send(
                target,
                json.dumps(alerts, separators=(",", ":")).encode(),
                str(note_id),
                sleep=self._sleep,
                on_failure=failed,
                max_attempts=max_attempts,
                headers=channel.auth_headers(),
            )
        if isinstance(channel, WebhookChannel):
            payload["sent_at"] = time.time()
            document = webhook_body(channel, payload, self.external_url)
            body = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
            return self.webhook.send(
                channel,
                body,
                str(note_id),
                sleep=self._sleep,
                on_failure=failed,
                max_attempts=max_attempts,
            )
        return self.email.send(
            channel, payload, sleep=self._sleep, on_failure=failed, max_attempts=max_attempts
        )
