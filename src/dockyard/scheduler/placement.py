"""Placement: which container instance takes each task of a batch. Pure, indexed, never overcommits.

``decide(candidates, requests, rng)`` returns, for each request in order,
``Placed(instance_arn)`` or ``Unplaced(arn, reason)``. Requests of one batch see
each other's placements (resources, ports, task groups, running task counts).
The inputs are not changed: the batch works on flat copies of the candidates'
numbers and copies an instance's sets and facts the first time it places there.

Feasibility (ECS's pipeline, `shared/reference/ecs-semantics.md` §3): the
instance has every ``requiresAttributes`` entry, matches every ``memberOf``
expression, holds no task of the group under ``distinctInstance``, has the
CPU, memory and static host ports (tcp/udp) left, and its agent is connected.

Choice among the feasible instances: the strategies, in order (the first is
primary, later ones break its ties), then a uniform random pick among what is
still tied, drawn from ``rng``:

* ``binpack`` cpu|memory: least remaining after placement first;
* ``spread`` instanceId|host: fewest tasks of the request's group on the instance;
* ``spread`` attribute:<name>: the attribute value whose instances hold the fewest
  tasks of the group (counted over every candidate, feasible or not; instances
  without the attribute are one more value);
* ``random``: everything after it is a tie, so it ends the key.

An unplaced request names the "closest" candidate, as ECS does: the first one
(in input order) that failed the latest check, in the order ``ATTRIBUTE``,
``MemberOf``, ``DistinctInstance``, ``RESOURCE:CPU``, ``RESOURCE:MEMORY``,
``RESOURCE:PORTS``, ``AGENT``.

How it is fast. Requests that share required attributes, memberOf expressions,
strategies and group share a *profile*. A memberOf expression that reads only
facts no placement changes (attributes, ec2InstanceId, registeredAt,
agentVersion, agentConnected) is evaluated once per candidate per batch; one
reading ``task:group`` or ``runningTasksCount`` is evaluated when a candidate
is considered. For each profile the statically eligible instances are kept in
sorted lists of ``(strategy key…, index)``, one list per value of the spread
attributes, so a placement is a bisect (binpack skips instances too small) and
a short walk to the first instance that fits; the placed instance is then
re-inserted in the lists that hold it. Building the lists costs O(n log n) per
profile, so batches of at most ``SCAN_MAX`` requests (RunTask, StartTask) use a
straight scan of the eligible instances instead.
"""

from __future__ import annotations

import random
from bisect import bisect_left, insort
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from operator import attrgetter

from dockyard.scheduler.query import InstanceFacts, Query

MEMBER_OF = "MemberOf placement constraint unsatisfied."
DISTINCT = "DistinctInstance placement constraint unsatisfied."

# Failure ranks: a candidate's rank is the first check it fails (0: it fits).
_REASONS = ("", "ATTRIBUTE", MEMBER_OF, DISTINCT, "RESOURCE:CPU", "RESOURCE:MEMORY", "RESOURCE:PORTS", "AGENT")
_AGENT = 7

# Query subjects whose value a placement changes (the rest are fixed for a batch).
DYNAMIC_SUBJECTS = frozenset({"task:group", "runningTasksCount"})

# Batches up to this size are placed by scanning; larger ones build the sorted indexes
# (bench/scheduler.py measures where the two cross).
SCAN_MAX = 1

# Random draws tried among tied instances before listing the ones that fit.
_TRIES = 4


@dataclass(slots=True)
class Candidate:
    arn: str
    agent_connected: bool
    cpu: int  # remaining
    memory: int  # remaining
    ports_tcp: set[int]  # reserved + held
    ports_udp: set[int]
    facts: InstanceFacts
    group_counts: dict[str, int] = field(default_factory=dict)  # tasks per group on the instance
    version: int = 0


