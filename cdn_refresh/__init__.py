"""Code shared by the producer, the worker and the emulator.

Kept small on purpose: settings, the path model, the Redis key layout, the provider's
constants and the RPC request signature. Nothing here imports ``producer``, ``worker`` or
``emulator``; the command line in :mod:`cdn_refresh.cli` reaches them lazily.
"""

__version__ = "0.1.0"
