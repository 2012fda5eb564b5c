"""The scheduler (``dockyard.scheduler.placement``): properties against a naive oracle, and worked examples.

The oracle is the straightforward scan the scheduler replaced: for every
request, test every candidate. The property tests replay the scheduler's
decisions on the oracle's copy of the cluster, one request at a time, and
check at each step that the scheduler placed only where the oracle finds the
instance feasible, on an instance whose strategy key (all but the random
tie-break) is minimal, and failed exactly when and as the oracle does.
bench/scheduler.py uses ``oracle_decide`` as its baseline.
"""

from __future__ import annotations

import copy
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockyard.scheduler import placement
from dockyard.scheduler.placement import (
    DISTINCT,
    MEMBER_OF,
    Candidate,
    Decision,
    Placed,
    Request,
    Unplaced,
    decide,
)
from dockyard.scheduler.query import InstanceFacts, compile_query

# -- the oracle ------------------------------------------------------------------------------------


def oracle_misfit(c: Candidate, r: Request) -> tuple[int, str] | None:
    """The first check ``c`` fails for ``r`` (rank, reason), or None if it can take it."""
    attrs = c.facts.attributes
    for name, value in r.required_attributes:
        if name not in attrs or (value is not None and attrs[name] != value):
            return 1, "ATTRIBUTE"
    for q in r.member_of:
        if not q(c.facts):
            return 2, MEMBER_OF
    if r.distinct_instance and c.group_counts.get(r.group, 0) > 0:
        return 3, DISTINCT
    if r.cpu > c.cpu:
        return 4, "RESOURCE:CPU"
    if r.memory > c.memory:
        return 5, "RESOURCE:MEMORY"
    if (len(set(r.ports_tcp)) != len(r.ports_tcp) or len(set(r.ports_udp)) != len(r.ports_udp)
            or c.ports_tcp.intersection(r.ports_tcp) or c.ports_udp.intersection(r.ports_udp)):
        return 6, "RESOURCE:PORTS"
    if not c.agent_connected:
        return 7, "AGENT"
    return None


def oracle_spread_counts(pool: Sequence[Candidate], r: Request) -> dict[str, dict[str | None, int]]:
    """Tasks of the request's group per value of each spread attribute, over every candidate."""
    out: dict[str, dict[str | None, int]] = {}
    for kind, fld in r.strategies:
        if kind == "spread" and fld and fld.startswith("attribute:"):
            attr = fld[len("attribute:"):]
            counts: dict[str | None, int] = {}
            for c in pool:
                v = c.facts.attributes.get(attr)
                counts[v] = counts.get(v, 0) + c.group_counts.get(r.group, 0)
            out[attr] = counts
    return out


def oracle_key(c: Candidate, r: Request, spread_counts: dict[str, dict[str | None, int]],
               rng: random.Random | None = None) -> tuple[float, ...]:
    """The strategy key; without ``rng`` it stops at a ``random`` strategy (what must be minimal)."""
    key: list[float] = []
    for kind, fld in r.strategies:
        if kind == "binpack":
            key.append(c.cpu - r.cpu if (fld or "").lower() == "cpu" else c.memory - r.memory)
        elif kind == "spread":
            if fld in ("instanceId", "host"):
                key.append(c.group_counts.get(r.group, 0))
            elif fld:
                attr = fld[len("attribute:"):]
                key.append(spread_counts[attr].get(c.facts.attributes.get(attr), 0))
        elif kind == "random":
            if rng is None:
                break
            key.append(rng.random())
    if rng is not None:
        key.append(rng.random())
    return tuple(key)


def copy_pool(candidates: Sequence[Candidate]) -> list[Candidate]:
    return [replace(c, ports_tcp=set(c.ports_tcp), ports_udp=set(c.ports_udp), group_counts=dict(c.group_counts),
                    facts=replace(c.facts, task_groups=set(c.facts.task_groups)))
            for c in candidates]


def apply(c: Candidate, r: Request) -> None:
    c.cpu -= r.cpu
    c.memory -= r.memory
    c.ports_tcp.update(r.ports_tcp)
    c.ports_udp.update(r.ports_udp)
    c.group_counts[r.group] = c.group_counts.get(r.group, 0) + 1
    c.facts.running_tasks_count += 1
    assert isinstance(c.facts.task_groups, set)
    c.facts.task_groups.add(r.group)