@dataclass(frozen=True, slots=True)
class Request:
    cpu: int
    memory: int
    ports_tcp: tuple[int, ...] = ()
    ports_udp: tuple[int, ...] = ()
    group: str = ""
    required_attributes: tuple[tuple[str, str | None], ...] = ()
    member_of: tuple[Query, ...] = ()
    distinct_instance: bool = False
    strategies: tuple[tuple[str, str | None], ...] = ()  # (type, field)


@dataclass(frozen=True, slots=True)
class Placed:
    instance_arn: str


@dataclass(frozen=True, slots=True)
class Unplaced:
    arn: str | None
    reason: str


Decision = Placed | Unplaced

# A strategy as a key component: "cpu" / "memory" (binpack), "instance" (spread by
# instance) or ("attribute", name) (spread by attribute value).
Component = str | tuple[str, str]
Entry = tuple[int, ...]  # an index entry: (instance-level key components…, candidate index)


# Seeding a Random from the OS costs ~12 us, a third of a small placement: one per process.
_RNG = random.Random()


def decide(candidates: Sequence[Candidate], requests: Sequence[Request],
           rng: random.Random | None = None) -> list[Decision]:
    """Place each request on a candidate, or say why none would take it. Pure: inputs are not changed."""
    batch = _Batch(candidates, requests, rng or _RNG, indexed=len(requests) > SCAN_MAX)
    return [batch.place(r) for r in requests]


def key_components(strategies: Sequence[tuple[str, str | None]]) -> tuple[Component, ...]:
    """The strategy key of a request; a ``random`` strategy ends it (all that follows is a tie)."""
    out: list[Component] = []
    for kind, fld in strategies:
        if kind == "binpack":
            out.append("cpu" if (fld or "").lower() == "cpu" else "memory")
        elif kind == "spread":
            if fld in ("instanceId", "host"):
                out.append("instance")
            elif fld:
                out.append(("attribute", fld[len("attribute:"):]))
        elif kind == "random":
            break
    return tuple(out)


# -- the batch's working state ---------------------------------------------------------------

