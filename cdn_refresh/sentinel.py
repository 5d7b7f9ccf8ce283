"""``redis+sentinel://`` URLs: Redis behind Sentinel, for the store and Celery's broker alike
(docs/operations.md "High availability").

``redis+sentinel://[[user]:password@]host:port[,host2:port...]/<master>[/<db>]
[?sentinel_password=...]``: the Sentinels to ask, the name they know the primary by, the
database. The password is the data nodes'; Sentinels that want one of their own get
``sentinel_password``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

SCHEME = "redis+sentinel"
DEFAULT_PORT = 26379
MAX_PORT = 65535


@dataclass(frozen=True, slots=True)
class SentinelUrl:
    """What a ``redis+sentinel://`` URL names."""

    hosts: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)


def is_sentinel_url(url: str) -> bool:
    """Whether ``url`` names Redis behind Sentinel."""
    return url.lower().startswith(SCHEME + "://")


def parse_sentinel_url(url: str) -> SentinelUrl:
    """The parts of a ``redis+sentinel://`` URL; ValueError (naming no secret) if malformed."""
    parts = urlsplit(url)
    if parts.scheme.lower() != SCHEME:
        raise ValueError(f"not a {SCHEME}:// URL")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    hosts = tuple(_host_port(h) for h in hostlist.split(",") if h)
    if not hosts:
        raise ValueError("a redis+sentinel:// URL names at least one host:port")
    segments = [s for s in parts.path.split("/") if s]
    if not segments or len(segments) > 2:
        raise ValueError("the path must be /<master name>[/<db>]")
    if len(segments) == 2 and not segments[1].isdigit():
        raise ValueError("the database must be a number")
    # Percent-decoding alone: parse_qs would read a "+" in a password as a space.
    query: dict[str, str] = {}
    for pair in parts.query.split("&"):
        name, _, value = pair.partition("=")
        if name:
            query[unquote(name)] = unquote(value)
    return SentinelUrl(
        hosts=hosts,
        master=unquote(segments[0]),
        db=int(segments[1]) if len(segments) == 2 else 0,
        username=unquote(user) or None,
        password=unquote(password) or None,
        sentinel_password=query.get("sentinel_password") or None,
    )


def _host_port(text: str) -> tuple[str, int]:
    if text.startswith("["):  # [IPv6]:port
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    if not host:
        raise ValueError("a Sentinel host is empty")
    if port and not (port.isdigit() and 0 < int(port) <= MAX_PORT):
        raise ValueError(f"a Sentinel port must be a number from 1 to {MAX_PORT}")
    return host, int(port) if port else DEFAULT_PORT
