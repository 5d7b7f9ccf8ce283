"""The worker: Celery tasks that pack pending paths into calls, within the quota.

``celery -A worker worker`` finds the app in :mod:`worker.celery`. Importing this package
builds nothing; the app and its settings are made there, at the composition root.
"""