def oracle_unplaced(pool: Sequence[Candidate], r: Request) -> Unplaced | None:
    """The oracle's failure for ``r`` on ``pool``, or None if some candidate fits."""
    closest: tuple[int, Candidate] | None = None
    for c in pool:
        miss = oracle_misfit(c, r)
        if miss is None:
            return None
        if closest is None or miss[0] > closest[0]:
            closest = (miss[0], c)
    if closest is None:
        return Unplaced(None, "RESOURCE:CPU" if r.cpu else "RESOURCE:MEMORY")
    return Unplaced(closest[1].arn, oracle_misfit(closest[1], r)[1])  # type: ignore[index]


def oracle_decide(candidates: Sequence[Candidate], requests: Sequence[Request],
                  rng: random.Random | None = None) -> list[Decision]:
    """The naive scan: every candidate for every request (the scheduler before the index)."""
    rng = rng or random.Random()
    pool = copy_pool(candidates)
    out: list[Decision] = []
    for r in requests:
        fits = [c for c in pool if oracle_misfit(c, r) is None]
        if not fits:
            failed = oracle_unplaced(pool, r)
            assert failed is not None
            out.append(failed)
            continue
        counts = oracle_spread_counts(pool, r)
        best = min(fits, key=lambda c: oracle_key(c, r, counts, rng))
        apply(best, r)
        out.append(Placed(best.arn))
    return out


def replay(candidates: Sequence[Candidate], requests: Sequence[Request],
           decisions: Sequence[Decision]) -> list[Candidate]:
    """Check ``decisions`` step by step against the oracle; returns the cluster afterwards."""
    assert len(decisions) == len(requests)
    pool = copy_pool(candidates)
    by_arn = {c.arn: c for c in pool}
    for n, (r, d) in enumerate(zip(requests, decisions, strict=True)):
        expected = oracle_unplaced(pool, r)
        if expected is not None:
            assert d == expected, f"request {n}: {d} but the oracle says {expected}"
            continue
        assert isinstance(d, Placed), f"request {n}: {d} although an instance fits"
        c = by_arn[d.instance_arn]
        assert_can_take(c, r)
        assert oracle_misfit(c, r) is None
        counts = oracle_spread_counts(pool, r)
        best = min(oracle_key(o, r, counts) for o in pool if oracle_misfit(o, r) is None)
        assert oracle_key(c, r, counts) == best, f"request {n}: {d.instance_arn} is not the best choice"
        apply(c, r)
    for c in pool:
        assert c.cpu >= 0 and c.memory >= 0
    return pool


def assert_can_take(c: Candidate, r: Request) -> None:
    """The rules written out once more, independently of the oracle's code."""
    assert c.cpu >= r.cpu and c.memory >= r.memory
    assert len(set(r.ports_tcp)) == len(r.ports_tcp) and not (c.ports_tcp & set(r.ports_tcp))
    assert len(set(r.ports_udp)) == len(r.ports_udp) and not (c.ports_udp & set(r.ports_udp))
    for name, value in r.required_attributes:
        assert name in c.facts.attributes
        assert value is None or c.facts.attributes[name] == value
    assert all(q(c.facts) for q in r.member_of)
    assert not r.distinct_instance or not c.group_counts.get(r.group)
    assert c.agent_connected


@pytest.fixture(params=["scan", "indexed"])
def path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run an example through both of decide's paths (straight scan and sorted indexes)."""
    with mock.patch.object(placement, "SCAN_MAX", 10**9 if request.param == "scan" else 0):
        yield request.param


# -- property tests ------------------------------------------------------------------------------

GROUPS = ("g1", "g2")
EXPRESSIONS = [
    "attribute:zone == a", "attribute:zone != c", "attribute:type in [t1, t2]", "attribute:type !in [t3]",
    "attribute:type =~ t[12]", "attribute:type !~ t1", "attribute:flag exists", "attribute:flag !exists",
    "attribute:size >= 4", "attribute:size < 8",
    "ec2InstanceId in [i-0, i-1, i-2]", "agentVersion >= 1.2", "registeredAt < 2020-01-01",
    "agentConnected == true",
    "attribute:zone == b or attribute:type == t3", "not(attribute:zone == a) and attribute:flag exists",
    # dynamic: change as the batch places tasks
    "runningTasksCount < 3", "runningTasksCount == 0", "task:group == g1", "not(task:group == g2)",
    "task:group exists", "task:group !in [g1]", "task:group == g1 or attribute:zone == c",
]
STRATEGIES = [("binpack", "cpu"), ("binpack", "memory"), ("spread", "instanceId"), ("spread", "host"),
              ("spread", "attribute:zone"), ("spread", "attribute:type"), ("random", None)]
REQUIRED = [(), (), (), (), (("zone", None),), (("zone", "a"),), (("flag", None),), (("type", "t2"),),
            (("size", "4"),), (("zone", None), ("type", "t2"))]


@st.composite
def instances(draw: st.DrawFn, k: int) -> Candidate:
    attrs: dict[str, str | None] = {}
    for name, values in (("zone", ["a", "b", "c"]), ("type", ["t1", "t2", "t3"]), ("size", ["2", "4", "16"])):
        v = draw(st.sampled_from([*values, None]))
        if v is not None:
            attrs[name] = v
    if draw(st.booleans()):
        attrs["flag"] = None
    counts = {g: draw(st.integers(0, 2)) for g in GROUPS}
    counts = {g: n for g, n in counts.items() if n}
    connected = draw(st.sampled_from([True] * 6 + [False]))
    facts = InstanceFacts(
        agent_connected=connected, agent_version=draw(st.sampled_from(["1.1.0", "1.2.0", "1.10.3", None])),
        attributes=attrs, ec2_instance_id=f"i-{k}",
        registered_at=draw(st.sampled_from([1.5e9, 1.6e9])),
        running_tasks_count=sum(counts.values()) + draw(st.integers(0, 1)),
        task_groups=frozenset(counts) | draw(st.sets(st.sampled_from(["other"]))))
    return Candidate(
        arn=f"arn:aws:ecs:us-east-1:1:container-instance/c/{k:03d}", agent_connected=connected,
        cpu=draw(st.sampled_from([0, 512, 1024, 2048, 2048, 4096])),
        memory=draw(st.sampled_from([0, 512, 1024, 2048, 4096, 4096])),
        ports_tcp=draw(st.sampled_from([set(), {22}, {22}, {22, 80}, {443}])),
        ports_udp=draw(st.sampled_from([set(), set(), {53}])),
        facts=facts, group_counts=counts)


@st.composite
def clusters(draw: st.DrawFn) -> list[Candidate]:
    n = draw(st.sampled_from([0, 1, 2, 3, 5, 8, 8, 12, 12, 16]))
    return [draw(instances(k)) for k in range(n)]


@st.composite
def requests(draw: st.DrawFn) -> Request:
    """Mostly plain requests, some with ports, attributes, memberOf, distinctInstance (about half place)."""
    exprs = draw(st.one_of(st.just([]), st.lists(st.sampled_from(EXPRESSIONS), min_size=1, max_size=2)))
    return Request(
        cpu=draw(st.sampled_from([0, 64, 128, 256, 512])), memory=draw(st.sampled_from([0, 64, 128, 256, 512, 1024])),
        ports_tcp=draw(st.sampled_from([(), (), (), (), (80,), (443,), (80, 443), (80, 80)])),
        ports_udp=draw(st.sampled_from([(), (), (), (53,)])),
        group=draw(st.sampled_from(GROUPS)),
        required_attributes=draw(st.sampled_from(REQUIRED)),
        member_of=tuple(compile_query(e) for e in exprs),
        distinct_instance=draw(st.integers(0, 4)) == 0,
        strategies=tuple(draw(st.lists(st.sampled_from(STRATEGIES), max_size=3))))


@st.composite
def batches(draw: st.DrawFn) -> list[Request]:
    """Requests of a batch; a RunTask count of n is the same request object n times."""
    shapes = draw(st.lists(requests(), min_size=1, max_size=4))
    picks = draw(st.lists(st.integers(0, len(shapes) - 1), min_size=1, max_size=24))
    return [shapes[p] for p in picks]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cluster=clusters(), batch=batches(), indexed=st.booleans(), seed=st.integers(0, 2**32))
