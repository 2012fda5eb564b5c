"""Task placement on a fleet: a real `dockyard server` and 100 agents (FakeDriver) in this process.

One cluster, one module-scoped fleet. The instances differ in:

* availability zone: ``us-east-1{a,b,c}`` by ``i % 3``;
* size: even ``i`` has 4 CPUs / 8192 MiB, odd ``i`` 2 CPUs / 4096 MiB;
* custom attributes (PutAttributes): ``stack=blue`` (``i % 5 == 0``, 20 instances),
  ``stack=green`` (``i % 5 == 1``, 20 instances), ``pool=bp`` on a few mixed-size instances
  (the binpack and overcommit tests work there, via memberOf);
* logging drivers: ``i % 10 == 3`` also offers ``gelf`` (``requiresAttributes``).

Each test uses its own task family and group and stops its tasks (waiting for STOPPED, so
the resources are back) before the next one runs.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from dockyard.agent.drivers.fake import FakeDriver
from tests.helpers.agents import AgentPool, create_agent_key
from tests.helpers.server import ServerProcess
from tests.helpers.wait import wait_until

N_AGENTS = 100
AZS = ("us-east-1a", "us-east-1b", "us-east-1c")
BP = (2, 4, 6, 7, 9, 11)  # pool=bp: three big (even) and three small (odd) instances
GELF = "com.amazonaws.ecs.capability.logging-driver.gelf"
DISTINCT = "DistinctInstance placement constraint unsatisfied."
MEMBER_OF = "MemberOf placement constraint unsatisfied."


def az_of(i: int) -> str:
    return AZS[i % 3]


def is_big(i: int) -> bool:
    return i % 2 == 0


def stack_of(i: int) -> str | None:
    return "blue" if i % 5 == 0 else "green" if i % 5 == 1 else None


@dataclass
class Fleet:
    srv: ServerProcess
    ecs: Any
    cluster: str
    arns: list[str] = field(default_factory=list)  # by agent index

    @property
    def index(self) -> dict[str, int]:
        return {a: i for i, a in enumerate(self.arns)}

    def instances(self) -> dict[str, dict[str, Any]]:
        out = {}
        for k in range(0, len(self.arns), 100):
            got = self.ecs.describe_container_instances(cluster=self.cluster, containerInstances=self.arns[k:k + 100])
            out.update({ci["containerInstanceArn"]: ci for ci in got["containerInstances"]})
        return out

    def task_def(self, cpu: int = 16, memory: int = 32, **container: Any) -> str:
        family = "pf-" + uuid.uuid4().hex[:8]
        cd = {"name": "app", "image": "busybox", "cpu": cpu, "memory": memory, "essential": True, **container}
        return self.ecs.register_task_definition(family=family, containerDefinitions=[cd])[
            "taskDefinition"]["taskDefinitionArn"]

    def run(self, td: str, count: int, **kw: Any) -> tuple[list[str], list[dict[str, Any]]]:
        out = self.ecs.run_task(cluster=self.cluster, taskDefinition=td, count=count, **kw)
        return [t["taskArn"] for t in out["tasks"]], out["failures"]

    def describe(self, arns: list[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for k in range(0, len(arns), 100):
            out += self.ecs.describe_tasks(cluster=self.cluster, tasks=arns[k:k + 100])["tasks"]
        return out

    def wait_running(self, arns: list[str], timeout: float = 20.0) -> list[dict[str, Any]]:
        if not arns:
            return []

        def all_running() -> list[dict[str, Any]] | None:
            tasks = self.describe(arns)
            return tasks if len(tasks) == len(arns) and all(t["lastStatus"] == "RUNNING" for t in tasks) else None
        return wait_until(all_running, timeout, f"{len(arns)} tasks RUNNING", interval=0.1)

    def placements(self, arns: list[str]) -> list[int]:
        """The agent index each task (now RUNNING) was placed on."""
        idx = self.index
        return [idx[t["containerInstanceArn"]] for t in self.wait_running(arns)]

    def stop(self, arns: list[str], timeout: float = 20.0) -> None:
        for a in arns:
            self.ecs.stop_task(cluster=self.cluster, task=a, reason="test cleanup")
        if arns:
            wait_until(lambda: all(t["lastStatus"] == "STOPPED" for t in self.describe(arns)), timeout,
                       "tasks STOPPED", interval=0.1)

    def running_tasks(self) -> list[dict[str, Any]]:
        arns: list[str] = []
        for page in self.ecs.get_paginator("list_tasks").paginate(cluster=self.cluster, desiredStatus="RUNNING"):
            arns += page["taskArns"]
        return self.describe(arns)


@pytest.fixture(scope="module")
def fleet():
    t0 = time.monotonic()
    srv = ServerProcess().start()
    pool = AgentPool()
    try:
        ecs = srv.client("ecs")
        cluster = "placement-fleet"
        ecs.create_cluster(clusterName=cluster)
        key, secret = create_agent_key(srv)
        agents = []
        for i in range(N_AGENTS):
            logging = ("json-file", "local", "none", "syslog", "journald") + (("gelf",) if i % 10 == 3 else ())
            driver = FakeDriver(cpus=4 if is_big(i) else 2, memory_mib=8192 if is_big(i) else 4096,
                                logging_drivers=logging)
            agents.append(pool.start(srv, cluster, key, secret, driver=driver, availability_zone=az_of(i),
                                     wait=False))

        def all_connected() -> bool:
            for a in agents:
                if a.failed() is not None:
                    raise AssertionError(f"an agent stopped: {a.failed()!r}")
            return all(a.running is not None for a in agents) and pool.call(
                lambda: all(a.session.connected for a in agents))
        wait_until(all_connected, 45.0, "100 agents connected", interval=0.1)
        f = Fleet(srv, ecs, cluster, [a.instance_arn for a in agents])

        attrs = []
        for i, arn in enumerate(f.arns):
            if stack_of(i):
                attrs.append({"name": "stack", "value": stack_of(i), "targetType": "container-instance",
                              "targetId": arn})
            if i in BP:
                attrs.append({"name": "pool", "value": "bp", "targetType": "container-instance", "targetId": arn})
        for k in range(0, len(attrs), 10):
            ecs.put_attributes(cluster=cluster, attributes=attrs[k:k + 10])
        print(f"fleet up in {time.monotonic() - t0:.1f}s")
        yield f
    finally:
        pool.close()
        srv.cleanup()


@pytest.fixture(autouse=True)
def clean_fleet(fleet):
    """Every test starts (and must leave) a fleet with no running task and every instance ACTIVE."""
    yield
    leftovers = [t["taskArn"] for t in fleet.running_tasks()]
    fleet.stop(leftovers)
    draining = [a for a, ci in fleet.instances().items() if ci["status"] != "ACTIVE"]
    if draining:
        fleet.ecs.update_container_instances_state(cluster=fleet.cluster, containerInstances=draining,
                                                   status="ACTIVE")


# -- helpers ----------------------------------------------------------------------------------------

def resource(ci: dict[str, Any], which: str, name: str) -> int:
    return next(r["integerValue"] for r in ci[which] if r["name"] == name)


def attr(ci: dict[str, Any], name: str) -> str | None:
    return next((a.get("value") for a in ci["attributes"] if a["name"] == name), None)


def has_attr(ci: dict[str, Any], name: str) -> bool:
    return any(a["name"] == name for a in ci["attributes"])


def member_of(expr: str) -> list[dict[str, str]]:
    return [{"type": "memberOf", "expression": expr}]


def greedy(remaining: dict[int, int], need: int, n: int) -> Counter[int]:
    """Expected binpack result: each task to the instance with the least remaining that still fits."""
    left = dict(remaining)
    got: Counter[int] = Counter()
    for _ in range(n):
        fit = [i for i in left if left[i] >= need]
        if not fit:
            break
        i = min(fit, key=lambda i: (left[i], i))
        left[i] -= need
        got[i] += 1
    return got


def shape(counts: Counter[int], key: dict[int, int]) -> list[tuple[int, int]]:
    """Counts per instance up to swapping instances that started equal."""
    return sorted((key[i], counts.get(i, 0)) for i in key)


def assert_accounting(fleet: Fleet) -> None:
    """remainingResources >= 0 and == registered - the RUNNING tasks' reservations, on every instance."""
    used_cpu: Counter[str] = Counter()
    used_mem: Counter[str] = Counter()
    for t in fleet.running_tasks():
        for c in t["containers"]:
            used_cpu[t["containerInstanceArn"]] += int(c["cpu"])
            used_mem[t["containerInstanceArn"]] += int(c["memory"])
    for arn, ci in fleet.instances().items():
        for name, used in (("CPU", used_cpu[arn]), ("MEMORY", used_mem[arn])):
            rem = resource(ci, "remainingResources", name)
            assert rem >= 0, (arn, name, rem)
            assert rem == resource(ci, "registeredResources", name) - used, (arn, name, rem, used)


