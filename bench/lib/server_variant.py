"""Run ``dockyard server`` with a process-level tweak, to measure an optimisation before making it.

    python bench/lib/server_variant.py [--uvloop] [--switch-interval S] [--gc-threshold N] [--no-gc] \\
        -- server --port ... --data-dir ...

--switch-interval  sys.setswitchinterval() (CPython's default is 0.005 s). Threads that
                   release the GIL for every SQLite call (the store's writer thread) wait up to
                   this long to get it back while the event loop thread is busy.
--uvloop           run the server's asyncio loop on uvloop instead of the stdlib loop
                   (granian's own worker mode picks uvloop when it is installed).
"""

from __future__ import annotations

import argparse
import asyncio
import sys


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--switch-interval", type=float)
    p.add_argument("--uvloop", action="store_true")
    p.add_argument("--gc-threshold", type=int,
                   help="gc.set_threshold(N, 10, 10) (CPython default: 700 / 2000)")
    p.add_argument("--no-gc", action="store_true", help="gc.disable(): experiments only, memory grows")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    a = p.parse_args()
    rest = a.rest[1:] if a.rest[:1] == ["--"] else a.rest
    if a.switch_interval:
        sys.setswitchinterval(a.switch_interval)
    if a.gc_threshold:
        import gc

        gc.set_threshold(a.gc_threshold, 10, 10)
    if a.no_gc:
        import gc

        gc.disable()
    if a.uvloop:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    from dockyard.cli.main import main as dockyard_main

    return dockyard_main(rest)


if __name__ == "__main__":
    sys.exit(main())