def test_decisions_match_the_oracle(cluster: list[Candidate], batch: list[Request], indexed: bool,
                                    seed: int) -> None:
    """(1) no overcommit, (2) every rule honoured, (3) minimal strategy key, (4) unplaced iff the oracle
    finds nothing, with its arn and reason — for both the scan and the indexed path."""
    before = copy.deepcopy(cluster)
    with mock.patch.object(placement, "SCAN_MAX", 10**9 if not indexed else 0):
        decisions = decide(cluster, batch, random.Random(seed))
    assert cluster == before  # inputs are not changed
    after = replay(cluster, batch, decisions)
    for c, c0 in zip(after, cluster, strict=True):  # (1) explicitly: never more than the instance had
        taken = [r for r, d in zip(batch, decisions, strict=True) if d == Placed(c.arn)]
        assert sum(r.cpu for r in taken) <= c0.cpu and sum(r.memory for r in taken) <= c0.memory
        tcp = [p for r in taken for p in r.ports_tcp]
        udp = [p for r in taken for p in r.ports_udp]
        assert len(tcp) == len(set(tcp)) and not set(tcp) & c0.ports_tcp
        assert len(udp) == len(set(udp)) and not set(udp) & c0.ports_udp


@st.composite
def strategy_batches(draw: st.DrawFn) -> list[Request]:
    """Requests that mostly fit, whose outcome the strategies decide (a spread attribute first, usually)."""
    first = draw(st.sampled_from(STRATEGIES[4:6] * 3 + STRATEGIES))
    rest = draw(st.lists(st.sampled_from(STRATEGIES), max_size=2))
    r = Request(cpu=draw(st.sampled_from([0, 128, 256])), memory=draw(st.sampled_from([64, 128, 256, 512])),
                group=draw(st.sampled_from(GROUPS)), strategies=(first, *rest))
    other = replace(r, group="g2" if r.group == "g1" else "g1")
    return draw(st.lists(st.sampled_from([r, r, r, other]), min_size=1, max_size=30))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cluster=clusters(), batch=strategy_batches(), indexed=st.booleans(), seed=st.integers(0, 2**32))
def test_strategies_match_the_oracle(cluster: list[Candidate], batch: list[Request], indexed: bool,
                                     seed: int) -> None:
    with mock.patch.object(placement, "SCAN_MAX", 10**9 if not indexed else 0):
        decisions = decide(cluster, batch, random.Random(seed))
    replay(cluster, batch, decisions)


@settings(max_examples=100, deadline=None)
@given(cluster=clusters(), batch=batches(), seed=st.integers(0, 2**32))
def test_same_seed_same_decisions(cluster: list[Candidate], batch: list[Request], seed: int) -> None:
    assert decide(cluster, batch, random.Random(seed)) == decide(cluster, batch, random.Random(seed))


# -- a 100-instance cluster ------------------------------------------------------------------------

AZS = ("us-east-1a", "us-east-1b", "us-east-1c")
TYPES = {"m5.large": (2048, 7985), "c5.xlarge": (4096, 7600), "t3.small": (2048, 1900)}


def arn(k: int) -> str:
    return f"arn:aws:ecs:us-east-1:123456789012:container-instance/prod/{k:03d}"


def cluster100(**overrides: dict[int, object]) -> list[Candidate]:
    """i-000..i-099: m5.large (0-39), c5.xlarge (40-69), t3.small (70-99); AZ k % 3; instance k has
    used k MiB and 2k CPU units, so no two have the same free memory or CPU of one type."""
    out = []
    for k in range(100):
        kind = "m5.large" if k < 40 else "c5.xlarge" if k < 70 else "t3.small"
        cpu, mem = TYPES[kind]
        attrs: dict[str, str | None] = {"ecs.availability-zone": AZS[k % 3], "ecs.instance-type": kind,
                                        "ecs.os-type": "linux", "stack": "prod" if k % 2 else "dev"}
        if k % 10 == 0:
            attrs["gpu"] = None
        groups = frozenset({"service:db"} if k in (5, 50, 95) else set())
        facts = InstanceFacts(agent_connected=True, agent_version="1.14.5" if k < 50 else "1.80.0",
                              attributes=attrs, ec2_instance_id=f"i-{k:03d}",
                              registered_at=datetime(2024, 1, 1 + k % 28, tzinfo=UTC).timestamp(),
                              running_tasks_count=len(groups), task_groups=groups)
        out.append(Candidate(arn=arn(k), agent_connected=True, cpu=cpu - 2 * k, memory=mem - k,
                             ports_tcp={22, 2375, 2376, 51678, 51679}, ports_udp=set(), facts=facts,
                             group_counts={"service:db": 1} if groups else {}))
    return out


