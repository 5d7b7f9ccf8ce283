"""One 1,000-path ``RefreshObjectCaches`` call, alone: ``python -m bench.client_call``.

The client's own CPU per call (build, sign, encode, send, parse), over ``httpx.MockTransport``
so that no network or server is measured: the handler answers a fixed JSON body. Printed
signed (``CdnClient``) and unsigned (a bare ``httpx.Client`` posting the same form), best of
several rounds.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import httpx

from bench.data import unique_paths
from bench.infra import make_settings
from cdn_refresh.constants import URLS_PER_CALL
from worker.client import CdnClient

ANSWER = {"RefreshTaskId": "704222904", "RequestId": "D61E4801-EAFF-4A63-AAE1-FBF6CE1CFD1C"}


def _handler(request: httpx.Request) -> httpx.Response:
    request.read()
    return httpx.Response(200, json=ANSWER)


def _best_ms(call: Callable[[], object], calls: int, rounds: int) -> float:
    call()  # warm up
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter() - started) / calls)
    return best * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.client_call", description=__doc__)
    parser.add_argument("--paths", type=int, default=URLS_PER_CALL)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    paths = unique_paths(args.paths)
    settings = make_settings(
        {"endpoint": "http://cdn.test", "access_key_id": "testid", "access_key_secret": "s"}
    )
    transport = httpx.MockTransport(_handler)
    body = {"Action": "RefreshObjectCaches", "ObjectPath": "\n".join(paths), "ObjectType": "File"}
    with (
        CdnClient(settings.provider, transport=transport) as client,
        httpx.Client(base_url="http://cdn.test", transport=transport) as bare,
    ):
        signed = _best_ms(lambda: client.refresh_object_caches(paths), args.calls, args.rounds)
        unsigned = _best_ms(lambda: bare.post("/", data=body).json(), args.calls, args.rounds)
    size = len("\n".join(paths))
    print(f"{args.paths:,} paths ({size:,} characters of ObjectPath), best of {args.rounds}:")
    print(f"  signed   CdnClient.refresh_object_caches  {signed:6.2f} ms per call")
    print(f"  unsigned httpx post of the same form      {unsigned:6.2f} ms per call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
