"""The path model: one canonical spelling per refreshable object.

The producer calls :func:`normalize_path` on every input path and records the ones it refuses,
with a short, stable reason (:class:`InvalidPathError`). A normalized path's host is what
the claim script counts against the provider's "at most 10 domains per call" rule.

Rules, applied to the raw input first and then to the result:

* Raw input longer than ``4 * MAX_PATH_LENGTH`` is refused before any parsing.
* Any control character (Unicode category Cc: ``\\r``, ``\\n``, ``\\0``, ``\\t``, DEL, C1,
  including U+0085), U+2028, U+2029 and lone surrogates are refused anywhere in the input:
  ``ObjectPath`` is newline-separated, so a newline inside a path would smuggle in a second one.
* Surrounding plain spaces (U+0020) are stripped, nothing else; an empty result is refused.
* No scheme means ``http``; ``//host/...`` means ``http``; ``http`` and ``https`` in any case
  are accepted; any other scheme is refused. ``host:port/...`` without a scheme is a host;
  ``name:`` without ``//`` is a scheme (refused) unless digits of a port follow or ``name``
  has a dot: ``https:/x`` is "no host", never a host named ``https``.
* Host: required; user info refused; IPv6 literals refused; ``*`` refused; lowercased; one
  trailing dot removed; Unicode converted to punycode by UTS #46 non-transitional processing
  (the ``idna`` package), as browsers and the provider resolve it: ``faß`` is ``xn--fa-hia``,
  not IDNA 2003's ``fass``; then only ``a-z 0-9 - .`` with DNS label lengths are accepted.
* Port: digits in 1..65535; the scheme's default port is dropped; an empty port is the default.
* Fragment dropped; empty path becomes ``/``; an empty query (a bare ``?``) is dropped; a query
  is otherwise kept. In path and query, spaces and non-ASCII become UTF-8 ``%XX``; existing
  ``%XX`` escapes are kept, their hex uppercased; nothing is decoded (the CDN may key on it).
* Dot segments (``.`` and ``..``, also spelled ``%2E``) are removed from the path as RFC 3986
  §5.2.4 says, as browsers and the CDN resolve them before they look up a cached object:
  ``/x/../secret.png`` is ``/secret.png``, and must never read as lying under ``/x/``.
* A path whose operation names a prefix (``Directory``) must end with ``/`` and have no
  query; one whose operation ignores the query (``IgnoreParams``) has its query dropped, so
  every ``?v=`` spelling of one URL is one path.
* A ``Regex`` path is a host, then a regular expression kept as written: its own rules are in
  :mod:`cdn_refresh.patterns`.
* The result is at most ``MAX_PATH_LENGTH`` characters of printable ASCII, shaped
  ``scheme://host[:port]/path[?query]``.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from urllib.parse import quote

from cdn_refresh.constants import MAX_PATH_LENGTH, ObjectType
from cdn_refresh.hosts import (
    MAX_HOST_LENGTH,
    MAX_LABEL_LENGTH,
    InvalidPathError,
    authority_end,
    check_allowed,
    parse_authority,
    split_scheme,
)
from cdn_refresh.operations import OPERATIONS, Operation
from cdn_refresh.patterns import normalize_pattern

__all__ = [
    "InvalidPathError",
    "OverlongInput",
    "domain_of",
    "normalize_path",
    "remove_dot_segments",
    "shown_path",
]

# A cheap guard so that a hostile multi-megabyte line costs nothing to refuse.
MAX_RAW_LENGTH = 4 * MAX_PATH_LENGTH

# Cc is exactly U+0000-U+001F and U+007F-U+009F (U+0085 NEL among them). U+2028/U+2029 are
# line breaks for str.splitlines() and many parsers. Lone surrogates cannot be UTF-8 encoded.
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_ESCAPE = re.compile("%([0-9a-fA-F]{2})")
# Everything printable in ASCII but the space: quote() leaves these alone, so existing escapes
# and reserved characters survive while spaces and non-ASCII are encoded.
_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))
# A rejection shows this much of its input: enough to find the line, never megabytes.
SHOWN_PATH_CHARS = 100
# The common case, already canonical: "http[s]://host/path[?query]" or "host/path" (http) in
# printable ASCII without space, "#" or "%", with a lower-case host and no port. The general
# rules give such input back unchanged (or behind "http://"): it skips them. Anything else,
# valid or not, takes the general path. The host's label rules are checked after the match.
_CANONICAL = re.compile(r"(?:(https?)://)?([a-z0-9](?:[a-z0-9.\-]*[a-z0-9])?)/[!\"$&-~]*")


class OverlongInput(str):
    """The start of an input too long to hold whole (a line read in bounded memory), and the
    length in characters of the whole input.

    The start is longer than ``MAX_RAW_LENGTH``, so :func:`normalize_path` refuses it as too
    long, as it would the whole; :func:`shown_path` reports ``length``, not the start's.
    """

    length: int

    def __new__(cls, start: str, length: int) -> OverlongInput:
        if len(start) <= MAX_RAW_LENGTH:
            # Shorter, it might be valid, and a cut-off input must never be enqueued.
            raise ValueError(f"the start of an over-long input needs > {MAX_RAW_LENGTH} chars")
        self = super().__new__(cls, start)
        self.length = length
        return self


def shown_path(raw: str) -> str:
    """``raw`` as a rejection shows it: whole when short, else its first ``SHOWN_PATH_CHARS``
    characters, ``...`` and its length, e.g. ``https://x.com/aaa... (104857600 characters)``.
    """
    length = raw.length if isinstance(raw, OverlongInput) else len(raw)
    if length <= SHOWN_PATH_CHARS:
        return str(raw)
    return f"{raw[:SHOWN_PATH_CHARS]}... ({length} characters)"


def domain_of(path: str) -> str:
    """The domain of a normalized path: its host, without a port. The provider's limit of
    domains per call counts hosts, so ``plan`` counts them so too, as the claim script does
    when it packs a call (``https://a.com:8443/x`` and ``https://a.com/y`` are one domain)."""
    return path.split("/", 3)[2].partition(":")[0]


def normalize_path(raw: str, object_type: ObjectType, allowed_domains: Collection[str] = ()) -> str:
    """Validate one input path and return its canonical form, or raise InvalidPathError.

    ``allowed_domains`` holds lowercase entries: ``example.com`` allows exactly that host,
    ``*.example.com`` any subdomain of it (not ``example.com`` itself); empty allows any host.
    Pass a set or frozenset: it is probed a few times per call.
    """
    op = OPERATIONS.get(object_type)
    if op is None:
        # A caller's bug, not a bad path: it must not be recorded as the path's fault.
        raise ValueError(f"unknown object type {object_type!r}")
    if len(raw) <= MAX_PATH_LENGTH:
        # A regular expression is never a canonical URL: "?" and "/." are its syntax.
        canonical = None if op.pattern_path else _CANONICAL.fullmatch(raw)
        if canonical is not None:
            fast = _fast_result(raw, canonical, op, allowed_domains)
            if fast is not None:
                return fast
    elif len(raw) > MAX_RAW_LENGTH:
        raise InvalidPathError(f"longer than {MAX_PATH_LENGTH} characters")
    # Fast path: printable ASCII holds no control character at all.
    if not (raw.isascii() and raw.isprintable()):
        bad = _FORBIDDEN.search(raw)
        if bad is not None:
            code = ord(bad.group())
            kind = "invalid character" if 0xD800 <= code <= 0xDFFF else "control character"
            raise InvalidPathError(f"{kind} U+{code:04X}")
    text = raw.strip(" ")
    if not text:
        raise InvalidPathError("empty")
    if op.pattern_path:
        return normalize_pattern(text, allowed_domains)
    result = _normalize_url(text, op, allowed_domains)
    if len(result) > MAX_PATH_LENGTH:
        raise InvalidPathError(f"longer than {MAX_PATH_LENGTH} characters")
    # Belt and braces for the security rule: the pieces above can only produce printable
    # ASCII, and this keeps it so whatever a later edit does.
    if not (result.isascii() and result.isprintable()):
        raise InvalidPathError("invalid character")
    return result


def _normalize_url(text: str, op: Operation, allowed_domains: Collection[str]) -> str:
    """The canonical URL of ``text`` (free of control characters and surrounding spaces)."""
    scheme, rest = split_scheme(text)
    end = authority_end(rest)
    host, port = parse_authority(rest[:end], scheme)
    check_allowed(host, allowed_domains)

    tail = rest[end:]
    fragment = tail.find("#")
    if fragment >= 0:
        tail = tail[:fragment]
    path, _, query = tail.partition("?")
    path = remove_dot_segments(_encode(path) or "/")
    query = "" if op.query_ignored else _encode(query)

    if op.prefix_path:
        if not path.endswith("/"):
            raise InvalidPathError(f"{op.label} path must end with /")
        if query:
            raise InvalidPathError(f"{op.label} path must not have a query")

    authority = f"{host}:{port}" if port else host
    return f"{scheme}://{authority}{path}?{query}" if query else f"{scheme}://{authority}{path}"


def _fast_result(
    raw: str, canonical: re.Match[str], op: Operation, allowed: Collection[str]
) -> str | None:
    """``raw``'s canonical form when the general rules would return it unchanged, else None."""
    host = canonical.group(2)
    # Empty labels and labels that start or end with "-" are for the general path to refuse.
    if ".." in host or "-." in host or ".-" in host:
        return None
    if len(host) > MAX_LABEL_LENGTH and (
        len(host) > MAX_HOST_LENGTH or max(map(len, host.split("."))) > MAX_LABEL_LENGTH
    ):
        return None
    # A bare "?" at the end is an empty query, dropped; a Directory needs "/" at the end and
    # no query: leave both, and over-long results, to the general path and its reasons.
    if raw[-1] == "?":
        return None
    # A possible dot segment ("/." starts every one): the general path removes them.
    if "/." in raw.partition("?")[0]:
        return None
    if op.prefix_path and (raw[-1] != "/" or "?" in raw):
        return None
    # A query the operation ignores is dropped: the general path drops it.
    if op.query_ignored and "?" in raw:
        return None
    result = raw if canonical.group(1) else "http://" + raw
    if len(result) > MAX_PATH_LENGTH:
        return None
    check_allowed(host, allowed)
    return result


def _encode(part: str) -> str:
    """Percent-encode spaces and non-ASCII as UTF-8; uppercase existing escapes' hex."""
    if "%" in part:
        part = _ESCAPE.sub(_upper_escape, part)
    if part.isascii() and " " not in part:
        return part
    return quote(part, safe=_SAFE, encoding="utf-8", errors="strict")


def remove_dot_segments(path: str) -> str:
    """``path`` (absolute, escapes' hex uppercased) without its dot segments, RFC 3986 §5.2.4.

    A segment that is ``.`` or ``..`` once ``%2E`` is read as ``.`` is a dot segment: the
    escape is an unreserved character (§2.3), so ``/x/%2E%2E/y`` names ``/y`` as much as
    ``/x/../y`` does. A dot segment at the end leaves the path ending in ``/`` (``/a/..`` is
    ``/``), and ``..`` never climbs above the root.
    """
    if "/." not in path and "/%2E" not in path:
        return path
    segments = path.split("/")[1:]
    kept: list[str] = []
    last = len(segments) - 1
    for index, segment in enumerate(segments):
        dots = segment.replace("%2E", ".")
        if dots == "..":
            if kept:
                kept.pop()
        elif dots != ".":
            kept.append(segment)
            continue
        if index == last:
            kept.append("")
    return "/" + "/".join(kept)


def _upper_escape(match: re.Match[str]) -> str:
    return "%" + match.group(1).upper()
