"""The email channel: SMTP with STARTTLS and login, a plain-text and an HTML part.

``smtplib`` blocks, so it runs on the delivery worker threads, never on the event loop.
Transient failures (connection errors, timeouts, 4xx replies) are retried with the same
backoff as webhooks; 5xx replies are final.

The SMTP host goes through the webhooks' SSRF guard (`mlpulse.backend.notify.ssrf.check_host`,
same policy and settings) before every attempt, and the connection is made to the address
that was checked, the host name kept for EHLO and TLS certificate checks: a DNS answer
that changes after the check (rebinding) cannot send the mail, or the SMTP login,
elsewhere.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from mlpulse.backend.notify.channels import EmailChannel
from mlpulse.backend.notify.message import html_body, subject, text_body
from mlpulse.backend.notify.result import AttemptHook, DeliveryResult, Sleep
from mlpulse.backend.notify.ssrf import Policy, Resolver, UrlRefused, check_host, default_resolver


class _PinnedSMTP(smtplib.SMTP):
    """SMTP that connects to a checked address while naming the host (TLS, EHLO)."""

    def __init__(self, address: str, host: str, port: int, timeout: float) -> None:
        self._address = address
        super().__init__(host, port, timeout=timeout)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return socket.create_connection((self._address, port), timeout, self.source_address)


class _PinnedSMTPSSL(smtplib.SMTP_SSL):
    """SMTPS that connects to a checked address; the certificate is checked for the host."""

    def __init__(
        self, address: str, host: str, port: int, timeout: float, context: ssl.SSLContext
    ) -> None:
        self._address = address
        self._server_name = host
        super().__init__(host, port, timeout=timeout, context=context)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        raw = socket.create_connection((self._address, port), timeout, self.source_address)
        return self.context.wrap_socket(raw, server_hostname=self._server_name)


def build_message(channel: EmailChannel, payload: dict[str, Any]) -> EmailMessage:
    """Return the email for ``payload``: plain text with an HTML alternative."""
    message = EmailMessage()
    message["Subject"] = subject(payload)
    message["From"] = channel.from_addr
    message["To"] = ", ".join(channel.to_addrs)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="mlpulse")
    message["X-Mlpulse-Alert-Id"] = str(payload.get("alert_id", "-"))
    message.set_content(text_body(payload))
    message.add_alternative(html_body(payload), subtype="html")
    return message


@dataclass
class EmailSender:
    """Deliver to email channels."""

    max_attempts: int = 3
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    ssl_context: ssl.SSLContext | None = None
    policy: Policy = field(default_factory=Policy)  # the SSRF guard's, as for webhooks
    resolver: Resolver = default_resolver

    def send(
        self,
        channel: EmailChannel,
        payload: dict[str, Any],
        *,
        sleep: Sleep,
        on_failure: AttemptHook | None = None,
        max_attempts: int | None = None,
    ) -> DeliveryResult:
        """Send the notification, retrying transient SMTP failures."""
        message = build_message(channel, payload)
        allowed = max_attempts or self.max_attempts
        error: str | None = None
        for attempt in range(1, allowed + 1):
            retry, error = self._attempt(channel, message)
            if error is None:
                return DeliveryResult(True, attempt)
            if on_failure is not None:
                on_failure(attempt, error)
            if not retry or attempt >= allowed:
                return DeliveryResult(False, attempt, error)
            delay = min(self.backoff_max, self.backoff_base * float(2 ** (attempt - 1)))
            if sleep(delay):
                return DeliveryResult(False, attempt, f"{error}; delivery stopped at shutdown")
        return DeliveryResult(False, allowed, error)

    def _attempt(self, channel: EmailChannel, message: EmailMessage) -> tuple[bool, str | None]:
        context = self.ssl_context or ssl.create_default_context()
        host = channel.host.strip("[]")
        try:
            addresses, _ = check_host(host, channel.port, self.policy, self.resolver)
        except UrlRefused as exc:
            return False, f"SMTP host refused: {exc}"
        try:
            smtp: smtplib.SMTP
            if channel.ssl:
                smtp = _PinnedSMTPSSL(addresses[0], host, channel.port, channel.timeout, context)
            else:
                smtp = _PinnedSMTP(addresses[0], host, channel.port, channel.timeout)
            with smtp:
                smtp.ehlo()
                if not channel.ssl and (
                    channel.starttls == "always"
                    or (channel.starttls == "auto" and smtp.has_extn("starttls"))
                ):
                    smtp.starttls(context=context)
                    smtp.ehlo()
                if channel.username:
                    password = channel.password.get_secret_value() if channel.password else ""
                    smtp.login(channel.username, password)
                smtp.send_message(message)
        except smtplib.SMTPResponseException as exc:
            # Never include the server's reply to AUTH verbatim: keep code and class only.
            return 400 <= exc.smtp_code < 500, f"SMTP {exc.smtp_code} ({type(exc).__name__})"
        except smtplib.SMTPNotSupportedError as exc:
            return False, f"SMTP: {exc}"
        except smtplib.SMTPRecipientsRefused:
            return False, "SMTP: every recipient refused"
        except (smtplib.SMTPException, OSError) as exc:
            return True, f"SMTP connection error: {type(exc).__name__}: {exc}"
        return False, None
