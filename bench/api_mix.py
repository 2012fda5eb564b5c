#!/usr/bin/env python
"""Dockyard vs moto_server on the ECS call mix, measured in the same run (see bench/README.md).

    .venv/bin/python bench/api_mix.py            # full run (~10 min on 2 cores)
    .venv/bin/python bench/api_mix.py --quick    # smoke run (well under a minute)

For each workload (each operation alone, the 7-call mix, reads only, writes only)
wrk -t2 -c16 replays requests captured from a real botocore client and signed
right before the run, against Dockyard and against moto_server. Each
configuration is run several times, interleaved round by round; the table shows
min / median / max. Also: signed DescribeTaskDefinition against a hello-world
RSGI app on the same HTTP server, and the reads again on a Dockyard that already
stores 1,000 services and 10,000 tasks. Results go to stdout and
bench/results/api_mix-<time>.json. A benchmark prints; it does not assert.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from lib import calls  # noqa: E402
from lib.calls import MIX, OPS, READS, WRITES, Fixtures  # noqa: E402
from lib.capture import PLACEHOLDER, Capturer, Template, now_amz_date  # noqa: E402
from lib.targets import SERVER_ENV, DockyardTarget, HelloTarget, MotoTarget, Target, env_info  # noqa: E402
from lib.wrk import WrkResult, fsync_probe, run_wrk_timed, tmp_root  # noqa: E402

TARGETS = {"mix": 15.0, "reads": 30.0, "writes": 15.0, "p99_ms": 10.0, "hello": 0.5, "big": 1.5}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- configurations -------------------------------------------------------------------

@dataclass
class Config:
    system: str          # dockyard | moto | hello | dockyard-big
    workload: str        # an operation name, or mix / reads / writes
    cycle: list[str]     # operations, in the order each wrk thread sends them
    target: Target
    results: list[WrkResult] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.system}:{self.workload}"

    @property
    def unique(self) -> bool:
        return any(OPS[o].unique for o in self.cycle)

    @property
    def check(self) -> bool:
        return any(OPS[o].check for o in self.cycle)


class RequestFactory:
    """Signed raw requests for one target: templates captured once, re-signed before every run."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.cap = Capturer(target.endpoint, target.key, target.secret)
        self.templates: dict[str, Template] = {}
        self.serial = 0

    def template(self, op: str) -> Template:
        t = self.templates.get(op)
        if t is None:
            o = OPS[op]
            t = self.templates[op] = self.cap.capture(op, o.method, o.params)
        return t

    def _name(self) -> bytes:
        self.serial += 1
        return b"b%09d" % self.serial

    def write(self, prefix: Path, cycle: list[str], threads: int, n_requests: int) -> int:
        """Write per-thread request files; returns how many requests in all."""
        signer = self.cap.signer
        amz = now_amz_date()  # signed right before the run: valid for 15 minutes
        static = {op: signer.raw(self.template(op), amz_date=amz) for op in set(cycle) if not OPS[op].unique}
        unique = any(OPS[o].unique for o in cycle)
        cycles = 1 if not unique else max(1, math.ceil(n_requests / len(cycle) / threads))
        total = 0
        for t in range(threads):
            with open(f"{prefix}.{t}", "wb") as f:
                for _ in range(cycles):
                    for op in cycle:
                        if OPS[op].unique:
                            tpl = self.template(op)
                            r = signer.raw(tpl, tpl.body.replace(PLACEHOLDER.encode(), self._name()), amz)
                        else:
                            r = static[op]
                        f.write(b"%d\n" % len(r))
                        f.write(r)
                        total += 1
        return total


# -- setup -----------------------------------------------------------------------------

def setup_dockyard(t: DockyardTarget, instances: int, tasks: int) -> Fixtures:
    fx = Fixtures(t.client(), t.label, log)
    fx.base()
    calls.register_dockyard_instances(fx, t.data_dir, instances)
    placed = fx.run_tasks(tasks)
    fx.probe_reads()
    log(f"  {t.label}: setup done ({placed} tasks placed)")
    return fx


def setup_moto(t: MotoTarget, instances: int, tasks: int) -> Fixtures:
    fx = Fixtures(t.client(), t.label, log)
    fx.base()
    calls.register_moto_instances(fx, t.endpoint, instances)
    placed = fx.run_tasks(tasks)
    fx.probe_reads()
    log(f"  {t.label}: setup done ({placed} tasks placed, {instances} container instances)")
    return fx


def preload(t: DockyardTarget, services: int, tasks: int) -> dict[str, Any]:
    """The big store: ``services`` more services and ``tasks`` more tasks, through the API."""
    t0 = time.monotonic()
    clients = [t.client() for _ in range(8)]
    fxs = [Fixtures(c, t.label, log) for c in clients]
    per = math.ceil(services / len(fxs))
    with ThreadPoolExecutor(len(fxs)) as pool:
        list(pool.map(lambda a: a[1].services(calls.SETUP_SERVICES + a[0] * per,
                                              max(0, min(per, services - a[0] * per))), enumerate(fxs)))
        placed = sum(pool.map(lambda fx: fx.run_tasks(math.ceil(tasks / len(fxs))), fxs))
    c = clients[0]
    svc_count = 0
    try:
        for page in c.get_paginator("list_services").paginate(cluster=calls.CLUSTER):
            svc_count += len(page["serviceArns"])
    except Exception as e:  # noqa: BLE001
        log(f"  {t.label}: ListServices failed: {e}")
    task_count = 0
    try:
        for page in c.get_paginator("list_tasks").paginate(cluster=calls.CLUSTER, family=calls.LISTER):
            task_count += len(page["taskArns"])
    except Exception as e:  # noqa: BLE001
        log(f"  {t.label}: ListTasks failed: {e}")
    problems: dict[str, str] = {}
    for fx in fxs:
        for k, v in fx.problems.items():
            problems.setdefault(k, v)
    info = {"services_stored": svc_count, "tasks_stored": task_count, "tasks_placed_by_preload": placed,
            "seconds": round(time.monotonic() - t0, 1), "problems": problems}
    log(f"  {t.label}: preloaded {info}")
    return info


def response_size(t: Target, op: str) -> int:
    """Bytes of the body ``t`` answers to the benchmark's ``op`` request."""
    import http.client

    tpl = Capturer(t.endpoint, t.key, t.secret).capture(op, OPS[op].method, OPS[op].params)
    conn = http.client.HTTPConnection("127.0.0.1", t.port, timeout=10)
    try:
        conn.request("POST", "/", body=tpl.body, headers={k: v for k, v in tpl.headers if k != "Host"})
        return len(conn.getresponse().read())
    finally:
        conn.close()


# -- statistics ----------------------------------------------------------------------

def mmm(xs: list[float]) -> tuple[float, float, float]:
    return (min(xs), statistics.median(xs), max(xs)) if xs else (math.nan, math.nan, math.nan)


def as_mmm(xs: list[float]) -> dict[str, float]:
    return dict(zip(("min", "median", "max"), mmm(xs), strict=True))


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def summary(cfg: Config) -> dict[str, Any]:
    rs = cfg.results
    out: dict[str, Any] = {"system": cfg.system, "workload": cfg.workload, "cycle": cfg.cycle,
                           "runs": len(rs)}
    for name in ("rps", "p50_ms", "p90_ms", "p99_ms", "server_cpu_us_per_req", "wrk_cpu_s", "other_cpu_s"):
        out[name] = as_mmm([getattr(r, name) for r in rs])
    out["requests"] = sum(r.requests for r in rs)
    out["non2xx"] = sum(r.non2xx for r in rs)
    out["bad"] = sum(r.bad for r in rs)
    out["socket_errors"] = sum(r.socket_errors + r.timeouts for r in rs)
    out["wrapped_unique_list"] = cfg.unique and any(r.wrapped for r in rs)
    out["first_error"] = next((r.first_error for r in rs if r.first_error), "")
    out["first_bad"] = next((r.first_bad for r in rs if r.first_bad), "")
    return out


def pair(by: dict[str, Config], a: str, b: str, attr: str = "rps") -> dict[str, Any] | None:
    """a / b on the median of ``attr``, with the range of the per-round ratios (same round = same noise)."""
    if a not in by or b not in by:
        return None
    ma = statistics.median([getattr(r, attr) for r in by[a].results])
    mb = statistics.median([getattr(r, attr) for r in by[b].results])
    rounds = [ratio(getattr(x, attr), getattr(y, attr))
              for x, y in zip(by[a].results, by[b].results, strict=False)]
    return {"a": a, "b": b, "a_median": ma, "b_median": mb, "ratio": ratio(ma, mb),
            "per_round": as_mmm([x for x in rounds if not math.isnan(x)])}


