"""The service scheduler against a real server and fake-runtime agents.

One server for the module, with short timings: a RUNNING task with no health
check counts as healthy after 0.3 s (ECS: 40 s), a disconnected agent's tasks
are replaced after 2 s, the throttle starts at 1 s, placement retries every
0.5 s. Every test uses a cluster of its own and agents of its own.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from dockyard.agent import protocol
from dockyard.agent.drivers.fake import FakeDriver
from dockyard.agent.protocol import LABEL_TASK_ARN
from tests.helpers.agents import Agent, AgentPool, create_agent_key
from tests.helpers.server import ServerProcess
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.timeout(120)

ENV = {"DOCKYARD_SERVICE_STABLE_SECONDS": "0.3", "DOCKYARD_AGENT_LOST_GRACE_SECONDS": "2",
       "DOCKYARD_SERVICE_THROTTLE_SECONDS": "1", "DOCKYARD_SERVICE_RETRY_SECONDS": "0.5",
       protocol.HEARTBEAT_ENV: "1"}


@pytest.fixture(scope="module")
def srv() -> Iterator[ServerProcess]:
    s = ServerProcess(env=ENV).start()
    yield s
    s.cleanup()


@pytest.fixture(scope="module")
def key(srv: ServerProcess) -> tuple[str, str]:
    return create_agent_key(srv)


@pytest.fixture
def pool() -> Iterator[AgentPool]:
    p = AgentPool()
    yield p
    p.close()


class Fleet:
    """A cluster of its own with ``n`` fake-runtime agents."""

    def __init__(self, srv: ServerProcess, key: tuple[str, str], pool: AgentPool, n: int,
                 zones: list[str] | None = None) -> None:
        self.srv, self.key, self.pool = srv, key, pool
        self.ecs = srv.client("ecs")
        self.cluster = "svc-" + uuid.uuid4().hex[:8]
        self.ecs.create_cluster(clusterName=self.cluster)
        self.agents: list[Agent] = []
        for i in range(n):
            self.add(zone=(zones[i % len(zones)] if zones else None))

    def add(self, zone: str | None = None, **kw: Any) -> Agent:
        if zone:
            kw["availability_zone"] = zone
        a = self.pool.start(self.srv, self.cluster, self.key[0], self.key[1], driver=kw.pop("driver", FakeDriver()),
                            heartbeat=1.0, **kw)
        self.agents.append(a)
        return a

    def taskdef(self, env: dict[str, str] | None = None, memory: int = 16, health: bool = False) -> str:
        c: dict[str, Any] = {"name": "c", "image": "busybox", "memory": memory,
                             "environment": [{"name": k, "value": v} for k, v in (env or {}).items()]}
        if health:
            c["healthCheck"] = {"command": ["CMD-SHELL", "true"], "interval": 5, "retries": 1}
        return self.ecs.register_task_definition(family=self.cluster, containerDefinitions=[c])[
            "taskDefinition"]["taskDefinitionArn"]

    def service(self, name: str = "s") -> dict[str, Any]:
        return self.ecs.describe_services(cluster=self.cluster, services=[name])["services"][0]

    def tasks(self, name: str = "s", status: str = "RUNNING") -> list[dict[str, Any]]:
        arns = self.ecs.list_tasks(cluster=self.cluster, serviceName=name, desiredStatus=status)["taskArns"]
        out: list[dict[str, Any]] = []
        for i in range(0, len(arns), 100):
            out += self.ecs.describe_tasks(cluster=self.cluster, tasks=arns[i:i + 100])["tasks"]
        return out

    def running(self, name: str = "s") -> list[dict[str, Any]]:
        return [t for t in self.tasks(name) if t["lastStatus"] == "RUNNING"]

    def completed(self, name: str = "s", timeout: float = 20.0) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            s = self.service(name)
            deps = s["deployments"]
            ok = (len(deps) == 1 and deps[0]["rolloutState"] == "COMPLETED"
                  and s["runningCount"] == s["desiredCount"] and s["pendingCount"] == 0)
            return s if ok else None
        return wait_until(done, timeout, f"service {name} COMPLETED")

    def messages(self, name: str = "s") -> list[str]:
        return [e["message"] for e in self.service(name)["events"]]

    def container_of(self, task_arn: str) -> tuple[Agent, str]:
        for a in self.agents:
            for cid, c in list(a.driver.containers.items()):
                if c.labels.get(LABEL_TASK_ARN) == task_arn and c.state == "running":
                    return a, cid
        raise AssertionError(f"no running container for {task_arn}")


def test_replica_service_reaches_steady_state_and_replaces_a_task_whose_container_died(srv, key, pool):
    f = Fleet(srv, key, pool, 3)
    td = f.taskdef()
    created = f.ecs.create_service(cluster=f.cluster, serviceName="s", taskDefinition=td, desiredCount=3)
    dep_id = created["service"]["deployments"][0]["id"]
    s = f.completed()
    assert s["deployments"][0]["rolloutStateReason"] == f"ECS deployment {dep_id} completed."
    tasks = f.running()
    assert len(tasks) == 3 and all(t["startedBy"] == dep_id and t["group"] == "service:s" for t in tasks)
    # The default strategy spreads over instances: one task on each.
    assert len({t["containerInstanceArn"] for t in tasks}) == 3
    msgs = f.messages()
    assert msgs[0] == "(service s) has reached a steady state."
    assert msgs[1] == f"(service s) (deployment {dep_id}) deployment completed."
    assert msgs[2].startswith("(service s) has started 3 tasks: (task ")

    victim = tasks[0]["taskArn"]
    agent, cid = f.container_of(victim)
    agent.call(lambda: agent.driver.kill(cid, 137))
    wait_until(lambda: len([t for t in f.running() if t["taskArn"] != victim]) == 3, 10, "a replacement")
    dead = f.ecs.describe_tasks(cluster=f.cluster, tasks=[victim])["tasks"][0]
    assert dead["lastStatus"] == "STOPPED" and dead["stopCode"] == "EssentialContainerExited"
    s = f.completed()
    assert s["runningCount"] == 3
    assert any(m.startswith("(service s) has started 1 tasks: (task ") for m in f.messages())


def test_first_step_runs_in_the_create_service_commit(srv, key, pool):
    f = Fleet(srv, key, pool, 2)
    td = f.taskdef()
    created = f.ecs.create_service(cluster=f.cluster, serviceName="s", taskDefinition=td, desiredCount=2)
    # The answer is the service as created, as ECS answers...
    dep = created["service"]["deployments"][0]
    assert dep["rolloutState"] == "IN_PROGRESS" and dep["pendingCount"] == 0
    # ...and by the time it is answered the first step has placed both tasks (same commit).
    placed = f.ecs.list_tasks(cluster=f.cluster, serviceName="s")["taskArns"]
    assert len(placed) == 2
    # One clock reading for the whole commit: the tasks were created at the service's creation time.
    assert {t["createdAt"] for t in f.ecs.describe_tasks(cluster=f.cluster, tasks=placed)["tasks"]} == {
        created["service"]["createdAt"]}
    msgs = f.messages()
    assert msgs and msgs[0].startswith("(service s) has started 2 tasks: (task ")
    f.completed()
    # The controller did not start more on the events of that commit.
    assert len(f.tasks()) == 2


def test_unhealthy_task_is_stopped_with_ecs_reason_and_replaced(srv, key, pool):
    f = Fleet(srv, key, pool, 2)
    td = f.taskdef(health=True)
    f.ecs.create_service(cluster=f.cluster, serviceName="s", taskDefinition=td, desiredCount=2)
    f.completed()
    victim = f.running()[0]["taskArn"]
    agent, cid = f.container_of(victim)
    agent.call(lambda: agent.driver.set_health(cid, "unhealthy"))

    def stopped() -> dict[str, Any] | None:
        t = f.ecs.describe_tasks(cluster=f.cluster, tasks=[victim])["tasks"][0]
        return t if t["lastStatus"] == "STOPPED" else None
    t = wait_until(stopped, 10, "the unhealthy task stopped")
    assert t["stopCode"] == "ServiceSchedulerInitiated"
    assert t["stoppedReason"] == "Task failed container health checks"
    s = f.completed()
    assert s["runningCount"] == 2
    assert victim not in {x["taskArn"] for x in f.running()}


def _rollout(f: Fleet, desired: int, minimum: int, maximum: int) -> tuple[list[dict], list[dict], dict]:
    """Create at revision 1, roll out revision 2; returns (old tasks, new tasks, service)."""
    td1, td2 = f.taskdef({"V": "1"}), f.taskdef({"V": "2"})
    f.ecs.create_service(cluster=f.cluster, serviceName="s", taskDefinition=td1, desiredCount=desired,
                         deploymentConfiguration={"minimumHealthyPercent": minimum, "maximumPercent": maximum})
    f.completed()
    old = f.running()
    f.ecs.update_service(cluster=f.cluster, service="s", taskDefinition=td2)
    s = f.completed()
    assert s["taskDefinition"] == td2 and s["deployments"][0]["taskDefinition"] == td2
    new = f.running()
    assert len(new) == desired and all(t["taskDefinitionArn"] == td2 for t in new)
    old = f.ecs.describe_tasks(cluster=f.cluster, tasks=[t["taskArn"] for t in old])["tasks"]
    assert all(t["lastStatus"] == "STOPPED" and t["stopCode"] == "ServiceSchedulerInitiated" for t in old)
    return old, new, s


def test_rollout_0_100_with_one_task_stops_the_old_task_before_starting_the_new(srv, key, pool):
    f = Fleet(srv, key, pool, 1)
    old, new, _ = _rollout(f, 1, 0, 100)
    assert new[0]["createdAt"] >= old[0]["stoppedAt"]


def test_rollout_100_200_starts_new_tasks_before_stopping_old_ones(srv, key, pool):
    f = Fleet(srv, key, pool, 2)
    old, new, s = _rollout(f, 2, 100, 200)
    assert max(t["startedAt"] for t in new) <= min(t["stoppingAt"] for t in old)
    dep_id = s["deployments"][0]["id"]
    assert all(t["stoppedReason"] == f"Scaling activity initiated by (deployment {dep_id})" for t in old)
    sds = f.ecs.list_service_deployments(cluster=f.cluster, service="s")["serviceDeployments"]
    assert [d["status"] for d in sds] == ["SUCCESSFUL", "SUCCESSFUL"]


def test_rollout_50_200_never_drops_below_the_lower_limit(srv, key, pool):
    f = Fleet(srv, key, pool, 2)
    old, new, _ = _rollout(f, 4, 50, 200)
    # At every instant at least ceil(4 x 50%) = 2 tasks were RUNNING: check at each stop.
    never = datetime.max.replace(tzinfo=UTC)
    spans = [(t["startedAt"], t.get("stoppingAt", never)) for t in old + new]
    for _, stop in spans:
        if stop == never:
            continue
        alive = sum(1 for a, b in spans if a <= stop < b)
        assert alive >= 2, (stop, spans)


def test_100_100_cannot_make_progress_and_says_so(srv, key, pool):
    f = Fleet(srv, key, pool, 1)
    td1, td2 = f.taskdef({"V": "1"}), f.taskdef({"V": "2"})
    f.ecs.create_service(cluster=f.cluster, serviceName="s", taskDefinition=td1, desiredCount=1,
                         deploymentConfiguration={"minimumHealthyPercent": 100, "maximumPercent": 100})
    f.completed()
    f.ecs.update_service(cluster=f.cluster, service="s", taskDefinition=td2)
    stuck = ("(service s) was unable to stop or start tasks during a deployment because of the service deployment "
             "configuration. Update the minimumHealthyPercent or maximumPercent value and try again.")
    wait_until(lambda: stuck in f.messages(), 10, "the stuck event")
    assert [t["taskDefinitionArn"] for t in f.running()] == [td1]
    # Widening maximumPercent (not a new deployment) lets it finish.
    f.ecs.update_service(cluster=f.cluster, service="s", deploymentConfiguration={"maximumPercent": 200})
    s = f.completed()
    assert s["taskDefinition"] == td2 and [t["taskDefinitionArn"] for t in f.running()] == [td2]


def test_circuit_breaker_fails_the_deployment_and_rolls_back(srv, key, pool):
    f = Fleet(srv, key, pool, 2)
    good = f.taskdef({"V": "good"})
    bad = f.taskdef({"FAKE_START_FAIL": "exec format error"})
    f.ecs.create_service(cluster=f.cluster, serviceName="s", taskDefinition=good, desiredCount=2,
                         deploymentConfiguration={"deploymentCircuitBreaker": {"enable": True, "rollback": True}})
    first = f.completed()["deployments"][0]["id"]
    keep = {t["taskArn"] for t in f.running()}
    upd = f.ecs.update_service(cluster=f.cluster, service="s", taskDefinition=bad)["service"]
    failed_id = upd["deployments"][0]["id"]
    sd_arn = upd["currentServiceDeployment"]

    def rolled_back() -> dict[str, Any] | None:
        s = f.service()
        d = s["deployments"]
        return s if len(d) == 1 and d[0]["id"] != failed_id and d[0]["rolloutState"] == "COMPLETED" else None
    s = wait_until(rolled_back, 30, "rollback COMPLETED")
    assert s["taskDefinition"] == good and s["deployments"][0]["taskDefinition"] == good
    msgs = f.messages()
    assert f"(service s) (deployment {failed_id}) deployment failed: tasks failed to start." in msgs
    assert f"(service s) rolling back to deployment {first}." in msgs
    # The healthy tasks of the old deployment kept running through it all (100% minimum).
    assert {t["taskArn"] for t in f.running()} == keep
    failed = [t for t in f.tasks(status="STOPPED") if t["startedBy"] == failed_id]
    # The breaker tripped on tasks that failed to start; one still starting when it tripped is
    # stopped by the rollback, as ECS stops what the failed deployment has in flight.
    codes = [t["stopCode"] for t in failed]
    assert codes.count("TaskFailedToStart") >= 3, codes
    assert set(codes) <= {"TaskFailedToStart", "ServiceSchedulerInitiated"}, codes
    sd = f.ecs.describe_service_deployments(serviceDeploymentArns=[sd_arn])["serviceDeployments"][0]
    assert sd["status"] == "ROLLBACK_SUCCESSFUL"
    assert sd["deploymentCircuitBreaker"]["status"] == "TRIGGERED"
    assert sd["rollback"]["reason"] == "ECS deployment circuit breaker: tasks failed to start."


def test_failing_service_is_throttled_with_the_ecs_event(srv, key, pool):
    f = Fleet(srv, key, pool, 1)
    bad = f.taskdef({"FAKE_START_FAIL": "boom"})
    f.ecs.create_service(cluster=f.cluster, serviceName="s", taskDefinition=bad, desiredCount=1)
    msg = "(service s) is unable to consistently start tasks successfully."
    wait_until(lambda: msg in f.messages(), 15, "the throttle event")
    # Backoff: 1 s, 2 s, 4 s... so in the next 2.5 s at most two more attempts are made.
    before = len(f.tasks(status="STOPPED"))
    time.sleep(2.5)
    after = len(f.tasks(status="STOPPED"))
    assert after - before <= 2
    assert f.messages().count(msg) == 1  # written once while the condition lasts
    # A new task definition clears the throttle at once.
    good = f.taskdef({"V": "ok"})
    f.ecs.update_service(cluster=f.cluster, service="s", taskDefinition=good)
    s = f.completed(timeout=10)
    assert s["taskDefinition"] == good


def test_unplaceable_service_writes_the_placement_event_once(srv, key, pool):
    f = Fleet(srv, key, pool, 1)
    huge = f.taskdef(memory=10**6)
    f.ecs.create_service(cluster=f.cluster, serviceName="s", taskDefinition=huge, desiredCount=1)
    inst = f.agents[0].instance_arn.rsplit("/", 1)[-1]
    want = ("(service s) was unable to place a task because no container instance met all of its requirements. "
            f"The closest matching (container-instance {inst}) has insufficient memory available. For more "
            "information, see the Troubleshooting section of the Amazon ECS Developer Guide.")
    wait_until(lambda: want in f.messages(), 10, "the placement event")
    time.sleep(1.5)  # several retries
    assert f.messages().count(want) == 1


def test_draining_instance_moves_service_tasks_and_leaves_standalone_tasks(srv, key, pool):
    f = Fleet(srv, key, pool, 2)
    td = f.taskdef()
    f.ecs.create_service(cluster=f.cluster, serviceName="s", taskDefinition=td, desiredCount=2)
    f.completed()
    a = f.agents[0].instance_arn
    solo = f.ecs.start_task(cluster=f.cluster, taskDefinition=td, containerInstances=[a])["tasks"][0]["taskArn"]
    wait_until(lambda: f.ecs.describe_tasks(cluster=f.cluster, tasks=[solo])["tasks"][0]["lastStatus"] == "RUNNING",
               10, "standalone RUNNING")
    f.ecs.update_container_instances_state(cluster=f.cluster, containerInstances=[a], status="DRAINING")
    wait_until(lambda: (len(r := f.running()) == 2 and all(t["containerInstanceArn"] != a for t in r)), 15,
               "service tasks moved off the draining instance")
    assert f.ecs.describe_tasks(cluster=f.cluster, tasks=[solo])["tasks"][0]["lastStatus"] == "RUNNING"


def test_lost_agent_tasks_are_replaced_and_the_surplus_stopped_when_it_returns(srv, key, pool):
    f = Fleet(srv, key, pool, 2)
    td = f.taskdef()
    f.ecs.create_service(cluster=f.cluster, serviceName="s", taskDefinition=td, desiredCount=2,
                         deploymentConfiguration={"minimumHealthyPercent": 100, "maximumPercent": 100})
    f.completed()
    lost = f.agents[0]
    on_lost = [t["taskArn"] for t in f.running() if t["containerInstanceArn"] == lost.instance_arn]
    assert len(on_lost) == 1
    lost.stop()  # the agent goes; its (fake) containers keep running on the host
    wait_until(lambda: len([t for t in f.running() if t["taskArn"] not in on_lost]) == 2, 20,
               "a replacement on the other instance")
    still = [c for c in lost.driver.containers.values() if c.labels.get(LABEL_TASK_ARN) == on_lost[0]]
    assert still and still[0].state == "running"
    back = f.add(data_dir=lost.data_dir, driver=lost.driver)
    assert back.instance_arn == lost.instance_arn
    wait_until(lambda: all(c.state != "running" for c in lost.driver.containers.values()
                           if c.labels.get(LABEL_TASK_ARN) == on_lost[0]), 15, "the surplus stopped on return")
    # the agent reports the stop once its container is down: the task's record follows
    wait_until(lambda: f.ecs.describe_tasks(cluster=f.cluster, tasks=on_lost)["tasks"][0]["lastStatus"] == "STOPPED",
               10, "the surplus recorded as stopped")
    assert len(f.running()) == 2


def test_daemon_service_follows_instances(srv, key, pool):
    f = Fleet(srv, key, pool, 2)
    td = f.taskdef()
    s = f.ecs.create_service(cluster=f.cluster, serviceName="d", taskDefinition=td, schedulingStrategy="DAEMON")
    assert s["service"]["deploymentConfiguration"]["maximumPercent"] == 100
    wait_until(lambda: len(f.running("d")) == 2, 10, "one daemon task per instance")
    third = f.add()
    wait_until(lambda: third.instance_arn in {t["containerInstanceArn"] for t in f.running("d")}, 10,
               "a daemon task on the new instance")
    s = f.completed("d")
    assert s["desiredCount"] == 3
    f.ecs.update_container_instances_state(cluster=f.cluster, containerInstances=[third.instance_arn],
                                           status="DRAINING")
    wait_until(lambda: third.instance_arn not in {t["containerInstanceArn"] for t in f.running("d")}, 10,
               "the daemon task left the draining instance")
    assert f.completed("d")["desiredCount"] == 2


def test_delete_service_drains_then_goes_inactive(srv, key, pool):
    f = Fleet(srv, key, pool, 1)
    td = f.taskdef()
    f.ecs.create_service(cluster=f.cluster, serviceName="s", taskDefinition=td, desiredCount=2)
    f.completed()
    arns = [t["taskArn"] for t in f.running()]
    with pytest.raises(f.ecs.exceptions.InvalidParameterException):
        f.ecs.delete_service(cluster=f.cluster, service="s")
    out = f.ecs.delete_service(cluster=f.cluster, service="s", force=True)["service"]
    assert out["status"] == "DRAINING"
    wait_until(lambda: f.service()["status"] == "INACTIVE", 10, "INACTIVE")
    for t in f.ecs.describe_tasks(cluster=f.cluster, tasks=arns)["tasks"]:
        assert t["lastStatus"] == "STOPPED" and t["stopCode"] == "ServiceSchedulerInitiated"
    assert f.ecs.list_services(cluster=f.cluster)["serviceArns"] == []


def test_stop_service_deployment_rolls_back(srv, key, pool):
    f = Fleet(srv, key, pool, 2)
    td1 = f.taskdef({"V": "1"})
    f.ecs.create_service(cluster=f.cluster, serviceName="s", taskDefinition=td1, desiredCount=2)
    f.completed()
    # Revision 2 never turns healthy, so its deployment stays IN_PROGRESS until stopped.
    td2 = f.taskdef({"FAKE_HEALTH": "starting"}, health=True)
    sd_arn = f.ecs.update_service(cluster=f.cluster, service="s", taskDefinition=td2)["service"][
        "currentServiceDeployment"]
    wait_until(lambda: len([t for t in f.running() if t["taskDefinitionArn"] == td2]) == 2, 10, "new tasks up")
    f.ecs.stop_service_deployment(serviceDeploymentArn=sd_arn, stopType="ROLLBACK")
    s = f.completed()
    assert s["taskDefinition"] == td1
    assert all(t["taskDefinitionArn"] == td1 for t in f.running())
    sd = f.ecs.describe_service_deployments(serviceDeploymentArns=[sd_arn])["serviceDeployments"][0]
    assert sd["status"] == "ROLLBACK_SUCCESSFUL"


def test_server_kill_9_mid_rollout_resumes_without_duplicates(key, pool, tmp_path):
    # The agents reconnect with backoff after the restart; a lost-agent grace longer than that
    # keeps their tasks (replacing them would be right, but would not test for duplicates).
    srv = ServerProcess(data_dir=tmp_path / "srv", env={**ENV, "DOCKYARD_AGENT_LOST_GRACE_SECONDS": "30"}).start()
    try:
        k = create_agent_key(srv)
        f = Fleet(srv, k, pool, 3)
        td1 = f.taskdef({"V": "1"})
        f.ecs.create_service(cluster=f.cluster, serviceName="s", taskDefinition=td1, desiredCount=6,
                             deploymentConfiguration={"minimumHealthyPercent": 50, "maximumPercent": 100})
        f.completed()
        # Slow to turn healthy, so the rollout is mid-way when the server dies.
        td2 = f.taskdef({"FAKE_HEALTH": "healthy_after:1.5"}, health=True)
        new_id = f.ecs.update_service(cluster=f.cluster, service="s", taskDefinition=td2)["service"][
            "deployments"][0]["id"]
        wait_until(lambda: any(t["startedBy"] == new_id for t in f.tasks()), 10, "the rollout under way")
        srv.kill9()
        srv.start()
        s = f.completed(timeout=40)
        assert s["deployments"][0]["id"] == new_id
        running = f.running()
        assert len(running) == 6 and all(t["startedBy"] == new_id for t in running)
        # Exactly 6 tasks of the new deployment were ever started: nothing launched twice.
        ever = [t for t in f.tasks() + f.tasks(status="STOPPED") if t["startedBy"] == new_id]
        assert len(ever) == 6, [(t["lastStatus"], t.get("stoppedReason")) for t in ever]
    finally:
        srv.cleanup()


def test_tasks_that_run_then_die_are_replaced_unthrottled_and_events_are_capped_newest_first(srv, key, pool):
    f = Fleet(srv, key, pool, 1)
    td = f.taskdef({"FAKE_EXIT_AFTER": "0.02", "FAKE_EXIT_CODE": "1"})
    f.ecs.create_service(cluster=f.cluster, serviceName="s", taskDefinition=td, desiredCount=1)
    # Each task reaches RUNNING and exits at once; every replacement writes "has started 1 tasks".
    wait_until(lambda: len(f.service()["events"]) == 100, 60, "100 events written")
    oldest = f.service()["events"][-1]["id"]
    # More keep coming; the oldest ones are dropped.
    wait_until(lambda: f.service()["events"][-1]["id"] != oldest, 30, "the oldest event dropped")
    events = f.service()["events"]
    assert len(events) == 100
    times = [e["createdAt"] for e in events]
    assert times == sorted(times, reverse=True)
    assert len({e["id"] for e in events}) == 100
    assert "(service s) is unable to consistently start tasks successfully." not in [e["message"] for e in events]
    stopped = f.tasks(status="STOPPED")
    assert all(t["stopCode"] == "EssentialContainerExited" for t in stopped)


def test_unhealthy_results_are_ignored_during_the_health_check_grace_period(srv, key, pool):
    f = Fleet(srv, key, pool, 1)
    td = f.taskdef({"FAKE_HEALTH": "unhealthy"}, health=True)
    f.ecs.create_service(cluster=f.cluster, serviceName="s", taskDefinition=td, desiredCount=1,
                         healthCheckGracePeriodSeconds=2)
    first = wait_until(lambda: next(iter(f.running()), None), 10, "the first task RUNNING")
    assert first["healthStatus"] in ("UNHEALTHY", "UNKNOWN")

    def stopped() -> dict[str, Any] | None:
        t = f.ecs.describe_tasks(cluster=f.cluster, tasks=[first["taskArn"]])["tasks"][0]
        return t if t["lastStatus"] == "STOPPED" else None
    t = wait_until(stopped, 10, "the unhealthy task stopped after the grace period")
    assert t["stoppedReason"] == "Task failed container health checks"
    assert (t["stoppingAt"] - t["startedAt"]).total_seconds() >= 2.0
