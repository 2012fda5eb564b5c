"""Terraform rolls out an ECS service on Dockyard and waits for it (wait_for_steady_state).

Terraform's AWS provider (5.x) waits for a service in ``statusServiceWaitForStable``
(internal/service/ecs/service.go): it polls DescribeServices until the service is ACTIVE
with exactly one deployment and ``runningCount == desiredCount``. So after CreateService
Dockyard has to start the tasks (on two fake-runtime agents in this process), and after an
UpdateService to a new task definition revision it has to keep answering two deployments
until the old tasks are gone. A server that dropped the old deployment too early, or
counted tasks wrongly, would let ``apply`` return mid-rollout: the checks after each apply
catch that, and the provider's own debug log shows what the waiter saw on every poll.
(Newer providers than 5.100 wait on a new deployment's ListServiceDeployments/DescribeServiceDeployments
status instead; the mirror here holds 5.x.)

Sequence: apply (the agents register as soon as Terraform has created the cluster, so the
service may be created before there is anywhere to place it), apply a new revision (rolled
out with minimumHealthyPercent 100 / maximumPercent 200), plan (no changes), destroy (the
service is drained to INACTIVE; then the agents stop and their instances are deregistered,
as an autoscaling group would, so the provider's DeleteCluster can go through).
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from dockyard.agent.drivers.fake import FakeDriver
from tests.e2e.test_terraform import Terraform, provider_calls, require_terraform
from tests.helpers.agents import Agent, AgentPool, create_agent_key
from tests.helpers.server import ServerProcess

pytestmark = [pytest.mark.terraform, pytest.mark.timeout(300)]

CONFIG = Path(__file__).parent / "terraform" / "service_rollout"
STABLE_SECONDS = 0.5  # a RUNNING task with no health check counts healthy after this (ECS: 40 s)


class RolloutTerraform(Terraform):
    """test_terraform.py's runner on this test's configuration, one provider log per command."""

    def __init__(self, work: Path, server: ServerProcess, name: str) -> None:
        super().__init__(work, server, name)
        for tf in work.glob("*.tf"):
            tf.unlink()
        for tf in CONFIG.glob("*.tf"):
            shutil.copy(tf, work / tf.name)
        (work / "logs").mkdir()
        self.n = 0

    def step(self, label: str, *args: str, ok: tuple[int, ...] = (0,)) -> Any:
        self.n += 1
        self.log = self.work / "logs" / f"{self.n:02d}-{label}.log"
        self.env["TF_LOG_PATH"] = str(self.log)
        return self.run(*args, "-input=false", "-no-color", ok=ok, timeout=200)


def answers_after(log: Path, first: str, operation: str) -> list[dict[str, Any]]:
    """The decoded bodies of ``operation``'s answers in a provider debug log that came after
    the first answer to ``first`` (e.g. the waiter's DescribeServices after UpdateService)."""
    entries = re.split(r"\n(?=\d{4}-\d\d-\d\dT)", log.read_text(errors="replace"))
    out: list[dict[str, Any]] = []
    seen = False
    for e in entries:
        if "HTTP Response Received" not in e:
            continue
        method = re.search(r"rpc\.method=(\w+)", e)
        if method is None:
            continue
        if method.group(1) == first:
            seen = True
        elif seen and method.group(1) == operation:
            body = re.search(r"http\.response\.body=\n((?:[ \t]*\|.*(?:\n|$))+)", e)
            assert body is not None, f"no response body logged:\n{e[:2000]}"
            text = "\n".join(line.split("|", 1)[1][1:] for line in body.group(1).splitlines())
            out.append(json.loads(text))
    assert seen, f"no {first} answer in {log}"
    return out


def stable_poll(p: tuple[int, int, int, str]) -> bool:
    """What the provider's statusServiceWaitForStable calls stable: one deployment, all running."""
    return p[0] == 1 and p[1] == p[2]


def waiter_polls(log: Path, operation: str) -> list[tuple[int, int, int, str]]:
    """(deployments, desiredCount, runningCount, PRIMARY rolloutState) per DescribeServices after ``operation``."""
    polls = []
    for body in answers_after(log, operation, "DescribeServices"):
        (svc,) = body["services"]
        assert svc["status"] == "ACTIVE", svc
        primary = [d for d in svc["deployments"] if d["status"] == "PRIMARY"]
        polls.append(
            (
                len(svc["deployments"]),
                svc["desiredCount"],
                svc["runningCount"],
                primary[0]["rolloutState"] if primary else "",
            )
        )
    return polls


class Background:
    """``fn(stop)`` on a thread; ``join()`` re-raises what it raised."""

    def __init__(self, fn: Callable[[threading.Event], None]) -> None:
        self.stop = threading.Event()
        self.error: BaseException | None = None

        def run() -> None:
            try:
                fn(self.stop)
            except BaseException as e:  # handed to join()
                self.error = e

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self, timeout: float = 30.0) -> None:
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "background helper did not finish"
        if self.error is not None:
            raise self.error


