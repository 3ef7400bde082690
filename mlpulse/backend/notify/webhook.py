"""The webhook channel: a signed JSON POST, retried with backoff, behind the SSRF guard.

Each request carries::

    Content-Type: application/json
    X-Mlpulse-Delivery: <notification id>
    X-Mlpulse-Timestamp: <unix seconds>
    X-Mlpulse-Signature: sha256=<hex HMAC-SHA256 of the raw body, keyed by the secret>

A receiver verifies with ``hmac.compare_digest(sig, "sha256=" + hmac.new(secret, body,
hashlib.sha256).hexdigest())``; the body also holds ``sent_at`` so replays can be refused.

Retries: on 5xx, 429, timeouts and connection errors, with exponential backoff
(``base * 2**n``, plus up to 25 % jitter, capped; ``Retry-After`` is honoured up to the
cap). Other 4xx are final. Redirects are never followed (a 3xx is a final failure), and
the URL is re-checked against the SSRF guard before every attempt.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import ssl
import time
from dataclasses import dataclass

import httpx

from mlpulse.backend.notify.channels import WebhookChannel
from mlpulse.backend.notify.result import AttemptHook, DeliveryResult, Sleep
from mlpulse.backend.notify.ssrf import Policy, Resolver, UrlRefused, check_url, default_resolver

USER_AGENT = "mlpulse-webhook/0.1"
_TLS = ssl.create_default_context()  # shared by every delivery: building one is slow


def sign(secret: str, body: bytes) -> str:
    """Return the ``X-Mlpulse-Signature`` value for ``body``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


@dataclass
class WebhookSender:
    """Deliver to webhook channels; one instance serves every worker thread."""

    policy: Policy
    timeout: float = 5.0
    max_attempts: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    resolver: Resolver = default_resolver

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Return the wait before attempt ``attempt + 1`` (growing, with jitter)."""
        delay = min(self.backoff_max, self.backoff_base * float(2 ** (attempt - 1)))
        delay *= 1 + random.uniform(0, 0.25)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max))
        return delay

    def send(
        self,
        channel: WebhookChannel,
        body: bytes,
        delivery_id: str,
        *,
        sleep: Sleep,
        on_failure: AttemptHook | None = None,
        max_attempts: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> DeliveryResult:
        """POST ``body`` to the channel, retrying transient failures (with extra
        ``headers``, such as an Authorization)."""
        attempts_allowed = max_attempts or channel.max_attempts or self.max_attempts
        timeout = channel.timeout or self.timeout
        error: str | None = None
        attempt = 0
        with httpx.Client(
            follow_redirects=False, timeout=timeout, trust_env=False, verify=_TLS
        ) as client:
            while attempt < attempts_allowed:
                attempt += 1
                retry, retry_after, error = self._attempt(
                    client, channel, body, delivery_id, headers or {}
                )
                if error is None:
                    return DeliveryResult(True, attempt)
                if on_failure is not None:
                    on_failure(attempt, error)
                if not retry or attempt >= attempts_allowed:
                    break
                if sleep(self.backoff(attempt, retry_after)):
                    error = f"{error}; delivery stopped at shutdown"
                    break
        return DeliveryResult(False, attempt, error)

    def _attempt(
        self,
        client: httpx.Client,
        channel: WebhookChannel,
        body: bytes,
        delivery_id: str,
        extra: dict[str, str],
    ) -> tuple[bool, float | None, str | None]:
        """Make one request; return (retryable, retry_after, error or None)."""
        try:
            target = check_url(channel.url, self.policy, self.resolver)
        except UrlRefused as exc:
            return False, None, f"refused: {exc}"
        headers = {
            **extra,
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Host": target.host_header(),
            "X-Mlpulse-Delivery": delivery_id,
            "X-Mlpulse-Timestamp": str(int(time.time())),
        }
        if channel.secret is not None and channel.secret.get_secret_value():
            headers["X-Mlpulse-Signature"] = sign(channel.secret.get_secret_value(), body)
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        try:
            response = client.post(
                target.pinned_url(), content=body, headers=headers, extensions=extensions
            )
        except httpx.TimeoutException:
            return True, None, f"timeout after {client.timeout.read}s"
        except httpx.TransportError as exc:
            return True, None, f"connection error: {type(exc).__name__}"
        status = response.status_code
        if 200 <= status < 300:
            return False, None, None
        if 300 <= status < 400:
            return False, None, f"HTTP {status}: redirect not followed"
        if status == 429 or status >= 500:
            return True, _retry_after(response), f"HTTP {status}"
        return False, None, f"HTTP {status}"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