# -- tests ------------------------------------------------------------------------------------------

def test_fleet_is_registered_as_configured(fleet):
    cis = fleet.instances()
    assert len(cis) == N_AGENTS
    idx = fleet.index
    for arn, ci in cis.items():
        i = idx[arn]
        assert ci["status"] == "ACTIVE" and ci["agentConnected"]
        assert attr(ci, "ecs.availability-zone") == az_of(i)
        assert attr(ci, "stack") == stack_of(i)
        assert (attr(ci, "pool") == "bp") == (i in BP)
        assert resource(ci, "registeredResources", "CPU") == (4096 if is_big(i) else 2048)
        assert has_attr(ci, GELF) == (i % 10 == 3)


def test_binpack_memory_fills_the_fullest_instance_first(fleet):
    cis = fleet.instances()
    mem = {i: resource(cis[fleet.arns[i]], "remainingResources", "MEMORY") for i in BP}
    td = fleet.task_def(cpu=16, memory=1000)
    kw = dict(placementConstraints=member_of("attribute:pool == bp"),
              placementStrategy=[{"type": "binpack", "field": "memory"}], group="bpmem")
    placed: list[int] = []
    for count in (10, 10):
        arns, failures = fleet.run(td, count, **kw)
        assert failures == [] and len(arns) == count
        placed += fleet.placements(arns)
        got = Counter(placed)
        assert shape(got, mem) == shape(greedy(mem, 1000, len(placed)), mem)
    # The small instances (4096 MiB) are full (4 tasks each) before a big one (8192) is used, and
    # only one big one is in use.
    small = [i for i in BP if not is_big(i)]
    assert all(got[i] == 4 for i in small)
    assert sorted(got[i] for i in BP if is_big(i)) == [0, 0, 8]