class _State:
    """The candidates as flat lists; an instance's sets and facts are copied the first time it changes."""

    def __init__(self, cands: Sequence[Candidate]) -> None:
        self.cands = cands
        self.n = len(cands)
        self.cpu = [c.cpu for c in cands]
        self.mem = [c.memory for c in cands]
        self.tcp = [c.ports_tcp for c in cands]
        self.udp = [c.ports_udp for c in cands]
        self.facts = [c.facts for c in cands]
        self.connected = [c.agent_connected for c in cands]
        self.groups = [c.group_counts for c in cands]
        self.owned: set[int] = set()  # instances whose sets, dicts and facts are our copies
        self.version = 0  # placements so far
        self._per_group: dict[str, list[int]] = {}
        self._spread: dict[str, dict[str, dict[str | None, int]]] = {}  # group → attribute → value → tasks
        self._values: dict[str, list[str | None]] = {}
        self._static: dict[Query, list[bool]] = {}
        self.indexes: dict[tuple[object, ...], _Index] = {}
        self.watch: dict[int, list[_Index]] = {}  # per instance placed on: the indexes that hold it
        # The batch's smallest request: an instance with less left can take nothing more and leaves the indexes.
        self.least_cpu = self.least_memory = 0

    def spent(self, i: int) -> bool:
        """Whether instance ``i`` is too small for every request of the batch."""
        return self.cpu[i] < self.least_cpu or self.mem[i] < self.least_memory

    def group_count(self, group: str) -> list[int]:
        """Tasks of ``group`` per instance (kept current by ``place``)."""
        counts = self._per_group.get(group)
        if counts is None:
            counts = self._per_group[group] = [g.get(group, 0) for g in self.groups]
        return counts

    def values(self, attr: str) -> list[str | None]:
        """Each instance's value of ``attr`` (None: no such attribute, or no value)."""
        vals = self._values.get(attr)
        if vals is None:
            vals = self._values[attr] = [f.attributes.get(attr) for f in self.facts]
        return vals

    def spread_count(self, group: str, attr: str) -> dict[str | None, int]:
        """Tasks of ``group`` per value of ``attr``, over every candidate (kept current by ``place``)."""
        by_attr = self._spread.setdefault(group, {})
        counts = by_attr.get(attr)
        if counts is None:
            counts = by_attr[attr] = {}
            for v, n in zip(self.values(attr), self.group_count(group), strict=True):
                counts[v] = counts.get(v, 0) + n
        return counts

    def static_query(self, q: Query) -> list[bool]:
        """``q`` on every candidate, once per batch (only for queries on facts no placement changes)."""
        hits = self._static.get(q)
        if hits is None:
            hits = self._static[q] = [bool(q(f)) for f in self.facts]
        return hits

    def index(self, prof: _Profile) -> _Index:
        """The profile's index, shared with every profile that has the same entries and buckets."""
        if prof.index is not None:
            return prof.index
        ix = self.indexes.get(prof.index_key)
        if ix is None:
            ix = self.indexes[prof.index_key] = _Index(self, prof)
            for i, held in self.watch.items():
                if ix.entry[i] is not None:
                    held.append(ix)
        prof.index = ix
        return ix

    def place(self, i: int, r: Request) -> None:
        g = r.group
        if i not in self.owned:
            self.owned.add(i)
            self.tcp[i] = set(self.tcp[i])
            self.udp[i] = set(self.udp[i])
            self.groups[i] = dict(self.groups[i])
            self.facts[i] = replace(self.facts[i], task_groups=set(self.facts[i].task_groups))
        self.cpu[i] -= r.cpu
        self.mem[i] -= r.memory
        if r.ports_tcp:
            self.tcp[i].update(r.ports_tcp)
        if r.ports_udp:
            self.udp[i].update(r.ports_udp)
        self.groups[i][g] = self.groups[i].get(g, 0) + 1
        facts = self.facts[i]
        facts.running_tasks_count += 1
        facts.task_groups.add(g)  # type: ignore[union-attr]  # a set since the copy above
        if g in self._per_group:
            self._per_group[g][i] += 1
        for attr, counts in self._spread.get(g, {}).items():
            v = self._values[attr][i]
            counts[v] = counts.get(v, 0) + 1
        self.version += 1
        if self.indexes:
            self._move(i, g)

    def _move(self, i: int, group: str) -> None:
        """Instance ``i`` took a task: re-sort it in its indexes, or drop it if it can take no more."""
        held = self.watch.get(i)
        if held is None:
            held = self.watch[i] = [ix for ix in self.indexes.values() if ix.entry[i] is not None]
        if self.spent(i):
            for ix in held:
                ix.remove(i)
            held.clear()
        else:
            for ix in held:
                if ix.moves_with is None or ix.moves_with == group:
                    ix.update(i)


# -- profiles: what requests with the same rules share -----------------------------------------

