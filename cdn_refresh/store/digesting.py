"""The upgrade to schema 3: waiters keyed by a digest of the path, and no File coverage index.

Schema 2 and before held every pending File path three times: in ``pending``, in the coverage
index ``pending_lex`` and as the field of the ``waiters`` hash. This release keys the waiters
by a 16-hex digest of the path (:func:`~cdn_refresh.store.keys.waiter_field`) and finds the
Files under a claimed Directory by a scan of their pending set, so a deployment that upgrades
holds path-keyed waiters and a File index that nothing reads any more.

A worker's start and its tick run :meth:`Digesting.pass_once`. It first sets ``digesting``:
while that key lives, the scripts read both forms of a waiters field and write the new one,
so that a job waiting under the old form still completes (a worker claims only after its
start ran a pass). Then it moves the path-keyed fields a page at a time
(``digest_waiters.lua``, atomic per page: each path's jobs are under one form or the other,
never lost, whatever point a crash stops it at; the key stays set after a crash). Once a full
pass finds none left, the File index goes (UNLINK, freed in the background), ``digested``
marks the upgrade done and ``digesting`` goes: from then on the tick asks one GET, and the
scripts read one form. A fresh deployment goes through the same in one empty pass; a producer
of this release that enqueues before any worker started reads the new form alone and writes
it beside the old, which the pass merges (a job under both counts once).
"""

from __future__ import annotations

import re
from typing import cast

from cdn_refresh.constants import OBJECT_TYPES, ObjectType
from cdn_refresh.store import scripts
from cdn_refresh.store.context import StoreContext
from cdn_refresh.store.keys import WAITER_FIELD_HEX

# Fields read per HSCAN page, moved by one script run.
DIGEST_PAGE = 1_000
_DIGEST = re.compile(f"[0-9a-f]{{{WAITER_FIELD_HEX}}}")


def is_path_field(field: str) -> bool:
    """Whether a waiters field is a path (the old form): a path holds "://", a digest never."""
    return _DIGEST.fullmatch(field) is None


class Digesting:
    """Moves path-keyed waiters to their digest and drops the Files' coverage index."""

    def __init__(self, ctx: StoreContext) -> None:
        self._ctx = ctx

    def done(self) -> bool:
        """Whether the upgrade is over (one GET: the tick asks it)."""
        return bool(self._ctx.redis.exists(self._ctx.keys.shared.digested))

    def pass_once(self) -> int:
        """Move every path-keyed waiters field, unless that was finished for good; when a full
        pass finds none, drop the File index and mark it finished. Returns how many moved."""
        if self.done():
            return 0
        self.begin()
        moved = 0
        for kind in OBJECT_TYPES:
            cursor = 0
            while True:
                cursor, found = self.step(kind, cursor)
                moved += found
                if cursor == 0:
                    break
        if moved == 0:
            self._ctx.redis.unlink(self._ctx.keys.of(ObjectType.FILE).pending_lex)
            shared = self._ctx.keys.shared
            with self._ctx.redis.pipeline(transaction=True) as pipe:
                pipe.set(shared.digested, "1")
                pipe.delete(shared.digesting)
                pipe.execute()
        return moved

    def begin(self) -> None:
        """From now on, until the upgrade is done, the scripts read both forms of waiters."""
        self._ctx.redis.set(self._ctx.keys.shared.digesting, "1")

    def step(self, kind: ObjectType, cursor: int, count: int = DIGEST_PAGE) -> tuple[int, int]:
        """One page of ``kind``'s waiters from ``cursor``: its path-keyed fields moved (after
        :meth:`begin`). Returns the next cursor (0: the scan is through) and how many moved."""
        tk = self._ctx.keys.of(kind)
        cursor, page = cast(
            tuple[int, dict[str, str]],
            self._ctx.redis.hscan(tk.waiters, cursor, count=count),
        )
        paths = [field for field in page if is_path_field(field)]
        if not paths:
            return cursor, 0
        moved = self._ctx.scripts.run(scripts.DIGEST_WAITERS, {"paths": paths}, kind)
        return cursor, int(moved)
