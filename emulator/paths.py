"""Splitting and checking ``ObjectPath`` the way the provider does.

A path is ``[http://|https://]host[:port][/rest]``. The provider compares domains without case
and refuses wildcard hosts outright, before it looks them up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from emulator.errors import ApiError, missing_parameter

# Letters, digits, dots and hyphens, then an optional port; ``*`` is let through here so that a
# wildcard gets its own error code rather than "malformed".
_HOST = re.compile(r"^[a-z0-9*]([a-z0-9.*-]*[a-z0-9*])?(:[0-9]{1,5})?$")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


@dataclass(frozen=True)
class ObjectPath:
    """One checked path: the text as sent and its lower-case domain (no port)."""

    text: str
    domain: str


def split_paths(raw: str) -> list[str]:
    """``ObjectPath`` split on ``\\n`` or ``\\r\\n``; an empty value is a missing parameter."""
    if raw == "":
        raise missing_parameter("ObjectPath")
    return raw.replace("\r\n", "\n").split("\n")


def malformed(path: str, why: str) -> ApiError:
    """400 ``InvalidObjectPath.Malformed`` naming the first bad path."""
    return ApiError(
        400, "InvalidObjectPath.Malformed", f"The specified ObjectPath {path!r} is invalid: {why}."
    )


def check_path(path: str, *, directory: bool, max_length: int) -> ObjectPath:
    """Parse one path; raise :class:`ApiError` for a malformed or wildcard one."""
    if path.strip() == "":
        raise malformed(path, "empty line")
    if len(path) > max_length:
        raise malformed(path[:64] + "...", f"longer than {max_length} characters")
    # A raw space (U+0020) inside a path is accepted. PROVIDER.md names line breaks as the only
    # separators ("paths separated by \n (or \r\n)", and a path holding \r or \n "would be
    # split by the provider into two paths") and sets no other character rule, and the official
    # SDK (alibabacloud-cdn20180510) sends `a b` as it is (form-encoded `a%20b`, decoded here to
    # a space): refusing it would make the emulator stricter than the provider it stands for.
    # Our own client still percent-encodes spaces, which stays the unambiguous form.
    # Still refused, where the provider's handling is unknown: control characters (a tab, a
    # stray \r), other whitespace (no-break space, ideographic space: invisible, so most likely
    # a copy-paste slip) and a space at either end (trimmed or kept? not documented).
    if any(_refused_char(ch) for ch in path):
        raise malformed(path, "holds a control character or whitespace other than a space")
    if path != path.strip(" "):
        raise malformed(path, "starts or ends with a space")
    rest = path
    scheme = _SCHEME.match(rest)
    if scheme:
        if scheme.group(0).lower() not in ("http://", "https://"):
            raise malformed(path, "only http:// and https:// are accepted")
        rest = rest[scheme.end() :]
    host, _, _ = rest.partition("/")
    host = host.lower()
    if not host:
        raise malformed(path, "no host")
    if not _HOST.match(host):
        raise malformed(path, "bad host")
    domain = host.rsplit(":", 1)[0] if ":" in host else host
    if "*" in domain:
        raise ApiError(
            400,
            "InvalidExtensiveDomain.ValueNotSupported",
            f"Wildcard domain {domain!r} in {path!r} is not supported.",
        )
    if directory and not path.endswith("/"):
        raise malformed(path, "a directory must end with '/'")
    return ObjectPath(text=path, domain=domain)


def _refused_char(ch: str) -> bool:
    return ch != " " and (ch.isspace() or ord(ch) < 32 or ord(ch) == 127)


def served_as(path: str) -> str:
    """The object a refresh of ``path`` reaches: its path without dot segments, as the CDN
    (like any HTTP server, RFC 3986 §5.2.4) resolves them before it looks up a cached object.
    ``http://a.com/x/../s.png`` is ``http://a.com/s.png``, which lies under no ``/x/``.

    Written as the RFC's input/output buffer loop, not as our producer's segment stack, so that
    the two cross-check each other. ``%2E`` (any case) is a dot.
    """
    scheme = _SCHEME.match(path)
    start = path.find("/", scheme.end() if scheme else 0)
    if start < 0:
        return path
    body, mark, query = path[start:].partition("?")
    source = re.sub("%2e", ".", body, flags=re.IGNORECASE)
    if "/." not in source:
        return path[:start] + source + mark + query
    out: list[str] = []
    while source:
        if source.startswith(("/./", "/../")) or source in ("/.", "/.."):
            dots = source[1:].partition("/")[0]
            source = "/" + source[1 + len(dots) + 1 :]
            if dots == ".." and out:
                out.pop()
            continue
        end = source.find("/", 1)
        end = len(source) if end < 0 else end
        out.append(source[:end])
        source = source[end:]
    return path[:start] + "".join(out) + mark + query


def distinct_domains(paths: list[ObjectPath]) -> list[str]:
    """The domains of ``paths`` in order of first appearance."""
    return list(dict.fromkeys(p.domain for p in paths))
