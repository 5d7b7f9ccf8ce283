"""What a job-end webhook is allowed to be, and how it is signed: shared by the API, which
accepts a ``callback_url``, and the workers, which send it.

A receiver checks ``X-CDN-Refresh-Signature: sha256=<hex>``, the HMAC-SHA256 of
``<timestamp>.<body>`` (the ``X-CDN-Refresh-Timestamp`` header, Unix seconds, a dot, then the
exact request body) under the callback's own secret or ``CDN_REFRESH_WEBHOOK_SECRET``; it
refuses a timestamp more than ``TOLERANCE_S`` away from its clock, so that a captured delivery
cannot be replayed later (:func:`verify`). It may deduplicate on ``X-CDN-Refresh-Delivery``
(delivery is at least once).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx

SIGNATURE_HEADER = "X-CDN-Refresh-Signature"
DELIVERY_HEADER = "X-CDN-Refresh-Delivery"
TIMESTAMP_HEADER = "X-CDN-Refresh-Timestamp"
# How far a delivery's timestamp may be from the receiver's clock (as Stripe's and Slack's):
# wide enough for clock skew and a slow hop, short enough that a capture soon goes stale.
TOLERANCE_S = 300
EVENT = "job.finished"
MAX_URL_CHARS = 2048
# The ports a WEBHOOK_ALLOWED_HOSTS entry without one allows.
DEFAULT_PORTS = (80, 443)


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header's value for ``body`` sent at ``timestamp`` (Unix seconds): the
    timestamp is signed with the body, so that neither can be changed alone."""
    signed = str(timestamp).encode("ascii") + b"." + body
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(
    secret: str,
    body: bytes,
    signature: str,
    timestamp: str,
    *,
    tolerance_s: float = TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """What a receiver does: whether ``signature`` signs ``body`` at ``timestamp`` (the two
    headers' values), compared in constant time, and the timestamp is within
    ``tolerance_s`` of ``now`` (a replayed capture is refused once it is that old)."""
    if not timestamp.isdigit() or len(timestamp) > 12:
        return False
    moment = int(timestamp)
    if abs((time.time() if now is None else now) - moment) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, body, moment), signature)


def url_problem(url: str, allowed_hosts: list[str]) -> str | None:
    """Why ``url`` may not be called back, or None. Only http(s), no credentials, a URL that
    the HTTP client parses too, and only a host listed in ``WEBHOOK_ALLOWED_HOSTS``
    (exactly, or ``*.example.com``) on port 80 or 443, or on the port its entry names
    (``host:8443``; ``host:*`` for any): a callback can never be turned against an internal
    service the operator did not name. Where it resolves to is checked when it is sent
    (:func:`address_problem`)."""
    if len(url) > MAX_URL_CHARS or any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in url):
        return "callback_url must be a URL without spaces or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port that is no number, or out of range
        hostname = parts.hostname
    except ValueError as exc:
        return f"callback_url is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https") or not hostname:
        return "callback_url must be an http:// or https:// URL with a host"
    if parts.username is not None or parts.password is not None:
        return "callback_url must not hold credentials"
    try:
        # What the sender will call: the host as httpx encodes it (IDNA), so that a host it
        # cannot encode is refused here instead of failing every attempt.
        host = httpx.URL(url).raw_host.decode("ascii").rstrip(".").lower()
    except (httpx.InvalidURL, UnicodeError, ValueError) as exc:
        return f"callback_url host is not a valid host name ({exc})"
    if not allowed_hosts:
        return "callbacks are disabled: CDN_REFRESH_WEBHOOK_ALLOWED_HOSTS is empty"
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    elif port == 0:
        return "callback_url must not name port 0"
    if not any(_allows(entry, host, port) for entry in allowed_hosts):
        return f"callback_url host {host!r} port {port} is not in CDN_REFRESH_WEBHOOK_ALLOWED_HOSTS"
    return None


def address_problem(
    host: str,
    port: int,
    allowed_hosts: list[str],
    resolve: Callable[[str, int], list[str]] | None = None,
) -> str | None:
    """Why ``host`` may not be called now, or None: it resolves to a loopback, private,
    link-local or otherwise internal address, and neither the host itself nor that address
    is listed exactly in ``WEBHOOK_ALLOWED_HOSTS`` (a wildcard entry is not enough: a public
    name must not lead inside)."""
    listed = {_split_entry(entry)[0] for entry in allowed_hosts if not entry.startswith("*.")}
    host = host.strip("[]").rstrip(".").lower()
    if host in listed:
        return None
    try:
        addresses = (resolve or _resolve)(host, port)
    except OSError as exc:
        return f"callback host {host!r} does not resolve ({exc})"
    for address in addresses:
        ip = _unmapped(ipaddress.ip_address(address.split("%")[0]))
        if _internal(ip) and str(ip) not in listed:
            return (
                f"callback host {host!r} resolves to the internal address {ip}, which is not "
                "listed in CDN_REFRESH_WEBHOOK_ALLOWED_HOSTS"
            )
    return None


def _resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# IPv6 prefixes that carry an IPv4 address a packet may end up at: NAT64 (RFC 6052, the
# well-known and the local-use prefix) in the last 32 bits, 6to4 (RFC 3056) in bits 16-48.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def _unmapped(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one leads to, when it embeds one: ``::ffff:10.0.0.1``
    (mapped), ``::10.0.0.1`` (compatible, deprecated but still routed by some stacks),
    ``64:ff9b::a00:1`` (NAT64) and ``2002:a00:1::`` (6to4) are all 10.0.0.1. Checked as that
    IPv4 address: else an internal one hides behind a global-looking IPv6 form."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return ip
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if any(ip in net for net in _NAT64):
        return low32
    if ip in _IPV4_COMPATIBLE and int(ip) > 1:  # not :: and ::1, which are their own
        return low32
    return ip


def _internal(ip: IPAddress) -> bool:
    return not ip.is_global or ip.is_multicast


def _split_entry(entry: str) -> tuple[str, str]:
    """``host[:port]`` (``[v6]:port``, ``host:*``) as (host, port text; empty: 80 and 443)."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, rest.removeprefix(":")
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, port
    return entry, ""  # a bare name, or an IPv6 address without brackets


def _allows(entry: str, host: str, port: int) -> bool:
    pattern, allowed_port = _split_entry(entry)
    if allowed_port == "":
        if port not in DEFAULT_PORTS:
            return False
    elif allowed_port != "*" and allowed_port != str(port):
        return False
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern
