#!/usr/bin/env python
"""Many agents on fake runtimes in one process: a simulated fleet for benchmarks.

    python bench/lib/fake_fleet.py --server URL --cluster NAME --agents 200 --image IMG

Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (an agent key). Prints
``READY <n>`` once every agent has registered and connected, then runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
from pathlib import Path

import uvloop

from dockyard.agent.drivers.fake import FakeDriver
from dockyard.agent.main import AgentConfig, RunningAgent, run_agent


async def fleet(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    root = Path(args.data_dir or tempfile.mkdtemp(prefix="dockyard-fleet-"))
    started = 0
    all_up = asyncio.Event()

    def on_start(_: RunningAgent) -> None:
        nonlocal started
        started += 1
        if started == args.agents:
            all_up.set()

    runs = []
    for i in range(args.agents):
        cfg = AgentConfig(server=args.server, cluster=args.cluster, data_dir=root / f"agent-{i}",
                          access_key=os.environ["AWS_ACCESS_KEY_ID"],
                          secret_key=os.environ["AWS_SECRET_ACCESS_KEY"], driver="fake",
                          availability_zone=f"us-east-1{'abc'[i % 3]}", pull_behavior="prefer-cached")
        driver = FakeDriver(images=[args.image], cpus=args.cpus, memory_mib=args.memory)
        runs.append(asyncio.create_task(run_agent(cfg, driver, stop, on_start=on_start)))
    waiter = asyncio.create_task(all_up.wait())
    await asyncio.wait({waiter, *runs}, return_when=asyncio.FIRST_COMPLETED)
    if not all_up.is_set():
        for r in runs:
            if r.done() and r.exception():
                raise r.exception()  # type: ignore[misc]
    print(f"READY {started}", flush=True)
    await stop.wait()
    await asyncio.gather(*runs, return_exceptions=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", required=True)
    ap.add_argument("--cluster", required=True)
    ap.add_argument("--agents", type=int, default=200)
    ap.add_argument("--image", required=True)
    ap.add_argument("--cpus", type=int, default=16)
    ap.add_argument("--memory", type=int, default=65536)
    ap.add_argument("--data-dir")
    args = ap.parse_args()
    uvloop.run(fleet(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
