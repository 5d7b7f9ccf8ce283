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

SIGNATURE_METHOD = "HMAC-SHA1"
SIGNATURE_VERSION = "1.0"

_UNRESERVED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"
# Byte -> its encoding: itself when unreserved, else %XX (upper-case hex).
_ENCODED = [chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in range(256)]
# More distinct reserved bytes than this in one value: one table lookup per byte is cheaper
# than one str.replace over the whole value per distinct byte.
_MAX_REPLACES = 10


def percent_encode(value: str) -> str:
    """RFC 3986 encoding of UTF-8: only ``A-Z a-z 0-9 - _ . ~`` stay; space is ``%20``."""
    raw = value.encode("utf-8")
    # The signed body is ~65 KB of paths, encoded twice (the value, then the canonical query
    # inside the string to sign), so this runs at C speed: bytes.translate finds the reserved
    # bytes, and a value with none (most names and values) comes back as it is.
    reserved = raw.translate(None, _UNRESERVED)
    if not reserved:
        return value
    kinds = set(reserved)
    if len(kinds) > _MAX_REPLACES:
        return "".join(map(_ENCODED.__getitem__, raw))
    # Paths hold few kinds of reserved bytes ("/", ":", newline): one replace per kind, "%"
    # first since every other replacement brings one in. latin-1 maps each byte to one char.
    text = raw.decode("latin-1")
    if 0x25 in kinds:
        text = text.replace("%", "%25")
        kinds.discard(0x25)
    for byte in kinds:
        text = text.replace(chr(byte), _ENCODED[byte])
    return text


def canonical_query(params: Mapping[str, str]) -> str:
    """Every parameter but ``Signature``, sorted by name, encoded and joined with ``&``."""
    return "&".join(
        f"{percent_encode(k)}={percent_encode(v)}"
        for k, v in sorted(params.items())
        if k != "Signature"
    )


def string_to_sign(method: str, params: Mapping[str, str]) -> str:
    """``METHOD&%2F&percentEncode(canonical query)``."""
    return _string_to_sign(method, canonical_query(params))


def _string_to_sign(method: str, query: str) -> str:
    return f"{method.upper()}&{percent_encode('/')}&{percent_encode(query)}"


def sign(method: str, params: Mapping[str, str], secret: str) -> str:
    """Base64(HMAC-SHA1(secret + "&", StringToSign))."""
    return sign_canonical_query(method, canonical_query(params), secret)


def sign_canonical_query(method: str, query: str, secret: str) -> str:
    """:func:`sign` for parameters already made into their :func:`canonical_query`."""
    digest = hmac.new(
        (secret + "&").encode("utf-8"),
        _string_to_sign(method, query).encode("utf-8"),
        hashlib.sha1,
    ).digest()
    return base64.b64encode(digest).decode("ascii")


def signed_query(method: str, params: Mapping[str, str], secret: str) -> str:
    """The encoded form (body or URL query) of ``params`` with their ``Signature`` added.

    Each name and value is encoded once, for the signature and the form alike: the form is
    the canonical query (sorted, which the provider accepts) followed by ``Signature``.
    """
    query = canonical_query(params)
    signature = sign_canonical_query(method, query, secret)
    pair = f"Signature={percent_encode(signature)}"
    return f"{query}&{pair}" if query else pair


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
