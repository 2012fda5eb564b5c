"""A real ``dockyard server`` and a real ``dockyard agent`` process (Docker driver), for the tests
(and benchmarks) that run containers on the local Docker engine.

    env = DockerAgentEnv(image, prefix="dockyard-x-", cluster_prefix="x-", heartbeat=1.0)
    with env.agent_running():                # the agent connected; at the end everything removed
        env.ecs.run_task(cluster=env.cluster, ...)
        env.docker_ids(task_arn)             # the task's containers on the engine

The server and the agent share the env's temporary directory; the agent uses
``--pull-behavior prefer-cached`` and binds published ports to 127.0.0.1. ``cleanup()`` stops
both and removes every container the agent created (label
``io.dockyard.container-instance=<instance ARN>``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self, TypeVar

from dockyard.agent import protocol
from dockyard.agent.protocol import LABEL_INSTANCE, LABEL_TASK_ARN
from tests.helpers.agents import create_agent_key
from tests.helpers.server import ServerProcess, interrupt
from tests.helpers.wait import wait_until as _wait_until

T = TypeVar("T")


def docker(*args: str) -> str:
    """``docker ARGS``'s standard output (whatever the exit status)."""
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60, check=False).stdout


def inspect(cid: str) -> dict[str, Any]:
    """``docker inspect`` of one container ({} if there is none)."""
    out = docker("inspect", cid)
    return json.loads(out)[0] if out.strip() else {}


def wait_until(fn: Callable[[], T], timeout: float = 30.0, what: str = "condition", interval: float = 0.1) -> T:
    """tests.helpers.wait.wait_until, polling every 0.1 s (each poll is an API call or a docker CLI run)."""
    return _wait_until(fn, timeout, what, interval)


def agent_command(endpoint: str, cluster: str, data_dir: Path, pull_behavior: str = "prefer-cached") -> list[str]:
    """``dockyard agent`` with the Docker driver, published ports bound to 127.0.0.1."""
    return [sys.executable, "-m", "dockyard.cli.main", "agent", "--server", endpoint, "--cluster", cluster,
            "--data-dir", str(data_dir), "--driver", "docker", "--bind-ip", "127.0.0.1",
            "--pull-behavior", pull_behavior]


def _tail(path: Path, chars: int) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


class DockerAgentEnv:
    """A server process, a cluster on it, an agent key and the agent process."""

    def __init__(self, image: str, *, prefix: str, cluster_prefix: str, heartbeat: float,
                 server_env: dict[str, str] | None = None) -> None:
        self.image = image
        self.heartbeat = heartbeat
        self._tmp = tempfile.TemporaryDirectory(prefix=prefix)
        root = Path(self._tmp.name)
        self.server = ServerProcess(data_dir=root / "server", env={
            protocol.HEARTBEAT_ENV: str(heartbeat), **(server_env or {})}).start()
        self.ecs = self.server.client("ecs")
        self.cluster = cluster_prefix + uuid.uuid4().hex[:8]
        self.ecs.create_cluster(clusterName=self.cluster)
        self.key, self.secret = create_agent_key(self.server)
        self.agent_dir = root / "agent"
        self.agent_log = root / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.instance_arn: str | None = None

    @contextmanager
    def agent_running(self) -> Iterator[Self]:
        """The agent started (and connected) for the block; ``cleanup()`` after it."""
        try:
            self.start_agent()
            yield self
        finally:
            self.cleanup()

    # -- the agent process ----------------------------------------------------------------------

    def start_agent(self) -> str:
        """Start the agent; the ARN of its container instance once it is connected."""
        cmd = agent_command(self.server.endpoint, self.cluster, self.agent_dir)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_PROFILE", "AWS_SHARED"))}
        env.update(AWS_ACCESS_KEY_ID=self.key, AWS_SECRET_ACCESS_KEY=self.secret, AWS_EC2_METADATA_DISABLED="true",
                   **{protocol.HEARTBEAT_ENV: str(self.heartbeat)})
        with open(self.agent_log, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        arn = wait_until(self._connected_instance, timeout=30, what="the agent to connect")
        assert arn is not None  # wait_until returns a truthy value
        self.instance_arn = arn
        return arn

    def _connected_instance(self) -> str | None:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"the agent exited ({self.proc.returncode}):\n{self.log()}")
        arns = self.ecs.list_container_instances(cluster=self.cluster)["containerInstanceArns"]
        if len(arns) == 1 and self.instance(arns[0])["agentConnected"]:
            return arns[0]
        return None

    def stop_agent(self) -> None:
        interrupt(self.proc, timeout=20)
        self.proc = None

    def agent_log_tail(self, chars: int) -> str:
        return _tail(self.agent_log, chars)

    def server_log_tail(self, chars: int) -> str:
        return _tail(self.server.log_path, chars)

    def log(self) -> str:
        """The ends of the agent's and the server's logs, for failure messages."""
        return (f"--- agent log ---\n{self.agent_log_tail(4000)}\n"
                f"--- server log ---\n{self.server_log_tail(4000)}")

    # -- the API and the engine -------------------------------------------------------------------

    def instance(self, arn: str | None = None) -> dict[str, Any]:
        """DescribeContainerInstances of ``arn`` (the agent's instance unless given)."""
        return self.ecs.describe_container_instances(cluster=self.cluster,
                                                     containerInstances=[arn or self.instance_arn])[
            "containerInstances"][0]

    def task(self, arn: str) -> dict[str, Any]:
        return self.ecs.describe_tasks(cluster=self.cluster, tasks=[arn])["tasks"][0]

    def docker_ids(self, task_arn: str, all_: bool = True) -> list[str]:
        """The engine's ids of the task's containers (with ``all_``, stopped ones too)."""
        args = ["ps", "-q", "--no-trunc", "--filter", f"label={LABEL_TASK_ARN}={task_arn}"]
        if all_:
            args.insert(1, "-a")
        return sorted(docker(*args).split())

    def cleanup(self) -> None:
        self.stop_agent()
        self.server.stop()
        if self.instance_arn:
            ids = docker("ps", "-aq", "--filter", f"label={LABEL_INSTANCE}={self.instance_arn}").split()
            if ids:
                docker("rm", "-fv", *ids)
        self._tmp.cleanup()
