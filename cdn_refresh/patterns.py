"""Regex paths: a host the deployment allows, then a regular expression, as the provider's
``Regex`` refresh takes them (``https://example.com/img/.*\\.jpg``).

:func:`normalize_pattern` is what :func:`cdn_refresh.paths.normalize_path` does for an
operation whose row says ``pattern_path``. Its rules, after the ones every path has (no
control or line-break character anywhere, surrounding spaces stripped, bounded length):

* The scheme and host are a URL's (:mod:`cdn_refresh.hosts`): no scheme means ``http``,
  ``http`` and ``https`` only, the host lowercased and punycoded, the scheme's default port
  dropped, the host one of ``ALLOWED_DOMAINS`` (if set). The host is never a pattern.
* The pattern is everything from the first ``/`` after the host, kept exactly as written:
  nothing is decoded, encoded or resolved (``/./`` is a regex, not a dot segment, and ``?``
  and ``#`` are regex syntax, not a query or a fragment).
* It must be printable ASCII without spaces (the URLs it matches are percent-encoded, so is
  the pattern), and it must compile as a Python ``re`` pattern. The provider's dialect is
  its own and may differ: a pattern that compiles here may still be refused by the provider
  (dead-lettered with its error), and one it would take may be refused here.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from cdn_refresh.constants import MAX_PATH_LENGTH
from cdn_refresh.hosts import InvalidPathError, check_allowed, parse_authority, split_scheme

__all__ = ["normalize_pattern"]

# Printable ASCII without the space: what a pattern may hold.
_PATTERN_CHARS = re.compile(r"[!-~]+")
# A compile error's message is the re module's own, which may quote the pattern: keep it short.
_MAX_ERROR_CHARS = 80


def normalize_pattern(text: str, allowed_domains: Collection[str] = ()) -> str:
    """The canonical ``scheme://host[:port]/pattern`` of ``text`` (already free of control
    characters and surrounding spaces), or InvalidPathError with the reason."""
    scheme, rest = split_scheme(text)
    slash = rest.find("/")
    if slash < 0:
        raise InvalidPathError("regex path needs a host, then / and the pattern")
    host, port = parse_authority(rest[:slash], scheme)
    check_allowed(host, allowed_domains)
    pattern = rest[slash:]
    if not _PATTERN_CHARS.fullmatch(pattern):
        raise InvalidPathError("regex must be printable ASCII without spaces (percent-encode)")
    _check_compiles(pattern)
    authority = f"{host}:{port}" if port else host
    result = f"{scheme}://{authority}{pattern}"
    if len(result) > MAX_PATH_LENGTH:
        raise InvalidPathError(f"longer than {MAX_PATH_LENGTH} characters")
    return result


def _check_compiles(pattern: str) -> None:
    """InvalidPathError unless Python's ``re`` compiles ``pattern``."""
    try:
        re.compile(pattern)
    except re.error as exc:
        raise InvalidPathError(f"regex does not compile: {_short(exc.msg)}") from None
    except (OverflowError, RecursionError):
        # A repeat count too large for re, or groups nested too deep for its parser.
        raise InvalidPathError("regex does not compile: too large") from None


def _short(message: str) -> str:
    if len(message) <= _MAX_ERROR_CHARS:
        return message
    return message[:_MAX_ERROR_CHARS] + "..."