def analyse(configs: list[Config], available: list[str]) -> dict[str, Any]:
    by = {c.key: c for c in configs}
    rows = [summary(c) for c in configs]
    srow = {f"{r['system']}:{r['workload']}": r for r in rows}
    vs_moto = []
    for w in [*available, "reads", "writes", "mix"]:
        p = pair(by, f"dockyard:{w}", f"moto:{w}")
        if p:
            p["workload"] = w
            p["dockyard_p99_ms"] = srow[p["a"]]["p99_ms"]["median"]
            p["moto_p99_ms"] = srow[p["b"]]["p99_ms"]["median"]
            vs_moto.append(p)
    vs_hello = {w: p for w in [*[o for o in READS if o in available], "reads"]
                if (p := pair(by, f"dockyard:{w}", "hello:DescribeTaskDefinition"))}
    big: list[dict[str, Any]] = []
    for w in [*[o for o in READS if o in available], "reads"]:
        p50 = pair(by, f"dockyard-big:{w}", f"dockyard:{w}", "p50_ms")
        if p50:
            p99 = pair(by, f"dockyard-big:{w}", f"dockyard:{w}", "p99_ms")
            rps = pair(by, f"dockyard-big:{w}", f"dockyard:{w}")
            big.append({"workload": w, "p50": p50, "p99": p99, "rps": rps})
    variants = [p for a, b in (("hello-same-size:DescribeTaskDefinition", "hello:DescribeTaskDefinition"),
                               ("dockyard:DescribeTaskDefinition", "hello-same-size:DescribeTaskDefinition"))
                if (p := pair(by, a, b))]
    dy_rows = [r for r in rows if r["system"] in ("dockyard", "dockyard-big")]
    worst = max(dy_rows, key=lambda r: r["p99_ms"]["median"], default=None)
    def n_errors(system_prefix: str) -> int:
        return sum(r["non2xx"] + r["bad"] + r["socket_errors"] + r["wrapped_unique_list"]
                   for r in rows if r["system"].startswith(system_prefix))
    moto_by = {p["workload"]: p for p in vs_moto}

    def at_least(p: dict[str, Any] | None, goal: float) -> bool | None:
        return None if p is None else bool(p["ratio"] >= goal)

    checks = {
        f"mix >= {TARGETS['mix']:.0f}x moto": at_least(moto_by.get("mix"), TARGETS["mix"]),
        f"reads >= {TARGETS['reads']:.0f}x moto": at_least(moto_by.get("reads"), TARGETS["reads"]),
        f"durable writes >= {TARGETS['writes']:.0f}x moto":
            at_least(moto_by.get("writes"), TARGETS["writes"]),
        f"Dockyard p99 < {TARGETS['p99_ms']:.0f} ms at 16 connections, every workload" +
        (f" (worst: {worst['system']}:{worst['workload']} {worst['p99_ms']['median']:.2f} ms)"
         if worst else ""):
            None if worst is None else bool(worst["p99_ms"]["median"] < TARGETS["p99_ms"]),
        f"signed DescribeTaskDefinition >= {TARGETS['hello']}x hello world":
            at_least(vs_hello.get("DescribeTaskDefinition"), TARGETS["hello"]),
        f"big store Describe/List p50 within {TARGETS['big']}x of the small store":
            None if not big else all(b["p50"]["ratio"] <= TARGETS["big"] for b in big),
        f"the full mix measured (all {len(MIX)} operations)": len(available) == len(MIX),
        "no errors from Dockyard (non-2xx, bad 2xx, socket errors, short unique lists)":
            n_errors("dockyard") == 0,
        "no errors from moto and hello (moto_server's threads race on its dicts now and then: "
        "'dictionary changed size during iteration')": n_errors("moto") + n_errors("hello") == 0,
    }
    other = [r.other_cpu_s for c in configs for r in c.results]
    return {"summary": rows, "vs_moto": vs_moto, "vs_hello": vs_hello, "big_store": big, "variants": variants,
            "checks": checks, "median_other_cpu_s": statistics.median(other) if other else 0.0}


# -- report ------------------------------------------------------------------------------

def _f3(d: dict[str, float], f: str = "{:.0f}") -> str:
    return " / ".join("-" if math.isnan(d[k]) else f.format(d[k]) for k in ("min", "median", "max"))


