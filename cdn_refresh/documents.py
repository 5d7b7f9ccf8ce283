"""The JSON documents the CLI's ``--json`` and the HTTP API both answer, each built by one
function, so that the two can never drift apart.

``enqueue``, ``status`` and ``lookup`` are their records' own ``to_dict()``
(:class:`producer.receipts.Receipt`, :class:`cdn_refresh.store.records.JobStatus`,
:class:`cdn_refresh.store.records.PathLookup`); ``quota`` spans several reads, built here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cdn_refresh.constants import OBJECT_TYPES

if TYPE_CHECKING:
    from cdn_refresh.store import Store


def quota_document(store: Store) -> dict[str, Any]:
    """``quota --json``: ``{"file": {"limit", "used", "remaining", "pending", "cooling",
    "provider": {"remaining", "limit", "checked_at"} | null}, "directory": {...}, ...}``, a
    section per operation of the table: our own count of the rolling window, and the
    provider's."""
    data: dict[str, Any] = {}
    for kind in OBJECT_TYPES:
        usage = store.quota.usage(kind)
        data[kind.label] = {
            "limit": usage.limit,
            "used": usage.used,
            "remaining": usage.remaining,
            "pending": store.quota.pending_count(kind),
            "cooling": store.quota.cooling_count(kind),
            # The provider's own count, as DescribeRefreshQuota last said (None: not read).
            "provider": provider.to_dict() if (provider := store.quota.provider(kind)) else None,
        }
    return data