class _Profile:
    """Static eligibility and the key layout, shared by requests with the same attributes, memberOf,
    strategies and group."""

    def __init__(self, st: _State, r: Request) -> None:
        self.st = st
        self.group = r.group
        static = tuple(q for q in r.member_of if _is_static(q))
        self.dynamic = tuple(q for q in r.member_of if not _is_static(q))
        # Per candidate: 1 (ATTRIBUTE), 2 (a static memberOf fails) or 0; None: all 0.
        self.static_rank = _static_ranks(st, r.required_attributes, static)
        ranks = self.static_rank
        self.passing = [i for i, rank in enumerate(ranks) if not rank] if ranks else range(st.n)
        connected = st.connected
        self.eligible = [i for i in self.passing if connected[i]]
        self.components = key_components(r.strategies)
        # Key components are read from live state kept current by _State.place: instance-level ones
        # (binpack, spread instanceId) from per-instance lists, attribute ones from per-value counts.
        self.per_instance: list[list[int]] = []
        self.per_value: list[tuple[dict[str | None, int], list[str | None]]] = []
        self.plan: list[tuple[bool, int]] = []  # per component: (from per_value?, position there)
        attrs: list[str] = []
        for comp in self.components:
            if isinstance(comp, tuple):
                self.plan.append((True, len(self.per_value)))
                self.per_value.append((st.spread_count(self.group, comp[1]), st.values(comp[1])))
                attrs.append(comp[1])
            else:
                self.plan.append((False, len(self.per_instance)))
                self.per_instance.append(st.cpu if comp == "cpu" else st.mem if comp == "memory"
                                         else st.group_count(self.group))
        entry_comps = tuple(c for c in self.components if not isinstance(c, tuple))
        self.index_key = (r.required_attributes, static, entry_comps, tuple(attrs),
                          self.group if "instance" in entry_comps else None)
        self.attributes_first = all(from_value for from_value, _ in self.plan[:len(self.per_value)])
        self.key = self._key_function()
        self.index: _Index | None = None

    def bucket_values(self, values: Sequence[str | None]) -> tuple[int, ...]:
        """The attribute components of a bucket: tasks of the group on its spread-attribute values."""
        if len(values) == 1:
            return (self.per_value[0][0].get(values[0], 0),)
        return tuple([counts.get(v, 0) for (counts, _), v in zip(self.per_value, values, strict=True)])

    def full_key(self, bvals: tuple[int, ...], entry: Entry) -> tuple[int, ...]:
        """The strategy key from a bucket's attribute components and an entry's instance-level ones."""
        if self.attributes_first:
            return bvals + entry[:-1]
        return tuple([bvals[k] if from_value else entry[k] for from_value, k in self.plan])

    def _key_function(self) -> Callable[[int], tuple[int, ...]]:
        """The strategy key of instance ``i`` (the scan path): smaller is better."""
        parts: list[Callable[[int], int]] = []
        for from_value, k in self.plan:
            if from_value:
                counts, vals = self.per_value[k]
                parts.append(lambda i, counts=counts, vals=vals: counts.get(vals[i], 0))  # type: ignore[misc]
            else:
                parts.append(self.per_instance[k].__getitem__)
        if not parts:
            return lambda i: ()
        if len(parts) == 1:
            p0 = parts[0]
            return lambda i: (p0(i),)
        if len(parts) == 2:
            p0, p1 = parts
            return lambda i: (p0(i), p1(i))
        return lambda i: tuple(p(i) for p in parts)


def _is_static(q: Query) -> bool:
    subjects = getattr(q, "subjects", None)
    return subjects is not None and not (subjects & DYNAMIC_SUBJECTS)


def _static_ranks(st: _State, required: tuple[tuple[str, str | None], ...],
                  static: tuple[Query, ...]) -> list[int] | None:
    if not required and not static:
        return None
    ranks = [0] * st.n
    if required:
        ranks = [0 if all(name in f.attributes and (value is None or f.attributes[name] == value)
                          for name, value in required) else 1
                 for f in st.facts]
    for q in static:
        ranks = [rank or (0 if hit else 2) for rank, hit in zip(ranks, st.static_query(q), strict=True)]
    return ranks


# -- the indexes ---------------------------------------------------------------------------------

