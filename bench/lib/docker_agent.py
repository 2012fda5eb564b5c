"""A real `dockyard agent` process (Docker driver) beside a `dockyard server` process, and the
bare `docker run -d` baseline: what bench/launch.py and bench/heal.py share."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.helpers.agents import create_agent_key  # noqa: E402
from tests.helpers.docker_env import agent_command, docker  # noqa: E402
from tests.helpers.server import ServerProcess  # noqa: E402


def start_agent(server: ServerProcess, data_dir: Path, cluster: str, pull: str) -> subprocess.Popen[bytes]:
    """The agent under ``data_dir/agent`` with a new key, its output in ``data_dir/agent.log``."""
    key, secret = create_agent_key(server, user="bench-agent")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret}
    log_file = open(data_dir / "agent.log", "ab")  # noqa: SIM115  (the child keeps it)
    return subprocess.Popen(agent_command(server.endpoint, cluster, data_dir / "agent", pull),
                            stdout=log_file, stderr=subprocess.STDOUT, env=env)


def wait_connected(ecs: Any, cluster: str, timeout: float = 30.0) -> str:
    """The ARN of the cluster's one container instance, once its agent is connected."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        arns = ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]
        if arns:
            d = ecs.describe_container_instances(cluster=cluster, containerInstances=arns)
            if all(ci["agentConnected"] for ci in d["containerInstances"]):
                return str(arns[0])
        time.sleep(0.1)
    raise RuntimeError("the agent did not connect")


def shut_down(agent: subprocess.Popen[bytes] | None, server: ServerProcess, labels: list[str]) -> None:
    """Stop the agent and the server, then remove every container with one of ``labels``
    (``key=value``; one with no value, such as an instance label before the agent connected, is skipped)."""
    if agent is not None:
        agent.terminate()
        agent.wait(timeout=15)
    server.stop()
    for label in labels:
        if label.endswith("="):
            continue
        ids = docker("ps", "-aq", "--filter", f"label={label}").split()
        if ids:
            docker("rm", "-f", *ids)


def bare_run(image: str, label: str) -> float:
    """Wall time of `docker run -d --label LABEL IMAGE sleep 3600` (the CLI returns once the container
    is started); then the container is removed."""
    t0 = time.perf_counter()
    cid = subprocess.run(["docker", "run", "-d", "--label", label, image, "sleep", "3600"], check=True,
                         capture_output=True, text=True).stdout.strip()
    dt = time.perf_counter() - t0
    subprocess.run(["docker", "rm", "-f", cid], check=True, capture_output=True)
    return dt


def summary(xs: list[float]) -> dict[str, float]:
    """min / median / p90 of ``xs`` (seconds) in milliseconds."""
    s = sorted(xs)
    return {"min_ms": s[0] * 1e3, "median_ms": statistics.median(s) * 1e3,
            "p90_ms": s[min(len(s) - 1, int(0.9 * len(s)))] * 1e3}