def timed_step(tf: RolloutTerraform, helper: Callable[[threading.Event], None], label: str, *args: str) -> float:
    """The seconds ``tf.step(label, *args)`` took, with ``helper`` running on a Background thread meanwhile
    (joined after the step, re-raising what it raised)."""
    bg = Background(helper)
    try:
        t0 = time.monotonic()
        tf.step(label, *args)
        return time.monotonic() - t0
    finally:
        bg.join()


def poll(stop: threading.Event, cond: Callable[[], bool], timeout: float, what: str) -> bool:
    """Until ``cond()`` (True) or ``stop`` is set (False); AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not stop.is_set():
        if cond():
            return True
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def srv() -> Iterator[ServerProcess]:
    require_terraform()
    s = ServerProcess(env={"DOCKYARD_SERVICE_STABLE_SECONDS": str(STABLE_SECONDS)}).start()
    yield s
    s.cleanup()


@pytest.fixture
def pool() -> Iterator[AgentPool]:
    p = AgentPool()
    yield p
    p.close()


def service_tasks(ecs: Any, cluster: str) -> list[dict[str, Any]]:
    """Every task of service ``web`` not yet STOPPED, whatever its desired status."""
    arns: list[str] = []
    for desired in ("RUNNING", "STOPPED"):
        arns += ecs.list_tasks(cluster=cluster, serviceName="web", desiredStatus=desired)["taskArns"]
    found = ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"] if arns else []
    return [t for t in found if t["lastStatus"] != "STOPPED"]


def test_service_rollout_waits_for_steady_state(srv: ServerProcess, pool: AgentPool, name: str, tmp_path: Path) -> None:
    ecs = srv.client("ecs")
    tf = RolloutTerraform(tmp_path, srv, name)
    key, secret = create_agent_key(srv)
    agents: list[Agent] = []

    def cluster_active() -> bool:
        return [c["status"] for c in ecs.describe_clusters(clusters=[name])["clusters"]] == ["ACTIVE"]

    def start_agents(stop: threading.Event) -> None:
        # Like instances of an autoscaling group: they join once the cluster exists.
        if poll(stop, cluster_active, 150, "the cluster"):
            agents.extend(pool.start(srv, name, key, secret, driver=FakeDriver()) for _ in range(2))

    tf.step("init", "init")

    # -- create: apply returns once both tasks run ----------------------------------------
    create_seconds = timed_step(tf, start_agents, "create", "apply", "-auto-approve")
    assert len(agents) == 2
    out = {k: v["value"] for k, v in json.loads(tf.run("output", "-json").stdout).items()}
    td1 = out["task_definition_arn"]
    assert td1.endswith(f"task-definition/{name}-web:1")

    (svc,) = ecs.describe_services(cluster=name, services=["web"])["services"]
    assert (svc["status"], svc["desiredCount"], svc["runningCount"], svc["pendingCount"]) == ("ACTIVE", 2, 2, 0)
    assert svc["launchType"] == "EC2" and svc["taskDefinition"] == td1
    assert svc["deploymentConfiguration"]["minimumHealthyPercent"] == 100
    assert svc["deploymentConfiguration"]["maximumPercent"] == 200
    (dep,) = svc["deployments"]
    assert (dep["status"], dep["taskDefinition"], dep["runningCount"]) == ("PRIMARY", td1, 2)
    running = service_tasks(ecs, name)
    assert len(running) == 2 and {t["lastStatus"] for t in running} == {"RUNNING"}
    assert {t["containerInstanceArn"] for t in running} == {a.instance_arn for a in agents}  # spread

    # The waiter polled until stable, and saw the service not stable first.
    polls = waiter_polls(tf.log, "CreateService")
    assert polls and not stable_poll(polls[0]) and stable_poll(polls[-1]), polls

    # -- a new revision: apply returns once it is rolled out --------------------------------
    t0 = time.monotonic()
    tf.env["TF_VAR_greeting"] = "bonjour"
    tf.step("rollout", "apply", "-auto-approve")
    rollout_seconds = time.monotonic() - t0
    out = {k: v["value"] for k, v in json.loads(tf.run("output", "-json").stdout).items()}
    td2 = out["task_definition_arn"]
    assert td2.endswith(f"task-definition/{name}-web:2")
    # Read at once: no waiting here, apply must not have returned before this was so.
    (svc,) = ecs.describe_services(cluster=name, services=["web"])["services"]
    tasks = service_tasks(ecs, name)
    (dep,) = svc["deployments"]
    assert (dep["status"], dep["rolloutState"], dep["taskDefinition"]) == ("PRIMARY", "COMPLETED", td2), svc
    assert (svc["taskDefinition"], svc["desiredCount"], svc["runningCount"], svc["pendingCount"]) == (td2, 2, 2, 0)
    assert (dep["desiredCount"], dep["runningCount"], dep["pendingCount"]) == (2, 2, 0)
    assert len(tasks) == 2, tasks
    assert {(t["lastStatus"], t["desiredStatus"], t["taskDefinitionArn"]) for t in tasks} == {
        ("RUNNING", "RUNNING", td2)
    }
    assert {t["startedBy"] for t in tasks} == {dep["id"]}
    assert ecs.describe_task_definition(taskDefinition=td2)["taskDefinition"]["containerDefinitions"][0][
        "environment"
    ] == [{"name": "GREETING", "value": "bonjour"}]
    # The provider replaced the revision (deregistered :1); the scheduler stopped its tasks.
    assert ecs.describe_task_definition(taskDefinition=td1)["taskDefinition"]["status"] == "INACTIVE"
    stopped = ecs.list_tasks(cluster=name, serviceName="web", desiredStatus="STOPPED")["taskArns"]
    old = ecs.describe_tasks(cluster=name, tasks=stopped)["tasks"] if stopped else []
    assert (
        sorted((t["taskDefinitionArn"], t["lastStatus"], t["stopCode"]) for t in old)
        == [(td1, "STOPPED", "ServiceSchedulerInitiated")] * 2
    ), old
    messages = [e["message"] for e in svc["events"]]
    assert messages[0] == "(service web) has reached a steady state.", messages
    assert any(f"(deployment {dep['id']}) deployment completed." in m for m in messages), messages

    # The waiter saw the rollout under way (two deployments) before it called it stable, and
    # nothing it would call stable was a rollout still in progress.
    polls = waiter_polls(tf.log, "UpdateService")
    assert polls and polls[0][0] == 2 and stable_poll(polls[-1]), polls
    assert all(p[3] == "COMPLETED" for p in polls if stable_poll(p)), polls

    # -- what the server answers reads back as applied -------------------------------------
    plan = tf.step("plan", "plan", "-detailed-exitcode", ok=(0, 2))
    assert plan.returncode == 0, f"plan after apply wants changes:\n{plan.stdout}"

    # -- destroy ------------------------------------------------------------------------
    def service_gone() -> bool:
        try:
            found = ecs.describe_services(cluster=name, services=["web"])["services"]
        except ClientError as e:
            return e.response["Error"]["Code"] == "ClusterNotFoundException"
        return [s["status"] for s in found] in ([], ["INACTIVE"])

    def retire_instances(stop: threading.Event) -> None:
        # The provider deletes the service (drained to INACTIVE by the agents) before the
        # cluster. ECS refuses to delete a cluster with instances; the provider retries
        # DeleteCluster on ClusterContainsContainerInstancesException, so they may leave
        # before or after its first try.
        if poll(stop, service_gone, 150, "the service to go INACTIVE"):
            assert service_tasks(ecs, name) == []
            for a in agents:
                a.stop()
                ecs.deregister_container_instance(cluster=name, containerInstance=a.instance_arn, force=True)

    destroy_seconds = timed_step(tf, retire_instances, "destroy", "destroy", "-auto-approve")

    assert service_gone()
    assert out["cluster_arn"] not in ecs.list_clusters()["clusterArns"]
    assert [c["status"] for c in ecs.describe_clusters(clusters=[out["cluster_arn"]])["clusters"]] in ([], ["INACTIVE"])
    assert ecs.describe_task_definition(taskDefinition=td2)["taskDefinition"]["status"] == "INACTIVE"
    print(
        f"\napply (create) {create_seconds:.1f}s, apply (rollout) {rollout_seconds:.1f}s, "
        f"destroy {destroy_seconds:.1f}s; DeleteCluster answers: "
        f"{[c for c in provider_calls(tf.log) if c.startswith('DeleteCluster')]}"
    )
