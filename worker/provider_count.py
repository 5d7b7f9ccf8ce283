"""The provider's own count of the daily quota (``DescribeRefreshQuota``).

The console and other tools spend the same account's quota, so our rolling window can
believe 2,000 remain when 100 do. The workers read the provider's count at most every
QUOTA_SYNC_S (deployment-wide, a Redis mark) and at once after a ``QuotaExceeded``; the claim
script then never reserves more than the smaller of the two (``lua/claim.lua``).
"""

from __future__ import annotations

import logging

from cdn_refresh.constants import ObjectType
from cdn_refresh.operations import OPERATIONS, daily_quota
from cdn_refresh.settings import Settings
from cdn_refresh.store import Store
from worker.client import CdnClient, RefreshQuota
from worker.errors import CdnError

log = logging.getLogger("cdn_refresh.worker")


class ProviderCount:
    """Reads the provider's count into Redis for every claim to respect."""

    def __init__(self, store: Store, client: CdnClient, settings: Settings) -> None:
        self._store = store
        self._client = client
        self._settings = settings

    def sync(self, *, now_too: bool = False) -> RefreshQuota | None:
        """Read it when due (or at once, ``now_too``); None when not read (or
        ``QUOTA_SYNC_S`` is 0: then only our own window counts)."""
        if self._settings.quota.sync_s <= 0:
            return None
        due = self._store.quota.sync_turn(self._settings.quota.sync_s)
        if not (due or now_too):
            return None
        # Asked before the call: a reservation made after this moment is surely not in it.
        checked_at = self._store.now()
        try:
            quota = self._client.describe_refresh_quota()
        except CdnError as exc:
            log.warning("provider quota read failed code=%s: claims keep the last count", exc.code)
            return None
        for kind, op in OPERATIONS.items():
            count = quota.of(kind)
            self._store.quota.record_provider(kind, count.remain, count.quota, checked_at)
            ours = daily_quota(self._settings, kind)
            if count.quota > ours and self._store.quota.first_notice_of_limit(kind, count.quota):
                log.info(
                    "provider quota is above ours type=%s provider_limit=%d ours=%d: "
                    "raise CDN_REFRESH_%s to use it",
                    kind,
                    count.quota,
                    ours,
                    op.quota_setting,
                )
        return quota

    def remaining(self, object_type: ObjectType) -> int | None:
        """What the provider last said is left of one type."""
        known = self._store.quota.provider(object_type)
        return known.remaining if known else None
