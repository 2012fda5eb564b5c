"""The agent's task engine: desired task payloads in, containers on a driver, task states out.

(Interface fixed first so the session and the engine can be built side by side;
the implementation fills these in.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dockyard.agent.drivers.base import Driver
from dockyard.agent.protocol import TaskPayload, TaskState


@dataclass
class EngineConfig:
    cluster_arn: str
    instance_arn: str
    data_dir: Path  # task-scoped bind-mount host directories live under here
    pull_behavior: str = "default"  # default | always | once | prefer-cached (ECS_IMAGE_PULL_BEHAVIOR)
    stop_timeout: float = 30.0  # ECS_CONTAINER_STOP_TIMEOUT
    start_timeout: float = 180.0  # ECS_CONTAINER_START_TIMEOUT (dependsOn waits)
    cleanup_wait: float = 3 * 3600.0  # ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION


class TaskEngine:
    """Runs the tasks the server wants on this host and reports what they do.

    ``report(state)`` is called (on the event loop, never blocking) each time a task's
    reportable state changes; the session sends it up and resends it until acknowledged.
    """

    def __init__(self, driver: Driver, config: EngineConfig, report: Callable[[TaskState], None]) -> None:
        raise NotImplementedError

    async def adopt(self) -> list[TaskState]:
        """At start-up: take over the containers this instance already has (by label).

        Returns the current state of every adopted task; nothing is restarted or recreated.
        """
        raise NotImplementedError

    def apply(self, payloads: list[TaskPayload], full: bool) -> None:
        """New desired state. Idempotent. With ``full``, tasks not listed are stopped."""
        raise NotImplementedError

    def acknowledged(self, task_arn: str, last_status: str) -> None:
        """The server has durably recorded ``last_status`` for the task (STOPPED: cleanup may start)."""
        raise NotImplementedError

    def states(self) -> list[TaskState]:
        """The current state of every task the engine knows."""
        raise NotImplementedError

    async def run(self) -> None:
        """Consume the driver's events until close(); the engine's only loop."""
        raise NotImplementedError

    async def close(self) -> None:
        """Stop managing (containers keep running, to be adopted by the next start)."""
        raise NotImplementedError