def test_binpack_cpu_fills_the_fullest_instance_first(fleet):
    cis = fleet.instances()
    cpu = {i: resource(cis[fleet.arns[i]], "remainingResources", "CPU") for i in BP}
    td = fleet.task_def(cpu=1000, memory=32)
    kw = dict(placementConstraints=member_of("attribute:pool == bp"),
              placementStrategy=[{"type": "binpack", "field": "cpu"}], group="bpcpu")
    placed: list[int] = []
    for count in (1, 9, 4):  # one scan-path call, then batches
        arns, failures = fleet.run(td, count, **kw)
        assert failures == [] and len(arns) == count
        placed += fleet.placements(arns)
        got = Counter(placed)
        assert shape(got, cpu) == shape(greedy(cpu, 1000, len(placed)), cpu)
    assert all(got[i] == 2 for i in BP if not is_big(i))
    assert sorted(got[i] for i in BP if is_big(i)) == [0, 4, 4]


def test_spread_availability_zone(fleet):
    td = fleet.task_def()
    kw = dict(placementStrategy=[{"type": "spread", "field": "attribute:ecs.availability-zone"}], group="spread-az")
    placed: list[int] = []
    for count in (10, 10, 1, 10):
        arns, failures = fleet.run(td, count, **kw)
        assert failures == []
        placed += fleet.placements(arns)
        per_az = Counter(az_of(i) for i in placed)
        assert set(per_az) <= set(AZS)
        counts = [per_az.get(az, 0) for az in AZS]
        assert max(counts) - min(counts) <= 1, counts


def test_spread_instance_id(fleet):
    td = fleet.task_def()
    blue = [i for i in range(N_AGENTS) if stack_of(i) == "blue"]
    kw = dict(placementConstraints=member_of("attribute:stack == blue"),
              placementStrategy=[{"type": "spread", "field": "instanceId"}], group="spread-id")
    placed: list[int] = []
    for count in (10, 7, 3, 5):
        arns, failures = fleet.run(td, count, **kw)
        assert failures == []
        placed += fleet.placements(arns)
        got = Counter(placed)
        assert set(got) <= set(blue)
        counts = [got.get(i, 0) for i in blue]
        assert max(counts) - min(counts) <= 1, counts  # no second task anywhere before all have one
    assert len(placed) == 25 and sorted(Counter(placed).values()) == [1] * 15 + [2] * 5


