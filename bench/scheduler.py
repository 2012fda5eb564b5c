#!/usr/bin/env python
"""The scheduler (``dockyard.scheduler.placement.decide``) against the naive scan it replaced, in one run.

    .venv/bin/python bench/scheduler.py            # 1,000 instances x 10,000 tasks, 3 strategy sets (~2 min)
    .venv/bin/python bench/scheduler.py --quick    # naive scan on the first 1,000 tasks only (~40 s)
    .venv/bin/python bench/scheduler.py --verify   # also replay every decision against the oracle (slow)

A simulated cluster (1,000 instances of 8 types, 0-25% used, 3 zones, reserved
ports plus a few static ports in use) and 10,000 tasks (CPU 64-512, memory
256-2048 MiB, a quarter with one of 8 static host ports, each with one of 5
memberOf expressions, 10 task groups), as in
shared/reference/python-api-costs.md §3. For each strategy set: placements/s of
``decide`` on the whole batch (best of --repeat) and of the naive scan
(``oracle_decide`` in tests/unit/test_scheduler.py), and their ratio. Then µs
per ``decide`` call for RunTask-sized batches (1 to 50 copies of one request)
on each of decide's two paths (straight scan, sorted indexes) and for the naive
scan: the crossover sets ``SCAN_MAX``. Every batch's decisions are checked: no
instance overcommitted (CPU, memory, ports), every memberOf honoured, only
connected agents. A benchmark prints; the checks are its only assertions.
Results also go to bench/results/scheduler-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # for tests.unit.test_scheduler (the oracle)

from dockyard.scheduler import placement  # noqa: E402
from dockyard.scheduler.placement import Candidate, Decision, Placed, Request, decide  # noqa: E402
from dockyard.scheduler.query import InstanceFacts, compile_query  # noqa: E402
from tests.unit.test_scheduler import oracle_decide, replay  # noqa: E402

TARGET = 50_000  # placements/s for [spread zone, binpack memory] + memberOf (the issue)

ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")
TYPES = {  # vCPUs, MiB registered
    "m5.large": (2, 7_680), "m5.xlarge": (4, 15_576), "m5.2xlarge": (8, 31_368), "c5.large": (2, 3_722),
    "c5.xlarge": (4, 7_474), "c5.2xlarge": (8, 15_208), "r5.large": (2, 15_578), "r5.xlarge": (4, 31_376),
}
RESERVED = {22, 2375, 2376, 51678, 51679}
STATIC_PORTS = (80, 443, 8080, 8443, 9000, 9090, 3000, 5000)
EXPRESSIONS = (
    "attribute:ecs.instance-type =~ m5.*",
    "attribute:ecs.instance-type in [c5.xlarge, c5.2xlarge, r5.large, r5.xlarge]",
    "attribute:ecs.availability-zone == us-east-1a",
    "attribute:ecs.availability-zone != us-east-1b",
    "attribute:ecs.instance-type !~ c5.large",
)
STRATEGY_SETS = {
    "spread zone + binpack memory": (("spread", "attribute:ecs.availability-zone"), ("binpack", "memory")),
    "binpack memory": (("binpack", "memory"),),
    "spread instanceId": (("spread", "instanceId"),),
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- the workload ------------------------------------------------------------------------------------

def make_cluster(n: int, rng: random.Random) -> list[Candidate]:
    out = []
    names = sorted(TYPES)
    for k in range(n):
        kind = names[k % len(names)]
        vcpu, mem = TYPES[kind]
        cpu = vcpu * 1024
        used = rng.uniform(0, 0.25)
        attrs: dict[str, str | None] = {"ecs.availability-zone": ZONES[rng.randrange(3)], "ecs.instance-type": kind,
                                        "ecs.os-type": "linux"}
        facts = InstanceFacts(agent_connected=True, agent_version="1.80.0", attributes=attrs,
                              ec2_instance_id=f"i-{k:017x}", registered_at=1.7e9 + k)
        out.append(Candidate(arn=f"arn:aws:ecs:us-east-1:123456789012:container-instance/bench/{k:032x}",
                             agent_connected=True, cpu=cpu - int(cpu * used), memory=mem - int(mem * used),
                             ports_tcp=RESERVED | set(rng.sample(STATIC_PORTS, rng.randrange(3))), ports_udp=set(),
                             facts=facts))
    return out


def make_requests(n: int, strategies: tuple[tuple[str, str | None], ...], rng: random.Random) -> list[Request]:
    queries = [compile_query(e) for e in EXPRESSIONS]
    return [Request(cpu=rng.randrange(64, 513), memory=rng.randrange(256, 2049),
                    ports_tcp=(rng.choice(STATIC_PORTS),) if rng.random() < 0.25 else (),
                    group=f"service:svc-{rng.randrange(10)}", member_of=(rng.choice(queries),),
                    strategies=strategies)
            for _ in range(n)]


def check(cands: Sequence[Candidate], requests: Sequence[Request], decisions: Sequence[Decision]) -> int:
    """No overcommit, memberOf (static here) and agents honoured; returns how many were placed."""
    by_arn = {c.arn: c for c in cands}
    cpu = {c.arn: c.cpu for c in cands}
    mem = {c.arn: c.memory for c in cands}
    tcp = {c.arn: set(c.ports_tcp) for c in cands}
    n = 0
    for r, d in zip(requests, decisions, strict=True):
        if not isinstance(d, Placed):
            continue
        a = d.instance_arn
        cpu[a] -= r.cpu
        mem[a] -= r.memory
        assert cpu[a] >= 0 and mem[a] >= 0, f"{a} overcommitted"
        assert not tcp[a] & set(r.ports_tcp), f"{a}: port taken twice"
        tcp[a] |= set(r.ports_tcp)
        assert all(q(by_arn[a].facts) for q in r.member_of) and by_arn[a].agent_connected
        n += 1
    return n


# -- timing ------------------------------------------------------------------------------------------

def best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """(best wall time in s, the last result)."""
    times = []
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def per_call_us(fn: Callable[[], Any], budget: float = 0.05, samples: int = 7) -> float:
    """µs per call of ``fn``: the best of ``samples`` loops of about ``budget`` s each (the best is
    the least disturbed by other work on the machine)."""
    t = time.perf_counter()
    fn()
    loops = max(1, int(budget / max(time.perf_counter() - t, 1e-6)))
    best = math.inf
    for _ in range(samples):
        t = time.perf_counter()
        for _ in range(loops):
            fn()
        best = min(best, (time.perf_counter() - t) / loops * 1e6)
    return best


def on_path(scan: bool, fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` with decide forced onto its scan path or its indexed path."""
    def run() -> Any:
        with mock.patch.object(placement, "SCAN_MAX", 10**9 if scan else 0):
            return fn()
    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instances", type=int, default=1000)
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3, help="timings of the indexed scheduler per strategy set")
    ap.add_argument("--quick", action="store_true", help="time the naive scan on the first 1,000 tasks only")
    ap.add_argument("--verify", action="store_true", help="replay every decision against the oracle (slow)")
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--out", help="JSON result path (default bench/results/scheduler-<time>.json)")
    a = ap.parse_args()

    rng = random.Random(a.seed)
    cands = make_cluster(a.instances, rng)
    doc: dict[str, Any] = {"instances": a.instances, "tasks": a.tasks, "seed": a.seed, "scan_max": placement.SCAN_MAX,
                           "python": sys.version.split()[0], "batches": {}, "per_call_us": {}}
    print(f"{a.instances} instances, {a.tasks} tasks, memberOf on each; indexed: best of {a.repeat}, "
          f"naive: 1 run{' on the first 1000 tasks' if a.quick else ''}\n")
    print(f"{'strategies':<30} {'placed':>7} {'indexed/s':>10} {'naive/s':>9} {'ratio':>6}")
    for name, strategies in STRATEGY_SETS.items():
        reqs = make_requests(a.tasks, strategies, random.Random(a.seed + 1))
        with mock.patch.object(placement, "SCAN_MAX", 0):  # whole batch: the indexed path in any case
            t_fast, ds = best_of(lambda reqs=reqs: decide(cands, reqs, random.Random(a.seed)), a.repeat)
        placed = check(cands, reqs, ds)
        naive_reqs = reqs[:1000] if a.quick else reqs
        log(f"  {name}: naive scan over {len(naive_reqs)} tasks ...")
        t_slow, slow = best_of(lambda naive_reqs=naive_reqs: oracle_decide(cands, naive_reqs, random.Random(a.seed)),
                               1)
        check(cands, naive_reqs, slow)
        if a.verify:
            log(f"  {name}: replaying against the oracle ...")
            replay(cands, reqs, ds)
        fast, naive = len(reqs) / t_fast, len(naive_reqs) / t_slow
        print(f"{name:<30} {placed:>7} {fast:>10,.0f} {naive:>9,.0f} {fast / naive:>5.1f}x")
        doc["batches"][name] = {"placed": placed, "indexed_per_s": fast, "naive_per_s": naive,
                                "naive_tasks": len(naive_reqs)}

    print(f"\nµs per decide() call (best of 7), {a.instances} instances, one RunTask: the same request n times "
          "(each of the 5 memberOf expressions in turn, [spread zone, binpack memory]; the mean over them)")
    print(f"{'batch':>5} {'scan':>8} {'indexed':>8} {'naive':>8}   decide uses")
    queries = [compile_query(e) for e in EXPRESSIONS]
    run_tasks = [Request(cpu=256, memory=1024, group="family:web", member_of=(q,),
                         strategies=STRATEGY_SETS["spread zone + binpack memory"]) for q in queries]
    for size in (1, 2, 3, 5, 10, 20, 50):
        row = {"scan": 0.0, "indexed": 0.0, "naive": 0.0}
        for one in run_tasks:
            batch = [one] * size
            check(cands, batch, decide(cands, batch, random.Random(1)))
            for path in ("scan", "indexed"):
                fn = on_path(path == "scan", lambda batch=batch: decide(cands, batch, random.Random(1)))
                row[path] += per_call_us(fn) / len(run_tasks)
            row["naive"] += per_call_us(lambda batch=batch: oracle_decide(cands, batch, random.Random(1)),
                                        samples=2) / len(run_tasks)
        used = "scan" if size <= placement.SCAN_MAX else "indexed"
        print(f"{size:>5} {row['scan']:>8.0f} {row['indexed']:>8.0f} {row['naive']:>8.0f}   {used}")
        doc["per_call_us"][size] = row

    head = doc["batches"]["spread zone + binpack memory"]["indexed_per_s"]
    print(f"\ntarget: >= {TARGET:,} placements/s for [spread zone, binpack memory] + memberOf: "
          f"{'met' if head >= TARGET else 'NOT met'} ({head:,.0f})")
    out = Path(a.out) if a.out else HERE / "results" / f"scheduler-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    log(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
