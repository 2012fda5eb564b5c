"""The runtime driver interface: everything the agent asks of a container engine.

Two implementations: ``drivers/docker.py`` (the local Docker engine through
aiodocker) and ``drivers/fake.py`` (deterministic, in-process, for tests and
for simulating many hosts on one machine).

Containers are described to a driver by a ``ContainerSpec`` whose ``config`` is
a Docker Engine API ``ContainerCreate`` body (``agent/docker_config.py`` builds it
from the ECS container definition). The fake driver reads the same body, so the
translation is exercised by both.

A driver reports what happens to containers as ``ContainerEvent``s on one
async iterator (``events()``); the agent never polls a container's state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol


class DriverError(Exception):
    """A runtime operation failed; ``reason`` is ECS's error name (CannotPullContainerError, ...)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclass(slots=True)
class HostInfo:
    cpus: int
    memory_mib: int
    os_type: str  # "linux"
    architecture: str  # "x86_64" | "arm64"
    api_version: str  # the engine's API version, e.g. "1.41"
    server_version: str
    logging_drivers: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ContainerSpec:
    name: str  # the engine-side container name
    config: dict[str, Any]  # Docker Engine API ContainerCreate body (Labels included)


@dataclass(slots=True)
class PortBinding:
    container_port: int
    host_port: int
    protocol: str  # "tcp" | "udp"
    host_ip: str


@dataclass(slots=True)
class ContainerStatus:
    id: str
    name: str
    labels: dict[str, str]
    state: Literal["created", "running", "exited", "dead", "paused", "restarting", "removing"]
    exit_code: int | None = None
    oom_killed: bool = False
    error: str = ""  # the engine's own error text, when it failed to start
    health: Literal["healthy", "unhealthy", "starting", ""] = ""
    started_at: float | None = None  # epoch seconds
    finished_at: float | None = None
    image_digest: str = ""
    ports: list[PortBinding] = field(default_factory=list)


@dataclass(slots=True)
class ContainerUsage:
    """Cumulative CPU time and current memory of a running container (one sample)."""

    cpu_ns: int  # CPU time used since the container started, all cores
    memory_bytes: int  # resident memory now (the engine's usage less page cache)
    time: float  # monotonic seconds when sampled


@dataclass(slots=True)
class ContainerEvent:
    """Something happened to a managed container.

    kind: "start", "die" (exited; ``exit_code`` set, ``oom`` when the kernel killed it for
    memory), "health" (``health`` is "healthy" | "unhealthy" | "starting"), "destroy".
    """

    id: str
    kind: Literal["start", "die", "health", "destroy"]
    labels: dict[str, str]
    exit_code: int | None = None
    oom: bool = False
    health: str = ""
    time: float = 0.0


class Driver(Protocol):
    async def info(self) -> HostInfo: ...

    async def image_present(self, ref: str) -> bool: ...

    async def pull(self, ref: str, auth: dict[str, str] | None = None) -> None:
        """Pull ``ref``; raises DriverError("CannotPullContainerError", ...) on failure."""

    async def create(self, spec: ContainerSpec) -> str:
        """Create the container (not started); returns its id. DriverError("CannotCreateContainerError")."""

    async def start(self, container_id: str) -> None:
        """DriverError("CannotStartContainerError") on failure."""

    async def stop(self, container_id: str, timeout: float) -> None:
        """The stop signal (STOPSIGNAL or SIGTERM), then SIGKILL after ``timeout`` seconds.

        Returns once the container has exited. Stopping an exited container is not an error.
        """

    async def inspect(self, container_id: str) -> ContainerStatus | None:
        """None when the container does not exist."""

    async def usage(self, container_id: str) -> ContainerUsage | None:
        """One sample of CPU and memory use; None when the container is not running."""

    async def remove(self, container_id: str) -> None:
        """Remove a stopped container (and its anonymous volumes); missing is not an error."""

    async def list_managed(self, label: str, value: str) -> list[ContainerStatus]:
        """Every container (running or not) whose label ``label`` equals ``value``."""

    async def create_volume(self, name: str, driver: str, options: dict[str, str],
                            labels: dict[str, str]) -> None:
        """Create a named volume if it does not exist (idempotent)."""

    async def remove_volume(self, name: str) -> None: ...

    async def volume_present(self, name: str) -> bool:
        """Whether a named volume exists (a shared volume without autoprovision must)."""
        ...

    def events(self) -> AsyncIterator[ContainerEvent]:
        """Events of containers carrying the agent's labels, from now on, until close()."""
        ...

    async def close(self) -> None: ...