def test_spread_az_then_binpack_memory(fleet):
    cis = fleet.instances()
    blue = [i for i in range(N_AGENTS) if stack_of(i) == "blue"]
    mem = {i: resource(cis[fleet.arns[i]], "remainingResources", "MEMORY") for i in blue}
    td = fleet.task_def(cpu=16, memory=256)
    kw = dict(placementConstraints=member_of("attribute:stack == blue"), group="az-binpack",
              placementStrategy=[{"type": "spread", "field": "attribute:ecs.availability-zone"},
                                 {"type": "binpack", "field": "memory"}])
    placed: list[int] = []
    for count in (6, 3):
        arns, failures = fleet.run(td, count, **kw)
        assert failures == []
        placed += fleet.placements(arns)
    per_az = Counter(az_of(i) for i in placed)
    assert per_az == {az: 3 for az in AZS}
    for az in AZS:
        used = {i for i in placed if az_of(i) == az}
        assert len(used) == 1, (az, used)  # binpack keeps an AZ's tasks together
        (i,) = used
        assert mem[i] == min(mem[j] for j in blue if az_of(j) == az)  # on the smallest instance of the AZ


def test_random_places_everything_without_overcommit(fleet):
    td = fleet.task_def(cpu=64, memory=128)
    placed: list[int] = []
    for count in (10, 10, 10):
        arns, failures = fleet.run(td, count, placementStrategy=[{"type": "random"}], group="random")
        assert failures == [] and len(arns) == count
        placed += fleet.placements(arns)
    assert len(placed) == 30 and len(set(placed)) > 5
    assert_accounting(fleet)


@pytest.mark.parametrize(("expr", "ok"), [
    ("attribute:stack == blue", lambda i: stack_of(i) == "blue"),
    ("attribute:ecs.availability-zone in [us-east-1a, us-east-1b]", lambda i: az_of(i) in AZS[:2]),
    ("attribute:stack =~ gr.*n", lambda i: stack_of(i) == "green"),
    ("attribute:ecs.availability-zone =~ us-east-1[bc] and attribute:stack == blue",
     lambda i: az_of(i) != "us-east-1a" and stack_of(i) == "blue"),
    ("not(attribute:ecs.availability-zone == us-east-1a)", lambda i: az_of(i) != "us-east-1a"),
    ("attribute:stack != blue", lambda i: stack_of(i) != "blue"),
    ("!(attribute:stack exists) and attribute:ecs.availability-zone != us-east-1c",
     lambda i: stack_of(i) is None and az_of(i) != "us-east-1c"),
])
def test_member_of(fleet, expr, ok):
    td = fleet.task_def()
    placed: list[int] = []
    for count in (10, 10):
        arns, failures = fleet.run(td, count, placementConstraints=member_of(expr),
                                   group="m-" + uuid.uuid4().hex[:6])
        assert failures == []
        placed += fleet.placements(arns)
    assert len(placed) == 20
    bad = [i for i in placed if not ok(i)]
    assert not bad, (expr, bad)
    # Cross-check with the attributes the server holds.
    cis = fleet.instances()
    for i in placed:
        ci = cis[fleet.arns[i]]
        assert attr(ci, "ecs.availability-zone") == az_of(i) and attr(ci, "stack") == stack_of(i)


def test_member_of_task_group(fleet):
    anchor = "service:anchor-" + uuid.uuid4().hex[:6]
    td = fleet.task_def()
    arns, failures = fleet.run(td, 3, group=anchor, placementConstraints=member_of("attribute:stack == green"),
                               placementStrategy=[{"type": "spread", "field": "instanceId"}])
    assert failures == []
    anchors = set(fleet.placements(arns))
    assert len(anchors) == 3 and all(stack_of(i) == "green" for i in anchors)

    follower = fleet.task_def()
    placed: list[int] = []
    for count in (10, 5):
        farns, failures = fleet.run(follower, count, group="follow",
                                    placementConstraints=member_of(f"task:group == '{anchor}'"))
        assert failures == []
        placed += fleet.placements(farns)
    assert set(placed) <= anchors and len(placed) == 15

    # And the opposite: never next to the anchor group.
    avoid = fleet.task_def()
    aarns, failures = fleet.run(avoid, 10, group="avoid", placementConstraints=member_of(
        f"not(task:group == '{anchor}') and attribute:stack == green"))
    assert failures == []
    away = fleet.placements(aarns)
    assert not set(away) & anchors and all(stack_of(i) == "green" for i in away)


