"""Run ``dockyard server`` with the service controller's counters written to a file, for benchmarks.

    python bench/lib/counting_server.py STATS_FILE -- server --port ... --data-dir ...

``ServiceController.steps`` (reconciles run) and the number of controller rounds (batches
of dirty services stepped together) live in the server process; a daemon thread writes
them as JSON (``{"steps": n, "rounds": n, "batch_max": n}``) to STATS_FILE every 50 ms, so a
benchmark can difference them around a phase. Nothing in ``src/`` changes: the class is
wrapped before the server starts.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any


def main() -> int:
    stats_file, rest = sys.argv[1], sys.argv[2:]
    rest = rest[1:] if rest[:1] == ["--"] else rest
    from dockyard.controllers import services as ctl

    controllers: list[Any] = []
    extra = {"rounds": 0, "batch_max": 0}
    init, round_ = ctl.ServiceController.__init__, ctl.ServiceController._round

    def __init__(self: Any, *a: Any, **kw: Any) -> None:
        init(self, *a, **kw)
        controllers.append(self)

    async def _round(self: Any, next_resync: float) -> float:
        before = self.steps
        out = await round_(self, next_resync)
        if self.steps > before:
            extra["rounds"] += 1
            extra["batch_max"] = max(extra["batch_max"], self.steps - before)
        return out

    ctl.ServiceController.__init__ = __init__  # type: ignore[method-assign]
    ctl.ServiceController._round = _round  # type: ignore[method-assign]

    def writer() -> None:
        tmp = stats_file + ".tmp"
        while True:
            data = {"steps": sum(c.steps for c in controllers), **extra, "t": time.time()}
            with open(tmp, "w") as f:
                json.dump(data, f)
            os.replace(tmp, stats_file)
            time.sleep(0.05)

    threading.Thread(target=writer, daemon=True, name="bench-stats").start()
    from dockyard.cli.main import main as dockyard_main

    return dockyard_main(rest)


if __name__ == "__main__":
    sys.exit(main())
