"""Benchmarks of cdn-refresh on loopback: enqueue, drain, latency, quota overshoot, memory.

Run with ``python -m bench`` (``make bench``); ``--quick`` for a smoke run, ``--only NAME`` for
one benchmark. Every run starts its own ``redis-server`` and emulator on loopback, measures
each speed against a floor measured in the same run, prints a table and writes
``bench/RESULTS.md``. Modules: :mod:`bench.infra` (processes), :mod:`bench.data` (paths),
one module per benchmark, :mod:`bench.report` (table and RESULTS.md).
"""
