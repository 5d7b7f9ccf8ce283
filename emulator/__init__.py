"""A loopback HTTP emulator of Alibaba Cloud CDN (RPC API 2018-05-10) for tests and benches.

Modules: :mod:`~emulator.config` (settings), :mod:`~emulator.auth` (signature checks),
:mod:`~emulator.paths` (ObjectPath rules), :mod:`~emulator.quota` (the daily counters),
:mod:`~emulator.operations` (what each refresh type, tag refresh and preload is, as rows),
:mod:`~emulator.actions` (one function per action), :mod:`~emulator.ledger` (what the account
keeps: quota use, tasks, calls), :mod:`~emulator.refreshed` (what a refresh reached),
:mod:`~emulator.faults` (seeded fault draws), :mod:`~emulator.tasks` (tasks and their queries),
:mod:`~emulator.ratelimit` (per-action call limits), :mod:`~emulator.provider` (request
handling, no sockets), :mod:`~emulator.state` (the same behind a lock),
:mod:`~emulator.server` (HTTP) and :mod:`~emulator.cli` (the ``emulator`` command).
"""

from emulator.config import EmulatorConfig
from emulator.provider import Outcome, Provider
from emulator.server import EmulatorServer, serve
from emulator.state import EmulatorState

__all__ = ["EmulatorConfig", "EmulatorServer", "EmulatorState", "Outcome", "Provider", "serve"]
