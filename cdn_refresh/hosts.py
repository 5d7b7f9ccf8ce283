"""The scheme and authority of an input path: which scheme, which host and port, and whether
the deployment allows that host. Shared by every kind of path (:mod:`cdn_refresh.paths` for
URLs and directories, :mod:`cdn_refresh.patterns` for regular expressions), with the reasons
they refuse input for (:class:`InvalidPathError`). The rules are listed in
:mod:`cdn_refresh.paths`.
"""

from __future__ import annotations

import re
from collections.abc import Collection

import idna

__all__ = [
    "MAX_HOST_LENGTH",
    "MAX_LABEL_LENGTH",
    "InvalidPathError",
    "authority_end",
    "canonical_host",
    "check_allowed",
    "parse_authority",
    "split_scheme",
]

# A scheme by RFC 3986 syntax, followed by its colon.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")

# What may follow "name:" for "name" to be a host with a port rather than a scheme. The port
# must have digits: "ftp:/x" or "file:/etc/passwd" is a scheme short of its "//", not a host.
_PORT_THEN_PATH = re.compile(r"[0-9]+(?:[/?#]|\Z)")

_HOST = re.compile(r"[a-z0-9.\-]+")

_DEFAULT_PORTS = {"http": 80, "https": 443}

MAX_HOST_LENGTH = 253
MAX_LABEL_LENGTH = 63
_MAX_SCHEME_IN_REASON = 20


class InvalidPathError(ValueError):
    """An input path that cannot be refreshed, with a short, stable, human-readable reason.

    The reason never holds the raw input's control characters, so it is safe to log or show.
    """

    reason: str

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def split_scheme(text: str) -> tuple[str, str]:
    """The lowercase scheme and what follows its ``//``; ``http`` when none is given."""
    if text.startswith("//"):
        return "http", text[2:]
    match = _SCHEME.match(text)
    if match is None:
        return "http", text
    name = match.group()[:-1].lower()
    after = text[match.end() :]
    if after.startswith("//"):
        if name not in _DEFAULT_PORTS:
            raise InvalidPathError(f"scheme {_shorten(name)} not allowed")
        return name, after[2:]
    if name in _DEFAULT_PORTS:
        # "http:example.com", "https:/www.example.com" (a slash short) or "https:": no
        # authority. Read as a host named "https" it would refresh the wrong host; browsers
        # guess, we do not.
        raise InvalidPathError("no host")
    # "example.com:8080/a" and "localhost:80" have no scheme: the colon starts a port. A dot
    # also marks a host ("example.com:x" is a bad port, not a scheme), since real schemes
    # with dots are vanishingly rare. "user:password@host" is user info: parse it as an
    # authority so that it is refused for what it is.
    if _PORT_THEN_PATH.match(after) or "." in name or "@" in _authority_part(after):
        return "http", text
    raise InvalidPathError(f"scheme {_shorten(name)} not allowed")


def authority_end(rest: str) -> int:
    """Where the authority at the start of ``rest`` ends: its first "/", "?" or "#"."""
    end = len(rest)
    for stop in "/?#":
        found = rest.find(stop, 0, end)
        if found >= 0:
            end = found
    return end


def _authority_part(rest: str) -> str:
    return rest[: authority_end(rest)]


def parse_authority(authority: str, scheme: str) -> tuple[str, str]:
    """The canonical host and port ("" for the scheme's default) of ``host[:port]``."""
    if not authority:
        raise InvalidPathError("no host")
    if "@" in authority:
        raise InvalidPathError("credentials in URL")
    if authority.startswith("["):
        # IPv6 literals: no CDN domain is one, and supporting them would complicate the
        # port split and the domain count of a batch for nothing.
        raise InvalidPathError("invalid host")
    if ":" in authority:
        host, _, port_text = authority.rpartition(":")
        port = _parse_port(port_text, scheme)
    else:
        host, port = authority, ""
    if "*" in host:
        raise InvalidPathError("wildcard host")
    host = canonical_host(host)
    return host, port


def _parse_port(port_text: str, scheme: str) -> str:
    """The port as canonical digits, or "" when it is empty or the scheme's default."""
    if not port_text:
        return ""
    if not (port_text.isascii() and port_text.isdigit()):
        raise InvalidPathError("invalid port")
    port = int(port_text)
    if not 0 < port <= 65535:
        raise InvalidPathError("invalid port")
    return "" if port == _DEFAULT_PORTS[scheme] else str(port)


def canonical_host(host: str) -> str:
    """Lowercase ASCII (punycode) host without its trailing dot, or InvalidPathError."""
    if host.endswith("."):
        host = host[:-1]
    if not host:
        raise InvalidPathError("no host")
    if host.isascii():
        host = host.lower()
    else:
        try:
            # Non-transitional, the package's default: "ß", final "ς" and the joiners stay.
            # STD3 rules off, so that "*" and "_" reach the checks below with their reasons.
            host = idna.uts46_remap(host, std3_rules=False)
        except UnicodeError:
            raise InvalidPathError("invalid host") from None
        # The mapping turns ideographic full stops into "." and may leave a trailing one.
        if host.endswith("."):
            host = host[:-1]
        # It also turns a full-width asterisk into "*".
        if "*" in host:
            raise InvalidPathError("wildcard host")
        try:
            # ASCII labels as in an ASCII host (browsers skip the hyphen checks too); the
            # rest validated (CONTEXTJ for ZWJ/ZWNJ, bidi) and punycoded.
            host = ".".join(
                label if label.isascii() else idna.alabel(label).decode("ascii")
                for label in host.split(".")
            )
        except UnicodeError:
            raise InvalidPathError("invalid host") from None
    if len(host) > MAX_HOST_LENGTH or not _HOST.fullmatch(host):
        raise InvalidPathError("invalid host")
    for label in host.split("."):
        if not label or len(label) > MAX_LABEL_LENGTH or label[0] == "-" or label[-1] == "-":
            raise InvalidPathError("invalid host")
    return host


def check_allowed(host: str, allowed_domains: Collection[str]) -> None:
    """Refuse ``host`` unless an entry of ``allowed_domains`` (if any) matches it."""
    if not allowed_domains or host in allowed_domains:
        return
    # "*.example.com" matches "a.example.com" and "a.b.example.com": probe each parent.
    dot = host.find(".")
    while dot >= 0:
        if "*" + host[dot:] in allowed_domains:
            return
        dot = host.find(".", dot + 1)
    raise InvalidPathError(f"domain {host} not allowed")


def _shorten(name: str) -> str:
    """A scheme short enough for a reason string (a hostile one may be thousands long)."""
    if len(name) <= _MAX_SCHEME_IN_REASON:
        return name
    return name[:_MAX_SCHEME_IN_REASON] + "..."