def _pr(p: dict[str, Any], f: str = "{:.2f}") -> str:
    r = p["per_round"]
    return f"per round {f.format(r['min'])}-{f.format(r['max'])}"


def print_table(rows: list[dict[str, Any]]) -> None:
    hdr = ("system", "workload", "req/s min / med / max", "p50 ms", "p99 ms min / med / max",
           "srv CPU µs/req", "wrk CPU s", "other CPU s", "non-2xx", "bad 2xx")
    lines = [hdr]
    for s in rows:
        lines.append((s["system"], s["workload"], _f3(s["rps"]), f"{s['p50_ms']['median']:.2f}",
                      _f3(s["p99_ms"], "{:.2f}"), f"{s['server_cpu_us_per_req']['median']:.0f}",
                      f"{s['wrk_cpu_s']['median']:.1f}", f"{s['other_cpu_s']['median']:.1f}",
                      str(s["non2xx"] + s["socket_errors"])
                      + (" WRAPPED" if s["wrapped_unique_list"] else ""),
                      str(s["bad"])))
    widths = [max(len(str(r[i])) for r in lines) for i in range(len(hdr))]
    for n, r in enumerate(lines):
        print("  ".join(str(c).rjust(w) if i >= 2 else str(c).ljust(w)
                        for i, (c, w) in enumerate(zip(r, widths, strict=True))))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def report(doc: dict[str, Any]) -> None:
    st = doc["settings"]
    print()
    print(f"ECS API mix: wrk -t{st['threads']} -c{st['connections']}, {st['duration_s']:.0f} s per run, "
          f"{st['runs']} round(s), min / median / max over rounds; Dockyard and moto in the same run "
          f"({doc['started']}, {doc['env'].get('git')}"
          f"{' + uncommitted src' if doc['env'].get('src_dirty') else ''})")
    if doc["not_implemented"]:
        print(f"NOT MEASURED (not implemented by Dockyard yet): {', '.join(doc['not_implemented'])}")
    print()
    print_table(doc["summary"])
    other = doc["median_other_cpu_s"]
    print(f"\n'other CPU s' is what the rest of the machine used during a run (neither the server nor wrk): "
          f"median {other:.1f} s per {st['duration_s']:.0f} s run.")
    if other > 0.15 * st["duration_s"]:
        print("WARNING: other processes were busy during the runs; absolute numbers are depressed and noisy. "
              "Compare ratios within a round (the per-round ranges).")
    fs = doc["fsync_probe"]
    if fs:
        print("Disk fsync latency per round (2 KB append + fdatasync, p50/p99 ms): "
              + ", ".join(f"{f['p50_ms']:.2f}/{f['p99_ms']:.2f}" for f in fs)
              + ". Durable writes at 16 connections are bounded by ~16 / commit latency.")
    print()
    if doc["vs_moto"]:
        print("Dockyard / moto, req/s (ratio of medians; per-round ratio range), p99:")
        for p in doc["vs_moto"]:
            r = p["per_round"]
            print(f"  {p['workload']:<24} {p['a_median']:8.0f} / {p['b_median']:5.0f} = {p['ratio']:6.1f}x "
                  f"({r['min']:5.1f}-{r['max']:5.1f})   p99 {p['dockyard_p99_ms']:6.2f} ms vs "
                  f"{p['moto_p99_ms']:6.1f} ms")
        print()
    if doc["vs_hello"]:
        print("Dockyard read / hello world on the same HTTP server (hello gets the same signed "
              "DescribeTaskDefinition request), req/s:")
        for w, p in doc["vs_hello"].items():
            print(f"  {w:<24} {p['a_median']:8.0f} / {p['b_median']:6.0f} = {p['ratio']:.2f}  ({_pr(p)})")
        print()
    if doc["big_store"]:
        bi = doc["big_store_info"]
        print(f"Big store ({bi.get('services_stored')} services, {bi.get('tasks_stored')} tasks listed by "
              "ListTasks) / small store:")
        for b in doc["big_store"]:
            print(f"  {b['workload']:<24} p50 {b['p50']['a_median']:6.2f} / {b['p50']['b_median']:5.2f} ms = "
                  f"{b['p50']['ratio']:5.2f}x ({_pr(b['p50'])})   p99 {b['p99']['ratio']:5.2f}x   "
                  f"req/s {b['rps']['ratio']:5.2f}x")
        print()
    if doc["variants"]:
        print("Variants (candidate optimisations and controls), a / b req/s in the same run:")
        for p in doc["variants"]:
            print(f"  {p['a']:<40} / {p['b']:<38} {p['a_median']:7.0f} / {p['b_median']:7.0f} = "
                  f"{p['ratio']:.2f}  ({_pr(p)})")
        print()
    if doc["setup_retried"]:
        print(f"Setup calls answered 5xx and retried (as an SDK would): {doc['setup_retried']}")
    if doc["setup_problems"]:
        print("Setup problems:")
        for k, v in doc["setup_problems"].items():
            for op, why in v.items():
                print(f"  {k}: {op}: {why[:200]}")
        print()
    bad = [r for r in doc["summary"]
           if r["non2xx"] or r["bad"] or r["socket_errors"] or r["wrapped_unique_list"]]
    if bad:
        print("INVALID configurations (errors while measuring):")
        for r in bad:
            print(f"  {r['system']}:{r['workload']}: non2xx={r['non2xx']} bad={r['bad']} "
                  f"socket={r['socket_errors']}{' list-wrapped' if r['wrapped_unique_list'] else ''} "
                  f"first: {(r['first_error'] or r['first_bad'])[:200]}")
        print()
    print("Targets:")
    for k, v in doc["checks"].items():
        print(f"  {'n/a' if v is None else ('PASS' if v else 'FAIL'):<4}  {k}")