class _Index:
    """Eligible instances in sorted lists of entries, one list per value of the spread attributes.

    Instance-level components (binpack cpu/memory, spread instanceId) are in the
    entries and change only when the instance itself takes a task; attribute
    components are the same for a whole bucket and are read from the spread
    counts when buckets are compared. Profiles that differ only in what the
    entries do not hold (group, dynamic memberOf) share one index.
    """

    def __init__(self, st: _State, prof: _Profile) -> None:
        self.n = st.n
        self.sources = prof.per_instance
        # Leading attribute components order the buckets, so a search can stop at a worse bucket.
        self.lead = 0
        while self.lead < len(prof.plan) and prof.plan[self.lead][0]:
            self.lead += 1
        first = next((c for c in prof.components if not isinstance(c, tuple)), None)
        self.floor = first if first in ("cpu", "memory") else None  # instances too small sort first
        self.make = _entry_function(self.sources)
        # Entries with binpack components move with any task on their instance; the others (spread
        # instanceId, or nothing) only with a task of the group.
        binpack = "cpu" in prof.components or "memory" in prof.components
        self.moves_with: str | None = None if binpack else prof.group
        cpu, mem, least_cpu, least_mem = st.cpu, st.mem, st.least_cpu, st.least_memory
        self.members = [i for i in prof.eligible if cpu[i] >= least_cpu and mem[i] >= least_mem]
        entries = list(map(self.make, self.members))
        self.entry: list[Entry | None] = [None] * self.n
        for i, e in zip(self.members, entries, strict=True):
            self.entry[i] = e
        self.buckets = _buckets(entries, [vals for _, vals in prof.per_value])
        self.bucket_of: list[list[Entry]] = [[]] * self.n
        for _, lst in self.buckets:
            lst.sort()
            for e in lst:
                self.bucket_of[e[-1]] = lst

    def update(self, i: int) -> None:
        """Instance ``i`` took a task: move its entry to where its new key sorts."""
        old = self.entry[i]
        assert old is not None  # only instances of the index are watched
        if not self.sources:
            return
        new = self.make(i)
        if new != old:
            lst = self.bucket_of[i]
            del lst[bisect_left(lst, old)]
            insort(lst, new)
            self.entry[i] = new

    def remove(self, i: int) -> None:
        """Instance ``i`` can take nothing more in this batch."""
        lst, e = self.bucket_of[i], self.entry[i]
        assert e is not None
        del lst[bisect_left(lst, e)]
        self.entry[i] = None

    def best(self, prof: _Profile, r: Request, fits: Callable[[int], bool], rng: random.Random) -> int | None:
        """The feasible instance with the smallest key; ties are broken uniformly at random."""
        floor = (r.memory,) if self.floor == "memory" else (r.cpu,) if self.floor == "cpu" else None
        if not prof.per_value:  # one list: its first feasible entry is the best
            lst = self.buckets[0][1] if self.buckets else []
            j = self.first_fit(lst, floor, fits)
            if j is None:
                return None
            e = lst[j]
            hi = bisect_left(lst, (*e[:-1], self.n), j + 1)
            return e[-1] if hi == j + 1 else _pick([(lst, j, hi)], fits, rng)
        runs: list[tuple[list[Entry], int, int]] = []  # (list, first feasible, end of its tie run)
        best: tuple[int, ...] | None = None
        lead = self.lead
        for bvals, lst in self.ordered_buckets(prof):
            if best is not None and bvals[:lead] > best[:lead]:
                break  # buckets come in order of their leading components: no better one follows
            j = self.first_fit(lst, floor, fits)
            if j is None:
                continue
            e = lst[j]
            key = prof.full_key(bvals, e)
            if best is None or key < best:
                best, runs = key, []
            elif key > best:
                continue
            runs.append((lst, j, bisect_left(lst, (*e[:-1], self.n), j + 1)))
        if not runs:
            return None
        return _pick(runs, fits, rng)

    @staticmethod
    def first_fit(lst: list[Entry], floor: tuple[int] | None, fits: Callable[[int], bool]) -> int | None:
        """Position of the first entry that fits (binpack: after those too small, by bisection)."""
        start = bisect_left(lst, floor) if floor is not None else 0
        for j in range(start, len(lst)):
            if fits(lst[j][-1]):
                return j
        return None

    def ordered_buckets(self, prof: _Profile) -> list[tuple[tuple[int, ...], list[Entry]]]:
        """(the bucket's attribute components, its entries), best leading components first."""
        rows = [(prof.bucket_values(values), lst) for values, lst in self.buckets]
        if self.lead:
            lead = self.lead
            rows.sort(key=lambda row: row[0][:lead])
        return rows


