"""Services end to end on a real Docker engine: a `dockyard server` process (its service
controller) and a `dockyard agent` process with the Docker driver, driven through boto3.

Everything runs the locally built busybox image (tests/helpers/images.py). The agent uses
``--pull-behavior prefer-cached`` as in test_tasks_docker.py: the busybox image is in the
cache, so nothing is pulled; an image that is *not* in the cache is still pulled, and the
missing image of the circuit-breaker test (under 127.0.0.1:5999, where nothing listens) fails
that pull at once with CannotPullContainerError, before the task gets to RUNNING.

The server runs with DOCKYARD_SERVICE_STABLE_SECONDS=0.5 (a RUNNING task with no health check
counts healthy after 0.5 s instead of ECS's 40 s). One server and one agent serve the module;
every container the agent created (label ``io.dockyard.container-instance=<instance ARN>``)
is removed at the end.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.helpers.docker_env import DockerAgentEnv, docker, inspect, wait_until
from tests.helpers.images import busybox_image

pytestmark = [pytest.mark.docker, pytest.mark.timeout(180)]

HEARTBEAT = 1.0  # the server's silence limit is 3 x this
STABLE_SECONDS = 0.5
# Nothing listens on 127.0.0.1:5999 and this tag is never built: the pull fails fast.
MISSING_IMAGE = "127.0.0.1:5999/dockyard-test/missing:nope"
BREAKER_REASON = "ECS deployment circuit breaker: tasks failed to start."


class Env(DockerAgentEnv):
    """The module's server, its agent process, a cluster."""

    def __init__(self, image: str) -> None:
        super().__init__(image, prefix="dockyard-services-docker-", cluster_prefix="svc-docker-",
                         heartbeat=HEARTBEAT, server_env={
                             "DOCKYARD_SERVICE_STABLE_SECONDS": str(STABLE_SECONDS),
                             "DOCKYARD_SERVICE_RETRY_SECONDS": "1",
                         })

    # -- the API ----------------------------------------------------------------------------------

    def task_definition(self, image: str | None = None, family: str | None = None) -> str:
        # sleep as PID 1 ignores TERM: stopTimeout 2 s rather than the agent's default 30 s.
        c = {"name": "main", "image": image or self.image, "memory": 32, "essential": True,
             "command": ["sleep", "3600"], "stopTimeout": 2}
        td = self.ecs.register_task_definition(family=family or "svc-" + uuid.uuid4().hex[:8],
                                               containerDefinitions=[c])
        return td["taskDefinition"]["taskDefinitionArn"]

    def service(self, name: str) -> dict[str, Any]:
        r = self.ecs.describe_services(cluster=self.cluster, services=[name])
        assert not r["failures"], r["failures"]
        return r["services"][0]

    def tasks(self, name: str, status: str = "RUNNING") -> list[dict[str, Any]]:
        arns = self.ecs.list_tasks(cluster=self.cluster, serviceName=name, desiredStatus=status)["taskArns"]
        if not arns:
            return []
        return self.ecs.describe_tasks(cluster=self.cluster, tasks=arns)["tasks"]

    def wait_completed(self, name: str, count: int, timeout: float = 40.0) -> dict[str, Any]:
        def check():
            s = self.service(name)
            p = s["deployments"][0]
            if (p["status"] == "PRIMARY" and p.get("rolloutState") == "COMPLETED" and len(s["deployments"]) == 1
                    and s["runningCount"] == count and s["pendingCount"] == 0):
                return s
            return None
        try:
            return wait_until(check, timeout, f"service {name} to be COMPLETED with {count} running")
        except AssertionError as e:
            raise AssertionError(f"{e}: {self.service(name)}\n{self.log()}") from None

    def delete_service(self, name: str) -> None:
        try:
            self.ecs.delete_service(cluster=self.cluster, service=name, force=True)
        except Exception:  # best effort: the module's cleanup removes the containers
            pass


@pytest.fixture(scope="module")
def env():
    with Env(busybox_image()).agent_running() as e:
        yield e


def messages(svc: dict[str, Any]) -> list[str]:
    return [ev["message"] for ev in svc.get("events", [])]


# -- the tests -----------------------------------------------------------------------------------