# -- the run ------------------------------------------------------------------------------

class Bench:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.runs: int = a.runs or (1 if a.quick else 3)
        self.duration: float = a.duration or (1.0 if a.quick else 5.0)
        self.big_services: int = a.big_services if a.big_services is not None else (200 if a.quick else 1000)
        self.big_tasks: int = a.big_tasks if a.big_tasks is not None else (2000 if a.quick else 10000)
        self.only = set(a.only.split(",")) if a.only else None
        self.work = Path(tempfile.mkdtemp(prefix="dockyard-bench-"))
        self.reqdir = Path(tempfile.mkdtemp(prefix="dockyard-bench-req-", dir=tmp_root()))
        self.started: list[Target] = []
        self.t: dict[str, Target] = {}
        self.fx: dict[str, Fixtures] = {}
        self.big_info: dict[str, Any] = {}
        self.configs: list[Config] = []
        self.est: dict[str, float] = {}
        self.fastest: dict[str, float] = {}  # req/s of a configuration's fastest run so far
        self.fsync: list[dict[str, float]] = []
        self.available: list[str] = []
        self.missing: set[str] = set()

    def _start(self, t: Any) -> None:
        t.start()
        self.started.append(t)
        self.t[t.label] = t

    def start_servers(self) -> None:
        log(f"starting servers (work dir {self.work})")
        w = self.work
        self._start(DockyardTarget("dockyard", w / "dockyard"))        # reads: the store stays small
        self._start(DockyardTarget("dockyard-w", w / "dockyard-w"))    # writes and mixes: the store grows
        if not self.a.no_big:
            self._start(DockyardTarget("dockyard-big", w / "dockyard-big"))
        self._start(HelloTarget("hello", w))
        if not self.a.no_moto:
            self._start(MotoTarget("moto", w))
            self._start(MotoTarget("moto-w", w))

    def setup(self) -> None:
        log("setting up fixtures")
        t = self.t
        self.fx["dockyard"] = setup_dockyard(t["dockyard"], 1, calls.SETUP_TASKS)        # type: ignore[arg-type]
        self.fx["dockyard-w"] = setup_dockyard(t["dockyard-w"], 4, calls.SETUP_TASKS)    # type: ignore[arg-type]
        if "dockyard-big" in t:
            self.fx["dockyard-big"] = setup_dockyard(t["dockyard-big"], 2, calls.SETUP_TASKS)  # type: ignore[arg-type]
            self.big_info = preload(t["dockyard-big"], self.big_services, self.big_tasks)  # type: ignore[arg-type]
        if "moto" in t:
            self.fx["moto"] = setup_moto(t["moto"], 1, calls.SETUP_TASKS)  # type: ignore[arg-type]
            # moto's container instances hold 935 'runner' tasks each: enough for every RunTask of the run
            # at up to 600 req/s.
            instances = int(600 * self.duration * self.runs * 1.6 / 900) + 2
            self.fx["moto-w"] = setup_moto(t["moto-w"], instances, calls.SETUP_TASKS)  # type: ignore[arg-type]
        if self.a.variants and "DescribeTaskDefinition" not in self.fx["dockyard"].missing:
            # a control: hello answering a body as large as Dockyard's DescribeTaskDefinition answer
            size = response_size(t["dockyard"], "DescribeTaskDefinition")
            self._start(HelloTarget("hello-same-size", self.work, ["--body-bytes", str(size)]))
            log(f"  hello-same-size answers {size} bytes")
        self.missing = set().union(*(f.missing for k, f in self.fx.items() if k.startswith("dockyard")))
        self.available = [op for op in MIX if op not in self.missing]
        if self.missing:
            log(f"not implemented by Dockyard yet (not measured): {sorted(self.missing)}")

    def build_configs(self) -> None:
        t = self.t
        self.factories = {x.label: RequestFactory(x) for x in self.started if x.kind != "hello"}
        # the hello apps get the very requests (bytes) Dockyard gets
        for label in ("hello", "hello-same-size"):
            self.factories[label] = self.factories["dockyard"]
        av = self.available
        mixes = {"reads": [o for o in READS if o in av], "writes": [o for o in WRITES if o in av], "mix": av}

        def add(system: str, workload: str, cycle: list[str], label: str) -> None:
            if label not in t or not cycle or (self.only and workload not in self.only):
                return
            self.configs.append(Config(system, workload, cycle, t[label]))

        add("hello", "DescribeTaskDefinition", ["DescribeTaskDefinition"], "hello")
        add("hello-same-size", "DescribeTaskDefinition", ["DescribeTaskDefinition"], "hello-same-size")
        for system, reads, writes in (("dockyard", "dockyard", "dockyard-w"), ("moto", "moto", "moto-w")):
            for op in av:
                add(system, op, [op], writes if OPS[op].write else reads)
            add(system, "reads", mixes["reads"], reads)
            add(system, "writes", mixes["writes"], writes)
            add(system, "mix", mixes["mix"], writes)
        for op in mixes["reads"]:
            add("dockyard-big", op, [op], "dockyard-big")
        add("dockyard-big", "reads", mixes["reads"], "dockyard-big")
        for c in self.configs:
            self.est[c.key] = 20000.0 if c.target.kind == "dockyard" else 1500.0

    def one_run(self, c: Config, duration: float | None = None) -> WrkResult:
        duration = duration or self.duration
        prefix = self.reqdir / c.key.replace(":", "_")
        n = int(self.est[c.key] * duration * 1.5) + 1000
        self.factories[c.target.label].write(prefix, c.cycle, self.a.threads, n)
        try:
            res = run_wrk_timed(c.target.endpoint + "/", prefix, duration=duration, threads=self.a.threads,
                                connections=self.a.connections, check=c.check, server_pid=c.target.pid)
        finally:
            for p in self.reqdir.glob(prefix.name + ".*"):
                p.unlink()
        if c.unique:  # size the next list of unique requests from the fastest run so far
            fastest = self.fastest[c.key] = max(self.fastest.get(c.key, 1.0), res.rps)
            self.est[c.key] = fastest * (2 if res.wrapped else 1)
        return res

    def round_order(self, rnd: int) -> list[Config]:
        """This round's runs: the systems compared on a workload run back to back (in turns first),
        so a ratio compares runs a few seconds apart, not minutes: this VM's speed drifts by up
        to 1.5x over minutes."""
        by_workload: dict[str, list[Config]] = {}
        for c in self.configs:
            by_workload.setdefault(c.workload, []).append(c)
        order: list[Config] = []
        for group in by_workload.values():
            order += group if rnd % 2 == 0 else group[::-1]
        return order

    def measure(self) -> None:
        log("warming up (not recorded)")
        for c in self.configs:
            if c.workload in ("reads", "DescribeTaskDefinition") and c.system != "moto":
                self.one_run(c, min(2.0, self.duration))
        log(f"measuring: {len(self.configs)} configurations x {self.runs} rounds x {self.duration:.0f} s "
            f"(~{len(self.configs) * self.runs * (self.duration + 0.8) / 60:.1f} min)")
        for rnd in range(self.runs):
            self.fsync.append(fsync_probe(self.work))
            log(f"  round {rnd + 1}/{self.runs}: disk fsync (2 KB append + fdatasync) p50 "
                f"{self.fsync[-1]['p50_ms']:.2f} ms, p99 {self.fsync[-1]['p99_ms']:.2f} ms")
            for c in self.round_order(rnd):
                res = self.one_run(c)
                c.results.append(res)
                flag = ""
                if res.errors or (c.unique and res.wrapped):
                    flag = (f"  non2xx={res.non2xx} bad={res.bad} sock={res.socket_errors + res.timeouts}"
                            f"{' WRAPPED' if c.unique and res.wrapped else ''} "
                            f"{res.first_error or res.first_bad}")[:300]
                log(f"  round {rnd + 1}/{self.runs} {c.key:<38} {res.rps:8.0f} req/s"
                    f"  p50 {res.p50_ms:6.2f} ms"
                    f"  p99 {res.p99_ms:7.2f} ms  cpu {res.server_cpu_us_per_req:5.0f} µs/req"
                    f"  other {res.other_cpu_s:4.1f} s{flag}")

    def document(self, t_start: float) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "benchmark": "api_mix", "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t_start)),
            "seconds": round(time.time() - t_start, 1),
            "settings": {"runs": self.runs, "duration_s": self.duration, "threads": self.a.threads,
                         "connections": self.a.connections, "quick": self.a.quick,
                         "big_services": self.big_services, "big_tasks": self.big_tasks},
            "env": env_info(), "not_implemented": sorted(self.missing), "measured_ops": self.available,
            "targets": TARGETS, "dockyard_env": SERVER_ENV, "big_store_info": self.big_info,
            "fsync_probe": self.fsync,
            "setup_problems": {k: v.problems for k, v in self.fx.items() if v.problems},
            "setup_retried": {k: v.retried for k, v in self.fx.items() if v.retried},
        }
        doc.update(analyse(self.configs, self.available))
        doc["runs"] = {c.key: [asdict(r) for r in c.results] for c in self.configs}
        return doc

    def close(self, logs_to: Path) -> None:
        for t in self.started:
            try:
                t.stop()
            except Exception as e:  # noqa: BLE001
                log(f"stopping {t.label}: {e}")
        # keep the servers' logs when something answered an error, to see why
        failed = {c.target.label for c in self.configs for r in c.results if r.non2xx or r.socket_errors}
        failed |= {k for k, f in self.fx.items() if f.problems}
        if failed:
            logs_to.mkdir(parents=True, exist_ok=True)
            for t in self.started:
                path = t.server.log_path if isinstance(t, DockyardTarget) else getattr(t, "log_path", None)
                if t.label in failed and path is not None and path.exists():
                    shutil.copy(path, logs_to / f"{t.label}.log")
            log(f"server logs of {sorted(failed)} kept in {logs_to}")
        shutil.rmtree(self.reqdir, ignore_errors=True)
        if self.a.keep:
            log(f"kept {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round of 1 s runs, smaller big store")
    ap.add_argument("--runs", type=int, help="rounds (each configuration once per round); default 3")
    ap.add_argument("--duration", type=float, help="seconds per wrk run; default 5")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--big-services", type=int, help="services in the big store; default 1000")
    ap.add_argument("--big-tasks", type=int, help="tasks in the big store; default 10000")
    ap.add_argument("--only", help="comma-separated workloads to run (e.g. DescribeTaskDefinition,mix)")
    ap.add_argument("--no-moto", action="store_true", help="skip moto (no ratios)")
    ap.add_argument("--no-big", action="store_true", help="skip the big-store variant")
    ap.add_argument("--variants", action="store_true",
                    help="also measure a hello app answering a body as large as Dockyard's "
                         "DescribeTaskDefinition answer (a control for response size)")
    ap.add_argument("--keep", action="store_true", help="keep the servers' data directories")
    ap.add_argument("--out", help="JSON result path (default bench/results/api_mix-<time>.json)")
    ap.add_argument("--report", metavar="JSON", help="print the report of a saved result and exit")
    a = ap.parse_args()
    if a.report:
        report(json.loads(Path(a.report).read_text()))
        return 0
    t_start = time.time()
    out = Path(a.out) if a.out else HERE / "results" / time.strftime("api_mix-%Y%m%d-%H%M%S.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    b = Bench(a)
    try:
        b.start_servers()
        b.setup()
        b.build_configs()
        b.measure()
        doc = b.document(t_start)
    finally:
        b.close(out.with_name(out.stem + "-logs"))
    report(doc)
    out.write_text(json.dumps(doc, indent=1, default=str))
    print(f"\nresults: {out}  ({doc['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
