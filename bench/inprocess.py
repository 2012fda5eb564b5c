#!/usr/bin/env python
"""What Dockyard's own code costs per request, without the HTTP server: ``App.http`` in a loop.

    .venv/bin/python bench/inprocess.py                      # every read of the mix
    .venv/bin/python bench/inprocess.py --profile DescribeTaskDefinition

The same signed requests as bench/api_mix.py (captured from botocore) go straight
into ``App.http(method, path, query, headers, body)`` on an event loop, against a
store with the api_mix fixtures (optionally the big store). Everything but the
HTTP server runs: SigV4 check, JSON parse, validation, the store read, the
response. Reads only: a durable write's time is its fsync, which api_mix measures.
Prints the best of ``--repeat`` timings (µs per request), which is steady even on
a busy machine; ``--profile OP`` adds cProfile's top functions for one operation.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from api_mix import preload, setup_dockyard  # noqa: E402
from lib import calls  # noqa: E402
from lib.calls import OPS, READS  # noqa: E402
from lib.capture import Capturer  # noqa: E402
from lib.targets import DockyardTarget  # noqa: E402


def _best(fn: Any, n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n * 1e6)
    return best


def _stages(app: Any, op: str, headers: Any, body: bytes) -> dict[str, Any]:
    """Each stage of a read alone, on the same request (what App.http chains together)."""
    import orjson

    from dockyard.services.context import Ctx

    proto = next(iter(app.by_prefix.values()))
    verify = app.verifier.verify
    ident = verify("POST", "/", "", headers, body, proto.signing_name)
    req = orjson.loads(body)
    fn = proto.registry.operations[op]
    ctx = Ctx(ident.account_id, ident.region, ident.principal_arn, "rid", time.time(), ident.access_key_id)
    constrain = proto.constraints.get(op) or (lambda r: None)
    return {
        "request id": app.request_ids.next,
        "sigv4": lambda: verify("POST", "/", "", headers, body, proto.signing_name),
        "parse": lambda: orjson.loads(body),
        "validate": lambda: proto.validator.check(op, req),
        "constraints": lambda: constrain(req),
        "operation (store read)": lambda: app.store.read(fn.fn, ctx, req, snapshot=fn.snapshot),
    }


async def run(data_dir: Path, key: str, secret: str, endpoint: str, ops: list[str], n: int, repeat: int,
              profile: str | None, stages: bool = False) -> None:
    from dockyard.api.server import build_app
    from dockyard.api.sigv4 import DictHeaders
    from dockyard.state.store import Store

    store = Store(f"sqlite:///{data_dir}/dockyard.db")
    store.start(asyncio.get_running_loop())
    app = build_app(store)
    cap = Capturer(endpoint, key, secret)
    try:
        print(f"{'operation':<24} {'µs/request (best of ' + str(repeat) + ')':>26} {'response bytes':>15}")
        for op in ops:
            tpl = cap.capture(op, OPS[op].method, OPS[op].params)
            headers = DictHeaders(dict(tpl.headers))
            status, _, out = await app.http("POST", "/", "", headers, tpl.body)
            if status != 200:
                print(f"{op:<24} answered {status}: {out[:200]!r}")
                continue
            for _ in range(min(n, 500)):
                await app.http("POST", "/", "", headers, tpl.body)
            best = float("inf")
            for _ in range(repeat):
                t0 = time.perf_counter()
                for _ in range(n):
                    await app.http("POST", "/", "", headers, tpl.body)
                best = min(best, (time.perf_counter() - t0) / n * 1e6)
            print(f"{op:<24} {best:26.1f} {len(out):15d}")
            if stages:
                for stage, fn in _stages(app, op, headers, tpl.body).items():
                    print(f"  {stage:<22} {_best(fn, n, repeat):26.1f}")
            if op == profile:
                pr = cProfile.Profile()
                pr.enable()
                for _ in range(n):
                    await app.http("POST", "/", "", headers, tpl.body)
                pr.disable()
                s = io.StringIO()
                pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(20)
                print(s.getvalue())
    finally:
        store.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ops", default=",".join(READS), help="comma-separated read operations")
    ap.add_argument("-n", type=int, default=5000, help="requests per timing")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--big", action="store_true", help="with 1,000 services and 10,000 tasks stored")
    ap.add_argument("--stages", action="store_true", help="also time each stage of each operation alone")
    ap.add_argument("--profile", metavar="OP", help="cProfile one operation (tottime, top 20)")
    a = ap.parse_args()
    ops = a.ops.split(",")
    if a.profile and a.profile not in ops:
        ops.append(a.profile)
    with tempfile.TemporaryDirectory(prefix="dockyard-inproc-") as tmp:
        # fixtures through a real server (as api_mix makes them), then the server stops and
        # this process opens the same store
        t = DockyardTarget("dockyard", Path(tmp) / "dy").start()
        try:
            setup_dockyard(t, 1, calls.SETUP_TASKS)
            if a.big:
                preload(t, 1000, 10000)
        finally:
            t.stop()
        asyncio.run(run(t.data_dir, t.key, t.secret, t.endpoint, ops, a.n, a.repeat, a.profile, a.stages))
    return 0


if __name__ == "__main__":
    sys.exit(main())
