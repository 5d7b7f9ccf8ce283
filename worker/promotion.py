"""Promotion (``CDN_REFRESH_PROMOTE=auto``): when the pending Files cannot all go within what
is left of the File window, send Directories that cover many of them instead.

The choice is :func:`cdn_refresh.planning.plan_promotions`; the chosen Directories are
enqueued as bulk work (so the claim keeps the interactive reserve of the Directory quota),
and the coverage scripts settle the Files under them. Interactive Files never wait for a
promoted (bulk) Directory: the File claim sends them as usual.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from cdn_refresh.constants import PROMOTE_INTERVAL_S, Promotion
from cdn_refresh.operations import coverage
from cdn_refresh.planning import Promotion as Promoted
from cdn_refresh.planning import plan_promotions
from cdn_refresh.settings import Settings
from cdn_refresh.store import Store

log = logging.getLogger("cdn_refresh.worker")

# Most pending Files one plan reads (a bound on the worker's time and memory per plan).
PROMOTE_SCAN_LIMIT = 500_000


class Promoter:
    """Plans and enqueues promotions; at most one worker of the deployment per interval."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        on_promoted: Callable[[], object] | None = None,
        interval_s: float = PROMOTE_INTERVAL_S,
    ) -> None:
        self._store = store
        self._settings = settings
        self._on_promoted = on_promoted
        self._interval_s = interval_s
        # Promotion sends a covering path (a Directory) for many covered ones (Files).
        self._pair = coverage()

    def file_room(self, now: float | None = None) -> int | None:
        """How many more Files the window takes now, or None when every pending File fits
        (nothing to promote)."""
        files = self._store.quota.pending_count(self._pair.covered)
        usage = self._store.quota.usage(self._pair.covered, now)
        room = max(0, usage.limit - usage.used)
        return None if files <= room else room

    def directory_budget(self, pending_dirs: int, now: float | None = None) -> int:
        """Directories promotion may add: what the window has left, less the interactive
        reserve and the Directories already waiting."""
        usage = self._store.quota.usage(self._pair.covering, now)
        reserve = math.ceil(usage.limit * self._settings.quota.interactive_reserve)
        return usage.limit - usage.used - reserve - pending_dirs

    def maybe_promote(self, now: float | None = None) -> list[Promoted]:
        """Promote when the File window is short and it is this worker's turn (``now``:
        Redis's clock unless given, as the claims have it)."""
        s = self._settings
        if s.quota.promote is not Promotion.AUTO:
            return []
        room = self.file_room(now)
        if room is None or not self._store.promotion.take_turn(self._interval_s):
            return []
        waiting_dirs = self._store.promotion.waiting_directories()
        pending_dirs = self._store.quota.pending_count(self._pair.covering)
        budget = self.directory_budget(pending_dirs, now)
        if budget <= 0:
            return []
        interactive = self._store.promotion.interactive_count(self._pair.covered)
        chosen = plan_promotions(
            self._store.promotion.pending_paths(
                self._pair.covered, bulk_only=True, limit=PROMOTE_SCAN_LIMIT
            ),
            budget=budget,
            room=max(0, room - interactive),
            min_paths=s.quota.promote_min_paths,
            min_depth=s.quota.promote_min_depth,
            allowed_domains=s.provider.allowed_domains,
            covering=waiting_dirs,
            # A Directory the provider refused would be refused again, every interval.
            refused=self._store.paths.dead_paths(self._pair.covering),
        )
        if not chosen:
            return []
        added = set(self._store.promotion.promote([p.directory for p in chosen]))
        chosen = [p for p in chosen if p.directory in added]
        for promotion in chosen:
            # One line per promotion: what it invalidates, and what it saves (a URL unit per
            # covered File, for one Directory unit).
            log.info(
                "promoted directory=%s paths_covered=%d url_units_saved=%d",
                promotion.directory,
                promotion.paths,
                promotion.paths,
            )
        if chosen and self._on_promoted is not None:
            self._on_promoted()
        return chosen
