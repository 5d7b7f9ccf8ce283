"""The sandbox: everything that runs the system on one machine, for people rather than users.

- :mod:`sandbox.demo`: ``cdn-refresh demo``, the whole pipeline on embedded defaults.
- :mod:`sandbox.local`: local processes (Redis, workers, the API) for the demo, tests and bench.

An edge like ``api`` and ``emulator``: it starts and watches the other packages, and nothing
below imports it.
"""