def _buckets(entries: list[Entry], value_lists: list[list[str | None]]
             ) -> list[tuple[tuple[str | None, ...], list[Entry]]]:
    """Entries grouped by their instances' values of the spread attributes."""
    if not value_lists:
        return [((), entries)]
    buckets: dict[tuple[str | None, ...], list[Entry]] = {}
    for e in entries:
        buckets.setdefault(tuple([vals[e[-1]] for vals in value_lists]), []).append(e)
    return list(buckets.items())


def _entry_function(sources: list[list[int]]) -> Callable[[int], Entry]:
    if not sources:
        return lambda i: (i,)
    if len(sources) == 1:
        s0 = sources[0]
        return lambda i: (s0[i], i)
    if len(sources) == 2:
        s0, s1 = sources
        return lambda i: (s0[i], s1[i], i)
    return lambda i: (*[s[i] for s in sources], i)


def _pick(runs: list[tuple[list[Entry], int, int]], fits: Callable[[int], bool], rng: random.Random) -> int:
    """A uniform choice among the feasible entries of tie runs (each run starts with a feasible one)."""
    total = sum(hi - lo for _, lo, hi in runs)
    if total == 1:
        return runs[0][0][runs[0][1]][-1]
    i = -1
    for _ in range(_TRIES):  # most tied instances usually fit: sampling avoids listing them all
        p = int(rng.random() * total)
        for lst, lo, hi in runs:
            if p < hi - lo:
                i = lst[lo + p][-1]
                break
            p -= hi - lo
        if fits(i):
            return i
    feasible = [e[-1] for lst, lo, hi in runs for e in lst[lo:hi] if fits(e[-1])]
    return feasible[int(rng.random() * len(feasible))]


# -- the batch -------------------------------------------------------------------------------------

class _Plan:
    """Per request object: its profile, whether its ports can never fit, and its last failure."""

    __slots__ = ("bad_ports", "failed", "profile", "request")

    def __init__(self, profile: _Profile, r: Request) -> None:
        self.request = r  # plans are found by id(request): holding it keeps the id from being reused
        self.profile = profile
        self.bad_ports = ((len(r.ports_tcp) > 1 and len(set(r.ports_tcp)) != len(r.ports_tcp))
                          or (len(r.ports_udp) > 1 and len(set(r.ports_udp)) != len(r.ports_udp)))
        self.failed: tuple[int, Unplaced] | None = None  # (state version, decision)