def req(**kw: object) -> Request:
    base: dict[str, object] = {"cpu": 128, "memory": 256, "group": "family:web"}
    base.update(kw)
    return Request(**base)  # type: ignore[arg-type]


def placed(decisions: Sequence[Decision]) -> list[int]:
    out = []
    for d in decisions:
        assert isinstance(d, Placed), d
        out.append(int(d.instance_arn.rsplit("/", 1)[1]))
    return out


def run(cluster: list[Candidate], batch: list[Request], seed: int = 7) -> list[Decision]:
    """decide, checked against the oracle step by step."""
    decisions = decide(cluster, batch, random.Random(seed))
    replay(cluster, batch, decisions)
    return decisions


BINPACK_MEM = (("binpack", "memory"),)
BINPACK_CPU = (("binpack", "cpu"),)
SPREAD_AZ = (("spread", "attribute:ecs.availability-zone"),)
SPREAD_HOST = (("spread", "instanceId"),)


def test_binpack_memory_fills_the_fullest_instance_first(path: str) -> None:
    c = cluster100()
    # t3.small i-099 has 1801 MiB, the least of those with 1000 free; then it is full for 800.
    assert placed(run(c, [req(memory=1000, strategies=BINPACK_MEM)])) == [99]
    assert placed(run(c, [req(memory=800, strategies=BINPACK_MEM)] * 3)) == [99, 99, 98]
    # 2000 MiB: only m5/c5 have that; the c5.xlarge i-069 has 7600 - 69 = 7531, the least.
    assert placed(run(c, [req(memory=2000, strategies=BINPACK_MEM)] * 4)) == [69, 69, 69, 68]


def test_binpack_cpu(path: str) -> None:
    c = cluster100()
    # CPU: i-099 has 2048 - 198 = 1850, the least; 3 tasks of 600 fit, the 4th goes to i-098 (1852).
    assert placed(run(c, [req(cpu=600, strategies=BINPACK_CPU)] * 4)) == [99, 99, 99, 98]


def test_spread_instance_gives_every_instance_one_task_before_any_gets_two(path: str) -> None:
    c = cluster100()
    first = placed(run(c, [req(strategies=SPREAD_HOST)] * 100))
    assert sorted(first) == list(range(100))
    both = placed(run(c, [req(strategies=(("spread", "host"),))] * 250))
    assert set(Counter(both).values()) == {2, 3}
    # Existing tasks of the group count: the instances that already hold one get one fewer.
    for k in (5, 50, 95):
        c[k].group_counts["family:web"] = 1
    assert not {5, 50, 95} & set(placed(run(c, [req(strategies=SPREAD_HOST)] * 97)))


def test_spread_attribute_balances_the_zones(path: str) -> None:
    c = cluster100()
    for k in (0, 3, 6, 9, 12):  # five tasks of the group already in us-east-1a
        c[k].group_counts["family:web"] = 1
    ks = placed(run(c, [req(strategies=SPREAD_AZ)] * 31))
    per_az = Counter(AZS[k % 3] for k in ks)
    assert per_az == {"us-east-1a": 7, "us-east-1b": 12, "us-east-1c": 12}
    # Zones a, b, c hold 1, 2 and 0 tasks: c first, then a and c once more each, b nothing.
    c = cluster100()
    for k in (0, 1, 4):
        c[k].group_counts["family:web"] = 1
    ks = placed(run(c, [req(strategies=SPREAD_AZ)] * 3))
    assert AZS[ks[0] % 3] == "us-east-1c" and Counter(AZS[k % 3] for k in ks) == {"us-east-1c": 2, "us-east-1a": 1}
    # An instance without the attribute is its own value: it gets tasks like a zone of its own.
    c = cluster100()
    del c[1].facts.attributes["ecs.availability-zone"]
    ks = placed(run(c, [req(strategies=SPREAD_AZ)] * 4))
    assert 1 in ks


def test_random_uses_several_instances_and_only_feasible_ones(path: str) -> None:
    c = cluster100()
    ks = placed(run(c, [req(memory=1950, strategies=(("random", None),))] * 60, seed=3))
    assert len(set(ks)) > 20 and all(k < 70 for k in ks)  # the t3.small cannot hold 1950 MiB
    # Seeded: the same rng gives the same choices; another seed, others.
    again = placed(run(c, [req(memory=1950, strategies=(("random", None),))] * 60, seed=3))
    other = placed(run(c, [req(memory=1950, strategies=(("random", None),))] * 60, seed=4))
    assert again == ks and other != ks