def test_replica_service_replaces_a_killed_task(env):
    name = "web-" + uuid.uuid4().hex[:6]
    td = env.task_definition()
    env.ecs.create_service(cluster=env.cluster, serviceName=name, taskDefinition=td, desiredCount=2,
                           launchType="EC2")
    try:
        svc = env.wait_completed(name, 2)
        assert svc["deployments"][0]["taskDefinition"] == td
        tasks = env.tasks(name)
        assert len(tasks) == 2 and all(t["lastStatus"] == "RUNNING" for t in tasks), tasks
        assert all(t["startedBy"] == svc["deployments"][0]["id"] for t in tasks), tasks
        before = {t["taskArn"] for t in tasks}
        for t in tasks:
            (c,) = t["containers"]
            assert env.docker_ids(t["taskArn"], all_=False) == [c["runtimeId"]]

        victim = sorted(before)[0]
        (cid,) = env.docker_ids(victim, all_=False)
        docker("kill", cid)

        t = wait_until(lambda: (t := env.task(victim))["lastStatus"] == "STOPPED" and t, 20,
                       "the killed task to stop")
        assert t["stopCode"] == "EssentialContainerExited", t
        assert t["containers"][0]["exitCode"] == 137, t["containers"]

        def replaced():
            running = [x for x in env.tasks(name) if x["lastStatus"] == "RUNNING"]
            arns = {x["taskArn"] for x in running}
            return running if len(running) == 2 and victim not in arns and len(arns - before) == 1 else None
        running = wait_until(replaced, 20, "a replacement task to be RUNNING")
        (new,) = [x for x in running if x["taskArn"] not in before]
        assert new["startedBy"] == svc["deployments"][0]["id"], new
        assert new["taskDefinitionArn"] == td
        # A new container really runs for it.
        (new_cid,) = env.docker_ids(new["taskArn"], all_=False)
        assert new_cid == new["containers"][0]["runtimeId"] and new_cid != cid
        assert inspect(new_cid)["State"]["Running"] is True
        # The survivor was left alone.
        (survivor,) = before - {victim}
        assert survivor in {x["taskArn"] for x in running}

        svc = wait_until(lambda: (s := env.service(name))["runningCount"] == 2 and s["pendingCount"] == 0 and s,
                         20, "runningCount 2")
        new_id = new["taskArn"].rsplit("/", 1)[-1]
        assert any(m == f"(service {name}) has started 1 tasks: (task {new_id})." for m in messages(svc)), \
            messages(svc)
        assert svc["deployments"][0]["rolloutState"] == "COMPLETED"
    finally:
        env.delete_service(name)


