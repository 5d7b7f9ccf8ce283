"""Checking the common parameters and the RPC signature, in the provider's order.

Order: every common parameter present; signature method and version; timestamp shape;
AccessKeyId known; signature right; timestamp fresh; nonce unused. The nonce is remembered only
after the signature checks out, so a stranger cannot burn another client's nonces.
A ``SecurityToken`` (STS) is signed over like any parameter but not itself checked.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime

from cdn_refresh import constants as c
from cdn_refresh.signature import (
    SIGNATURE_METHOD,
    SIGNATURE_VERSION,
    format_timestamp,
    parse_timestamp,
    verify,
)
from emulator.config import EmulatorConfig
from emulator.errors import ApiError, invalid_parameter, missing_parameter

# Format is optional: the official SDK sends "json" in lower case, our client "JSON".
REQUIRED_PARAMS = (
    "Action",
    "Version",
    "AccessKeyId",
    "SignatureMethod",
    "SignatureVersion",
    "SignatureNonce",
    "Timestamp",
    "Signature",
)


class NonceCache:
    """Nonces seen within the timestamp window, oldest first. Not thread-safe."""

    def __init__(self) -> None:
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()

    def use(self, key_id: str, nonce: str, now_s: float, window_s: float) -> bool:
        """Remember ``nonce`` for ``key_id``; False if it was already used within the window."""
        while self._seen:
            oldest_key, seen_at = next(iter(self._seen.items()))
            if now_s - seen_at <= window_s:
                break
            del self._seen[oldest_key]
        key = (key_id, nonce)
        if key in self._seen:
            return False
        self._seen[key] = now_s
        return True

    def clear(self) -> None:
        """Forget every nonce."""
        self._seen.clear()


def check_common(params: Mapping[str, str]) -> None:
    """The parameters every call needs, with the values this API accepts."""
    for name in REQUIRED_PARAMS:
        if not params.get(name):
            raise missing_parameter(name)
    if params["Version"] != c.API_VERSION:
        raise ApiError(
            400,
            "InvalidVersion",
            f"Specified parameter Version {params['Version']!r} is not valid.",
        )
    if params.get("Format", "JSON").upper() != "JSON":
        # The real provider also answers XML; the emulator speaks JSON only and says so.
        raise invalid_parameter("Format", params["Format"])
    if params["SignatureMethod"] != SIGNATURE_METHOD:
        raise ApiError(
            400,
            "InvalidSignatureMethod",
            f"Specified signature method {params['SignatureMethod']!r} is not valid.",
        )
    if params["SignatureVersion"] != SIGNATURE_VERSION:
        raise ApiError(
            400,
            "InvalidSignatureVersion",
            f"Specified signature version {params['SignatureVersion']!r} is not valid.",
        )


def authenticate(
    method: str,
    params: Mapping[str, str],
    config: EmulatorConfig,
    nonces: NonceCache,
    now_s: float,
) -> str:
    """Check the request's signature and freshness; return its AccessKeyId."""
    check_common(params)
    try:
        sent_at = parse_timestamp(params["Timestamp"])
    except ValueError:
        raise ApiError(
            400,
            "InvalidTimeStamp.Format",
            f"Specified time stamp {params['Timestamp']!r} is not in YYYY-MM-DDThh:mm:ssZ form.",
        ) from None
    key_id = params["AccessKeyId"]
    secret = config.credentials.get(key_id)
    if secret is None:
        raise ApiError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
    if not verify(method, params, secret):
        raise ApiError(
            400, "SignatureDoesNotMatch", "Specified signature is not matched with our calculation."
        )
    if abs(now_s - sent_at.timestamp()) > config.timestamp_window_s:
        now_text = format_timestamp(datetime.fromtimestamp(now_s, UTC))
        raise ApiError(
            400,
            "InvalidTimeStamp.Expired",
            f"Specified time stamp or date header is expired (server time {now_text}).",
        )
    if not nonces.use(key_id, params["SignatureNonce"], now_s, config.timestamp_window_s):
        raise ApiError(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
    return key_id