def test_ties_are_broken_at_random(path: str) -> None:
    # 100 identical instances: every strategy ties, so the pick depends on the seed alone.
    c = cluster100()
    for x in c:
        x.cpu, x.memory = 2048, 4096
    for strategies in [BINPACK_MEM, SPREAD_HOST, SPREAD_AZ + BINPACK_CPU, ()]:
        firsts = {placed(run(c, [req(strategies=strategies)] * 2, seed=s))[0] for s in range(30)}
        assert len(firsts) > 15, strategies
    # Binpack then keeps filling the instance it picked.
    ks = placed(run(c, [req(memory=1024, strategies=BINPACK_MEM)] * 5))
    assert ks[:4] == [ks[0]] * 4 and ks[4] != ks[0]


def test_spread_zone_then_binpack_memory(path: str) -> None:
    c = cluster100()
    # Per zone the fullest instance with 1000 MiB: a t3.small (1900 - k), the largest k of the zone.
    ks = placed(run(c, [req(memory=1000, strategies=SPREAD_AZ + BINPACK_MEM)] * 6))
    assert sorted(ks[:3]) == [97, 98, 99] and sorted(ks[3:]) == [94, 95, 96]
    # A t3.small holds one task of 1000 MiB: once all 30 do, the fullest c5.xlarge of each zone.
    ks = placed(run(c, [req(memory=1000, strategies=SPREAD_AZ + BINPACK_MEM)] * 33))
    assert sorted(ks[:30]) == list(range(70, 100)) and sorted(ks[30:]) == [67, 68, 69]


def test_distinct_instance(path: str) -> None:
    c = cluster100()
    ds = run(c, [req(distinct_instance=True, strategies=BINPACK_MEM)] * 101)
    assert sorted(placed(ds[:100])) == list(range(100))
    assert ds[100] == Unplaced(arn(0), DISTINCT)
    # Existing tasks of the group count too.
    ds = run(c, [req(group="service:db", distinct_instance=True)] * 98)
    assert not {5, 50, 95} & set(placed(ds[:97])) and ds[97] == Unplaced(arn(0), DISTINCT)


def member(expr: str) -> set[int]:
    """The instances that take tasks with ``memberOf(expr)`` and distinctInstance, until none fits."""
    c = cluster100()
    ds = run(c, [req(member_of=(compile_query(expr),), distinct_instance=True)] * 101)
    done = [d for d in ds if isinstance(d, Placed)]
    assert isinstance(ds[len(done)], Unplaced)
    return set(placed(done))


@pytest.mark.parametrize("expr,expected", [
    ("attribute:ecs.instance-type == t3.small", set(range(70, 100))),
    ("attribute:ecs.instance-type equals t3.small", set(range(70, 100))),
    ("attribute:ecs.availability-zone != us-east-1a", {k for k in range(100) if k % 3}),
    ("attribute:ecs.availability-zone in [us-east-1b, us-east-1c]", {k for k in range(100) if k % 3}),
    ("attribute:ecs.instance-type !in [m5.large, c5.xlarge]", set(range(70, 100))),
    ("attribute:ecs.instance-type =~ m5.*", set(range(40))),
    ("attribute:ecs.instance-type !~ m5.*", set(range(40, 100))),
    ("attribute:gpu exists", set(range(0, 100, 10))),
    ("attribute:gpu !exists", {k for k in range(100) if k % 10}),
    ("ec2InstanceId in [i-001, 'i-002', i-777]", {1, 2}),
    ("ec2InstanceId == i-042", {42}),
    ("agentVersion >= 1.20.0", set(range(50, 100))),
    ("agentVersion < 1.20", set(range(50))),
    ("registeredAt <= 2024-01-02", {k for k in range(100) if k % 28 < 2}),
    ("registeredAt > 2024-01-27T00:00:00Z", {k for k in range(100) if k % 28 == 27}),
    ("agentConnected == true", set(range(100))),
    ("attribute:stack == prod and attribute:ecs.instance-type == c5.xlarge", set(range(41, 70, 2))),
    ("attribute:gpu exists or ec2InstanceId == i-001", set(range(0, 100, 10)) | {1}),
    ("not(attribute:ecs.instance-type =~ .*large) && attribute:ecs.availability-zone == us-east-1a",
     {k for k in range(70, 100) if k % 3 == 0}),
    ("task:group == service:db", {5, 50, 95}),
    ("task:group != service:db", set(range(100)) - {5, 50, 95}),
    ("runningTasksCount == 0", set(range(100)) - {5, 50, 95}),
])
def test_member_of(path: str, expr: str, expected: set[int]) -> None:
    assert member(expr) == expected


