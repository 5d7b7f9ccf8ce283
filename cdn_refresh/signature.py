"""Alibaba Cloud RPC request signature, version 1.0 (HMAC-SHA1), as in ../shared/PROVIDER.md.

Shared by the client, which signs, and the emulator, which verifies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import quote

SIGNATURE_METHOD = "HMAC-SHA1"
SIGNATURE_VERSION = "1.0"


def percent_encode(value: str) -> str:
    """RFC 3986 encoding of UTF-8: only ``A-Z a-z 0-9 - _ . ~`` stay; space is ``%20``."""
    return quote(value, safe="~", encoding="utf-8")


def canonical_query(params: Mapping[str, str]) -> str:
    """Every parameter but ``Signature``, sorted by name, encoded and joined with ``&``."""
    return "&".join(
        f"{percent_encode(k)}={percent_encode(v)}"
        for k, v in sorted(params.items())
        if k != "Signature"
    )


def string_to_sign(method: str, params: Mapping[str, str]) -> str:
    """``METHOD&%2F&percentEncode(canonical query)``."""
    return f"{method.upper()}&{percent_encode('/')}&{percent_encode(canonical_query(params))}"


def sign(method: str, params: Mapping[str, str], secret: str) -> str:
    """Base64(HMAC-SHA1(secret + "&", StringToSign))."""
    digest = hmac.new(
        (secret + "&").encode("utf-8"),
        string_to_sign(method, params).encode("utf-8"),
        hashlib.sha1,
    ).digest()
    return base64.b64encode(digest).decode("ascii")


def verify(method: str, params: Mapping[str, str], secret: str) -> bool:
    """Whether ``params["Signature"]`` is right for ``secret``, in constant time."""
    given = params.get("Signature", "")
    return hmac.compare_digest(given.encode(), sign(method, params, secret).encode())


def format_timestamp(moment: datetime) -> str:
    """``YYYY-MM-DDThh:mm:ssZ`` in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(value: str) -> datetime:
    """The inverse of :func:`format_timestamp`; raises ``ValueError`` on another shape."""
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def common_params(
    access_key_id: str,
    version: str,
    *,
    security_token: str | None = None,
    now: datetime | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The common request parameters, with a fresh nonce and the current UTC time."""
    params = {
        "Format": "JSON",
        "Version": version,
        "AccessKeyId": access_key_id,
        "SignatureMethod": SIGNATURE_METHOD,
        "SignatureVersion": SIGNATURE_VERSION,
        "SignatureNonce": nonce or uuid.uuid4().hex,
        "Timestamp": format_timestamp(now or datetime.now(UTC)),
    }
    if security_token:
        params["SecurityToken"] = security_token
    return params