def breaker_scenario(env) -> dict[str, Any] | None:
    """A service on a good task definition is updated to one whose image cannot be pulled;
    checks the breaker trips and the rollback completes. Returns the failed deployment as
    DescribeServices showed it with rolloutState FAILED (None if it never did)."""
    name = "cb-" + uuid.uuid4().hex[:6]
    family = "cb-" + uuid.uuid4().hex[:8]
    good = env.task_definition(family=family)
    bad = env.task_definition(image=MISSING_IMAGE, family=family)
    assert not docker("images", "-q", MISSING_IMAGE).strip(), "the missing image must not be in the cache"
    env.ecs.create_service(
        cluster=env.cluster, serviceName=name, taskDefinition=good, desiredCount=2, launchType="EC2",
        deploymentConfiguration={"deploymentCircuitBreaker": {"enable": True, "rollback": True},
                                 "minimumHealthyPercent": 100, "maximumPercent": 200})
    try:
        svc = env.wait_completed(name, 2)
        first = svc["deployments"][0]
        originals = {t["taskArn"]: t["containers"][0]["runtimeId"] for t in env.tasks(name)}
        assert len(originals) == 2

        svc = env.ecs.update_service(cluster=env.cluster, service=name, taskDefinition=bad)["service"]
        failed_id = svc["deployments"][0]["id"]
        assert svc["deployments"][0]["taskDefinition"] == bad and failed_id != first["id"]

        # Watch the rollout: the failed deployment, and the original tasks all along.
        seen_failed: dict[str, Any] | None = None
        originals_down: list[Any] = []
        rollback_event = f"(service {name}) rolling back to deployment {first['id']}."

        def rolled_back():
            nonlocal seen_failed
            s = env.service(name)
            for d in s["deployments"]:
                if d["id"] == failed_id and d.get("rolloutState") == "FAILED":
                    seen_failed = d
            live = {t["taskArn"]: t for t in env.tasks(name)}
            down = [a for a in originals if a not in live or live[a]["lastStatus"] != "RUNNING"]
            if down:
                originals_down.append([(a, live.get(a) or env.task(a)) for a in down])
            p = s["deployments"][0]
            if (rollback_event in messages(s) and p["id"] != failed_id and p["taskDefinition"] == good
                    and p.get("rolloutState") == "COMPLETED" and len(s["deployments"]) == 1
                    and s["runningCount"] == 2 and s["pendingCount"] == 0):
                return s
            return None

        try:
            svc = wait_until(rolled_back, 60, "the rollback to complete", interval=0.05)
        except AssertionError as e:
            s = env.service(name)
            ts = [(t["taskArn"][-6:], t["startedBy"], t["lastStatus"], t.get("stopCode"), t.get("stoppedReason"))
                  for t in env.tasks(name) + env.tasks(name, "STOPPED")]
            raise AssertionError(f"{e}: failed deployment {failed_id}, first {first['id']}\n"
                                 f"deployments: {s['deployments']}\nevents (oldest first): {messages(s)[::-1]}\n"
                                 f"tasks: {ts}\n{env.log()}") from None

        msgs = messages(svc)
        # The original tasks kept running through the failed deployment and the rollback.
        assert not originals_down, originals_down[0]
        # The bad deployment's tasks stopped before RUNNING, unable to pull.
        bad_tasks = [t for t in env.tasks(name, "STOPPED") if t["startedBy"] == failed_id]
        assert len(bad_tasks) >= 3, bad_tasks
        assert all("startedAt" not in t for t in bad_tasks), bad_tasks
        pull_failed = [t for t in bad_tasks if t["stopCode"] == "TaskFailedToStart"
                       and t["containers"][0].get("reason", "").startswith("CannotPullContainerError")]
        assert len(pull_failed) >= 3, bad_tasks

        assert any(m == f"(service {name}) (deployment {failed_id}) deployment failed: tasks failed to start."
                   for m in msgs), msgs
        assert any(m == f"(service {name}) rolling back to deployment {first['id']}." for m in msgs), msgs
        assert first["id"].startswith("ecs-svc/")
        primary = svc["deployments"][0]
        assert primary["taskDefinition"] == good
        assert svc["taskDefinition"] == good
        assert primary["rolloutState"] == "COMPLETED"
        if seen_failed is not None:
            assert seen_failed["rolloutStateReason"] == BREAKER_REASON, seen_failed
            assert seen_failed["failedTasks"] >= 3, seen_failed

        # The service deployment of the UpdateService ends ROLLBACK_SUCCESSFUL.
        listed = env.ecs.list_service_deployments(cluster=env.cluster, service=name)["serviceDeployments"]
        arns = [d["serviceDeploymentArn"] for d in listed]
        described = env.ecs.describe_service_deployments(serviceDeploymentArns=arns)["serviceDeployments"]
        mine = [d for d in described if d["targetServiceRevision"]["arn"].endswith("/" + failed_id.split("/")[-1])]
        assert len(mine) == 1, described
        sd = mine[0]
        assert sd["status"] == "ROLLBACK_SUCCESSFUL", sd
        assert {x["serviceDeploymentArn"]: x["status"] for x in listed}[sd["serviceDeploymentArn"]] == \
            "ROLLBACK_SUCCESSFUL"
        assert sd["rollback"]["reason"] == BREAKER_REASON, sd
        assert sd["deploymentCircuitBreaker"]["status"] == "TRIGGERED", sd

        # The service runs the good image: still the two original tasks, their containers running.
        running = [t for t in env.tasks(name) if t["lastStatus"] == "RUNNING"]
        assert {t["taskArn"] for t in running} == set(originals), (running, originals)
        assert all(t["taskDefinitionArn"] == good for t in running), running
        for arn, cid in originals.items():
            assert env.docker_ids(arn, all_=False) == [cid]
            assert inspect(cid)["State"]["Running"] is True
        return seen_failed
    finally:
        env.delete_service(name)


def test_bad_image_trips_the_circuit_breaker_and_rolls_back(env):
    breaker_scenario(env)
