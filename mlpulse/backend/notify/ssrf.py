"""The SSRF guard for webhook URLs and SMTP hosts: only http(s), only public addresses.

A webhook URL (`check_url`) or an SMTP host (`check_host`) is checked when a channel is
saved and again before every request or connection: the host is resolved and every
address must be public — loopback, private (RFC 1918, ULA), link-local, shared (CGNAT),
unspecified, multicast, reserved and cloud metadata addresses are refused. The request
then goes to the address that was checked (the URL host is kept in ``Host`` and in TLS
SNI/certificate checks), so a DNS answer that changes between the check and the
connection (rebinding) cannot send it elsewhere.

Two settings loosen the guard, for receivers on a private network and for tests:
``MLPULSE_WEBHOOK_ALLOW_PRIVATE=true`` accepts any address except metadata ones, and
``MLPULSE_WEBHOOK_ALLOWED_HOSTS=["host", "host:port"]`` accepts those exact URL hosts.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack, ...
        ipaddress.ip_address("169.254.170.2"),  # AWS ECS task metadata
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
        ipaddress.ip_address("fd00:ec2::254"),  # AWS IMDS over IPv6
    }
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UrlRefused(ValueError):
    """The URL may not be called; the message says why."""


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect, and what to call the host."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]
    allowed_by_setting: bool = False

    def pinned_url(self) -> str:
        """Return the URL with the host replaced by the first checked address."""
        parts = urlsplit(self.url)
        address = self.addresses[0]
        netloc = f"[{address}]" if ":" in address else address
        netloc = f"{netloc}:{self.port}"
        return SplitResult(parts.scheme, netloc, parts.path or "/", parts.query, "").geturl()

    def host_header(self) -> str:
        """Return the ``Host`` header the URL implies."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


@dataclass(frozen=True)
class Policy:
    """What the guard lets through beyond public addresses."""

    allow_private: bool = False
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, allow_private: bool, allowed_hosts: Iterable[str]) -> Policy:
        """Build a policy, normalizing host entries to lowercase."""
        return cls(allow_private, frozenset(h.strip().lower() for h in allowed_hosts if h))


def default_resolver(host: str, port: int) -> list[str]:
    """Resolve ``host`` to its addresses (A and AAAA)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[str] = []
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]
        if address not in out:
            out.append(address)
    return out


def address_problem(address: IPAddress) -> str | None:
    """Return why ``address`` is not a public unicast address, or None if it is."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address_problem(address.ipv4_mapped)
        if address in _NAT64:
            return address_problem(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    checks: list[tuple[Any, str]] = [
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_private, "a private address"),
        (address.is_reserved, "a reserved address"),
        (not address.is_global, "not a public address"),
    ]
    for flag, reason in checks:
        if flag:
            return reason
    return None


def check_url(url: str, policy: Policy, resolver: Resolver = default_resolver) -> Target:
    """Resolve and check ``url``; raise `UrlRefused` naming the reason."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused(f"invalid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise UrlRefused(f"scheme {parts.scheme or '(none)'!r} refused: only http and https")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise UrlRefused("the URL has no host")
    if parts.username or parts.password:
        raise UrlRefused("credentials in the URL are refused")
    port = port or (443 if parts.scheme == "https" else 80)
    addresses, allowed = check_host(host, port, policy, resolver)
    return Target(url, parts.scheme, host, port, addresses, allowed)


def check_host(
    host: str, port: int, policy: Policy, resolver: Resolver = default_resolver
) -> tuple[tuple[str, ...], bool]:
    """Resolve and check ``host``; return (its checked addresses, allowed by a setting).

    Raise `UrlRefused` naming the reason.
    """
    host = host.lower().rstrip(".")
    if not host:
        raise UrlRefused("no host")
    allowed = host in policy.allowed_hosts or f"{host}:{port}" in policy.allowed_hosts
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = resolver(host, port)
        except (OSError, UnicodeError) as exc:
            raise UrlRefused(f"cannot resolve {host!r}: {exc}") from None
        if not addresses:
            raise UrlRefused(f"{host!r} resolves to no address")
    for text in addresses:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise UrlRefused(f"{host!r} resolves to an invalid address") from None
        problem = address_problem(address)
        if problem is None:
            continue
        if problem == "a cloud metadata address":
            raise UrlRefused(f"{host!r} resolves to {address}, {problem}: refused")
        if allowed or policy.allow_private:
            continue
        raise UrlRefused(
            f"{host!r} resolves to {address}, {problem}: refused "
            "(set MLPULSE_WEBHOOK_ALLOW_PRIVATE or MLPULSE_WEBHOOK_ALLOWED_HOSTS to allow)"
        )
    return tuple(addresses), allowed
