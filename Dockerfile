# syntax=docker/dockerfile:1
# cdn-refresh: one image for the Celery worker, the beat scheduler, the CLI and the emulator.
#
#   docker build -t cdn-refresh .
#   docker run --rm --env-file .env cdn-refresh                        # a worker (the default)
#   docker run --rm --env-file .env cdn-refresh celery -A worker beat --loglevel INFO
#   docker run --rm --env-file .env cdn-refresh cdn-refresh quota
#
# Settings come from CDN_REFRESH_* environment variables (see .env.example); no .env file is
# baked into the image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# Exact versions with hashes from the runtime lock (the same resolution as the tests' lock),
# then the project itself, without resolving anything more, into site-packages from a view of
# the build context: no source tree, build directory or pip cache is left in any layer.
RUN --mount=type=bind,source=.,target=/src,rw \
    pip install --no-cache-dir --require-hashes -r /src/requirements/runtime.lock \
    && pip install --no-cache-dir --no-deps --no-build-isolation /src \
    && useradd --system --create-home --uid 10001 --user-group --shell /usr/sbin/nologin app \
    && mkdir -p /app \
    && chown app:app /app

WORKDIR /app
USER app

# `celery -A worker` finds the installed package `worker` (its app is in worker.celery).
# Celery stops warmly on SIGTERM: running tasks finish, unstarted ones go back to the queue.
STOPSIGNAL SIGTERM
CMD ["celery", "-A", "worker", "worker", "--loglevel", "INFO"]