def test_member_of_sees_the_batchs_own_tasks(path: str) -> None:
    c = cluster100()
    # No two tasks of the group on an instance, written as a memberOf: each placement changes task:group.
    q = compile_query("not(task:group == family:web)")
    ks = placed(run(c, [req(member_of=(q,), strategies=BINPACK_MEM)] * 100))
    assert sorted(ks) == list(range(100))
    # runningTasksCount moves too: at most 2 tasks per instance (i-005 already runs one).
    q = compile_query("runningTasksCount < 2")
    ds = run(c, [req(member_of=(q,), strategies=BINPACK_MEM)] * 198)
    per = Counter(placed(ds[:197]))
    assert per[5] == per[50] == per[95] == 1 and len(per) == 100
    assert ds[197] == Unplaced(arn(0), MEMBER_OF)
    # And task:group of another group, placed earlier in the same batch.
    db = req(group="service:db", strategies=BINPACK_MEM)
    near_db = req(member_of=(compile_query("task:group == service:db"),), strategies=BINPACK_MEM)
    ks = placed(run(c, [near_db, db, near_db]))
    assert ks[0] == 95 and ks[2] in {5, 50, 95, ks[1]}


def test_required_attributes_and_failure_reasons(path: str) -> None:
    c = cluster100()
    assert placed(run(c, [req(required_attributes=(("gpu", None), ("stack", "dev")), strategies=BINPACK_MEM)])) == [90]
    assert run(c, [req(required_attributes=(("ecs.os-type", "windows"),))]) == [Unplaced(arn(0), "ATTRIBUTE")]
    q = compile_query("attribute:ecs.instance-type == t3.small")
    assert run(c, [req(member_of=(q,), memory=1900)]) == [Unplaced(arn(70), "RESOURCE:MEMORY")]
    assert run(c, [req(member_of=(q,), cpu=2048)]) == [Unplaced(arn(70), "RESOURCE:CPU")]
    assert run(c, [req(cpu=5000)]) == [Unplaced(arn(0), "RESOURCE:CPU")]
    assert run(c, [req(ports_tcp=(22,))]) == [Unplaced(arn(0), "RESOURCE:PORTS")]
    assert run(c, [req(ports_tcp=(80, 80))]) == [Unplaced(arn(0), "RESOURCE:PORTS")]
    # A static host port: one task per instance; dynamic ones (not in the request) are not counted.
    ds = run(c, [req(ports_tcp=(8080,), ports_udp=(53,))] * 101)
    assert len(set(placed(ds[:100]))) == 100 and ds[100] == Unplaced(arn(0), "RESOURCE:PORTS")
    assert decide([], [req()]) == [Unplaced(None, "RESOURCE:CPU")]
    assert decide([], [req(cpu=0)]) == [Unplaced(None, "RESOURCE:MEMORY")]


def test_agent_disconnected_takes_nothing(path: str) -> None:
    c = cluster100()
    for k in range(100):
        c[k].agent_connected = k == 42
    assert placed(run(c, [req(strategies=SPREAD_HOST)] * 3)) == [42, 42, 42]
    c[42].agent_connected = False
    # Every instance would fit: the first one is the closest, and the reason is its agent.
    assert run(c, [req()] * 2) == [Unplaced(arn(0), "AGENT")] * 2


def test_inputs_are_not_changed(path: str) -> None:
    c = cluster100()
    before = copy.deepcopy(c)
    q = compile_query("task:group != family:web")
    run(c, [req(ports_tcp=(80,), member_of=(q,), strategies=SPREAD_AZ + BINPACK_MEM)] * 150)
    assert c == before
    assert all(isinstance(x.facts.task_groups, frozenset) for x in c)


def test_services_placement_reexports_the_scheduler() -> None:
    from dockyard.services.ecs import placement as ecs_placement

    assert ecs_placement.decide is decide and ecs_placement.Request is Request
    assert ecs_placement.Candidate is Candidate and ecs_placement.Unplaced is Unplaced