class _Batch:
    def __init__(self, cands: Sequence[Candidate], requests: Sequence[Request], rng: random.Random,
                 indexed: bool) -> None:
        self.st = _State(cands)
        self.rng = rng
        self.indexed = indexed
        if indexed and requests:
            self.st.least_cpu = min(map(attrgetter("cpu"), requests))
            self.st.least_memory = min(map(attrgetter("memory"), requests))
        self.profiles: dict[tuple[object, ...], _Profile] = {}
        self.plans: dict[int, _Plan] = {}  # by id(request): the request list keeps them alive
        self.placed: list[Placed | None] = [None] * len(cands)

    def plan(self, r: Request) -> _Plan:
        p = self.plans.get(id(r))
        if p is None:
            k = (r.required_attributes, r.member_of, r.strategies, r.group)
            prof = self.profiles.get(k)
            if prof is None:
                prof = self.profiles[k] = _Profile(self.st, r)
            p = self.plans[id(r)] = _Plan(prof, r)
        return p

    def place(self, r: Request) -> Decision:
        p = self.plan(r)
        st = self.st
        if p.failed is not None and p.failed[0] == st.version:
            return p.failed[1]  # nothing moved since this request failed
        i = None if p.bad_ports else self.find(p.profile, r)
        if i is None:
            d = self.explain(p, r)
            p.failed = (st.version, d)
            return d
        st.place(i, r)
        done = self.placed[i]
        if done is None:
            done = self.placed[i] = Placed(st.cands[i].arn)  # immutable: one per instance will do
        return done

    def fits(self, prof: _Profile, r: Request) -> Callable[[int], bool]:
        """Whether an eligible instance can take ``r`` now: resources, ports, distinctInstance,
        dynamic memberOf."""
        st = self.st
        cpu, mem = st.cpu, st.mem
        rc, rm = r.cpu, r.memory
        if not (r.ports_tcp or r.ports_udp or r.distinct_instance or prof.dynamic):
            return lambda i: mem[i] >= rm and cpu[i] >= rc
        tcp, udp, facts = st.tcp, st.udp, st.facts
        pt, pu = r.ports_tcp, r.ports_udp
        taken = st.group_count(r.group) if r.distinct_instance else None
        dynamic = prof.dynamic

        def fits(i: int) -> bool:
            return (mem[i] >= rm and cpu[i] >= rc
                    and (not pt or tcp[i].isdisjoint(pt)) and (not pu or udp[i].isdisjoint(pu))
                    and (taken is None or not taken[i])
                    and (not dynamic or all(q(facts[i]) for q in dynamic)))
        return fits

    def find(self, prof: _Profile, r: Request) -> int | None:
        fits = self.fits(prof, r)
        if self.indexed:
            return self.st.index(prof).best(prof, r, fits, self.rng)
        return self.scan(prof, fits)

    def scan(self, prof: _Profile, fits: Callable[[int], bool]) -> int | None:
        """Small batches: every eligible instance, no index to build."""
        feasible = list(filter(fits, prof.eligible))
        if len(feasible) <= 1:
            return feasible[0] if feasible else None
        if not prof.components:
            return feasible[int(self.rng.random() * len(feasible))]
        keys = list(map(prof.key, feasible))
        best = min(keys)
        tied = [i for i, k in zip(feasible, keys, strict=True) if k == best]
        return tied[int(self.rng.random() * len(tied))] if len(tied) > 1 else tied[0]

    def explain(self, p: _Plan, r: Request) -> Unplaced:
        """No candidate fits: report the first one that failed the latest check."""
        st, prof = self.st, p.profile
        if not st.n:
            return Unplaced(None, "RESOURCE:CPU" if r.cpu else "RESOURCE:MEMORY")
        facts, cpu, mem, tcp, udp, cands = st.facts, st.cpu, st.mem, st.tcp, st.udp, st.cands
        dynamic, bad = prof.dynamic, p.bad_ports
        taken = st.group_count(r.group) if r.distinct_instance else None
        rc, rm, pt, pu = r.cpu, r.memory, r.ports_tcp, r.ports_udp
        top, where = 0, -1
        for i in prof.passing:  # the candidates that pass the static checks (ATTRIBUTE, static memberOf)
            if dynamic and not all(q(facts[i]) for q in dynamic):
                rank = 2
            elif taken is not None and taken[i]:
                rank = 3
            elif cpu[i] < rc:
                rank = 4
            elif mem[i] < rm:
                rank = 5
            elif bad or (pt and not tcp[i].isdisjoint(pt)) or (pu and not udp[i].isdisjoint(pu)):
                rank = 6
            else:
                rank = _AGENT if not cands[i].agent_connected else 0
            if rank > top:
                top, where = rank, i
                if rank == _AGENT:
                    break  # nothing ranks later
        if top <= 2 and prof.static_rank:  # the static failures, first in input order
            for k in (2, 1):
                first = next((i for i, rank in enumerate(prof.static_rank) if rank == k), -1)
                if first >= 0 and (top < k or first < where):
                    top, where = k, first
                if top:
                    break
        return Unplaced(cands[where].arn, _REASONS[top])
