"""What a job-end webhook is allowed to be, and how it is signed: shared by the API, which
accepts a ``callback_url``, and the workers, which send it.

A receiver checks ``X-CDN-Refresh-Signature: sha256=<hex>``, the HMAC-SHA256 of the exact
request body under ``CDN_REFRESH_WEBHOOK_SECRET``, and may deduplicate on
``X-CDN-Refresh-Delivery`` (delivery is at least once).
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

SIGNATURE_HEADER = "X-CDN-Refresh-Signature"
DELIVERY_HEADER = "X-CDN-Refresh-Delivery"
EVENT = "job.finished"
MAX_URL_CHARS = 2048


def sign(secret: str, body: bytes) -> str:
    """The signature header's value for ``body``."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, body: bytes, header: str) -> bool:
    """Whether ``header`` signs ``body`` (constant time): what a receiver does."""
    return hmac.compare_digest(sign(secret, body), header)


def url_problem(url: str, allowed_hosts: list[str]) -> str | None:
    """Why ``url`` may not be called back, or None. Only http(s), no credentials, and only
    a host listed in ``WEBHOOK_ALLOWED_HOSTS`` (exactly, or ``*.example.com``): a callback
    can never be turned against an internal service the operator did not name."""
    if len(url) > MAX_URL_CHARS or any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in url):
        return "callback_url must be a URL without spaces or control characters"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "callback_url must be an http:// or https:// URL with a host"
    if parts.username is not None or parts.password is not None:
        return "callback_url must not hold credentials"
    host = parts.hostname.rstrip(".").lower()
    if not allowed_hosts:
        return "callbacks are disabled: CDN_REFRESH_WEBHOOK_ALLOWED_HOSTS is empty"
    for allowed in allowed_hosts:
        if host == allowed or (allowed.startswith("*.") and host.endswith(allowed[1:])):
            return None
    return f"callback_url host {host!r} is not in CDN_REFRESH_WEBHOOK_ALLOWED_HOSTS"