def test_distinct_instance(fleet):
    td = fleet.task_def()
    blue = {i for i in range(N_AGENTS) if stack_of(i) == "blue"}
    kw = dict(group="distinct", placementConstraints=[{"type": "distinctInstance"},
                                                      *member_of("attribute:stack == blue")])
    placed: list[int] = []
    for count in (10, 1, 9):
        arns, failures = fleet.run(td, count, **kw)
        assert failures == []
        placed += fleet.placements(arns)
        assert len(set(placed)) == len(placed)  # all on different instances
    assert set(placed) == blue
    arns, failures = fleet.run(td, 1, **kw)
    assert arns == [] and [f["reason"] for f in failures] == [DISTINCT]
    arns, failures = fleet.run(td, 3, **kw)
    assert arns == [] and [f["reason"] for f in failures] == [DISTINCT] * 3
    # Another group is not held back by this one.
    other, failures = fleet.run(td, 2, group="distinct-2", placementConstraints=kw["placementConstraints"])
    assert failures == [] and len(set(fleet.placements(other))) == 2


@pytest.mark.parametrize(("cpu", "memory", "reason", "capacity"), [
    # small: 2048 CPU / 4096 MiB, big: 4096 / 8192 (three of each in pool bp)
    (512, 1536, "RESOURCE:MEMORY", 3 * 2 + 3 * 5),
    (900, 64, "RESOURCE:CPU", 3 * 2 + 3 * 4),
])
def test_no_overcommit(fleet, cpu, memory, reason, capacity):
    td = fleet.task_def(cpu=cpu, memory=memory)
    kw = dict(group="fill", placementConstraints=member_of("attribute:pool == bp"),
              placementStrategy=[{"type": "random"}])
    placed: list[int] = []
    failures: list[dict[str, Any]] = []
    for _ in range(5):
        arns, failures = fleet.run(td, 10, **kw)
        placed += fleet.placements(arns)
        if failures:
            break
    assert len(placed) == capacity
    assert failures and {f["reason"] for f in failures} == {reason}
    assert len(failures) + len(placed) % 10 == 10
    assert set(placed) <= set(BP)
    # Full: one more is refused too.
    arns, more = fleet.run(td, 1, **kw)
    assert arns == [] and [f["reason"] for f in more] == [reason]
    assert_accounting(fleet)


def test_draining_instance_takes_nothing_new(fleet):
    blue = [i for i in range(N_AGENTS) if stack_of(i) == "blue"]
    drained = blue[:5]
    out = fleet.ecs.update_container_instances_state(cluster=fleet.cluster,
                                                     containerInstances=[fleet.arns[i] for i in drained],
                                                     status="DRAINING")
    assert out["failures"] == [] and {c["status"] for c in out["containerInstances"]} == {"DRAINING"}
    td = fleet.task_def()
    kw = dict(group="drain", placementConstraints=member_of("attribute:stack == blue"),
              placementStrategy=[{"type": "spread", "field": "instanceId"}])
    placed: list[int] = []
    for count in (10, 10, 10):
        arns, failures = fleet.run(td, count, **kw)
        assert failures == []
        placed += fleet.placements(arns)
    assert not set(placed) & set(drained)
    assert set(placed) == set(blue) - set(drained)  # 30 over the 15 ACTIVE blue: two each
    assert sorted(Counter(placed).values()) == [2] * 15
    # Only draining instances eligible: nothing is placed (they are not candidates at all).
    marks = [{"name": "drained", "value": "yes", "targetType": "container-instance", "targetId": fleet.arns[i]}
             for i in drained]
    fleet.ecs.put_attributes(cluster=fleet.cluster, attributes=marks)
    try:
        arns, failures = fleet.run(td, 2, group="drain-only", placementConstraints=member_of(
            "attribute:drained == yes"))
        assert arns == [] and [f["reason"] for f in failures] == [MEMBER_OF] * 2
    finally:
        fleet.ecs.delete_attributes(cluster=fleet.cluster, attributes=marks)


def test_requires_attributes(fleet):
    gelf = fleet.task_def(logConfiguration={"logDriver": "gelf",
                                            "options": {"gelf-address": "udp://127.0.0.1:12201"}})
    td = fleet.ecs.describe_task_definition(taskDefinition=gelf)["taskDefinition"]
    assert {"name": GELF} in td["requiresAttributes"]
    placed: list[int] = []
    for count in (10, 10):
        arns, failures = fleet.run(gelf, count, group="gelf")
        assert failures == []
        placed += fleet.placements(arns)
    assert placed and all(i % 10 == 3 for i in placed)
    cis = fleet.instances()
    assert all(has_attr(cis[fleet.arns[i]], GELF) for i in placed)

    splunk = fleet.task_def(logConfiguration={"logDriver": "splunk",
                                              "options": {"splunk-url": "https://127.0.0.1:8088",
                                                          "splunk-token": "x"}})
    arns, failures = fleet.run(splunk, 3, group="splunk")
    assert arns == [] and [f["reason"] for f in failures] == ["ATTRIBUTE"] * 3
