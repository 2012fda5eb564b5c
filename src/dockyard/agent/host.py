"""What the agent tells RegisterContainerInstance about its host (from ``Driver.info()``).

As the ECS agent registers an EC2 instance:

- ``totalResources``: CPU = cores x 1024 units, MEMORY = MiB - reserved memory
  (``ECS_RESERVED_MEMORY``), PORTS = the ports the ECS agent reserves by default
  (22 ssh, 2375/2376 Docker, 51678/51679 the agent's own), PORTS_UDP none.
- ``attributes``: ``ecs.os-type``, ``ecs.os-family``, ``ecs.cpu-architecture``,
  ``ecs.instance-type`` (a host class, ``dockyard.<cores>c.<GiB>g``, since there is no EC2
  instance type), ``ecs.availability-zone`` and the capability attributes the ECS agent
  advertises for what this agent actually does (task definitions' ``requiresAttributes``
  name them, and placement matches on them).
- ``versionInfo``: the Dockyard version as agentVersion, and the engine's version.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import dockyard
from dockyard.agent.drivers.base import HostInfo
from dockyard.services.ecs.runtime_support import SUPPORTED_LOG_DRIVERS

RESERVED_PORTS = ["22", "2375", "2376", "51678", "51679"]
LEGACY = "com.amazonaws.ecs.capability."
CAP = "ecs.capability."
# The oldest Docker remote API the ECS agent advertises.
MIN_DOCKER_API = (1, 17)
# What the engine and the Docker translation implement (agent/engine.py, agent/docker_config.py).
CAPABILITIES = [
    LEGACY + "privileged-container",
    CAP + "container-health-check",
    CAP + "container-ordering",
    CAP + "task-cpu-mem-limit",
    CAP + "pid-ipc-namespace-sharing",
    CAP + "docker-plugin.local",
    CAP + "network.container-port-range",
]
ARCHITECTURES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}


def instance_type(info: HostInfo) -> str:
    return f"dockyard.{info.cpus}c.{max(1, round(info.memory_mib / 1024))}g"


def docker_api_versions(api_version: str) -> list[str]:
    """1.17 ... the engine's API version (the ECS agent's docker-remote-api capabilities)."""
    try:
        major, minor = (int(x) for x in api_version.split(".")[:2])
    except ValueError:
        return [f"{MIN_DOCKER_API[0]}.{MIN_DOCKER_API[1]}"]
    if major != 1:
        return [f"{MIN_DOCKER_API[0]}.{MIN_DOCKER_API[1]}"]
    return [f"1.{m}" for m in range(MIN_DOCKER_API[1], max(minor, MIN_DOCKER_API[1]) + 1)]


@functools.cache
def agent_hash() -> str:
    """The source's git commit when running from a checkout, else the version."""
    root = Path(dockyard.__file__).resolve().parents[2]
    head = root / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            ref = (root / ".git" / ref[5:]).read_text().strip()
        if len(ref) >= 8 and all(c in "0123456789abcdef" for c in ref):
            return ref[:8]
    except OSError:
        pass
    return dockyard.__version__


def registration(info: HostInfo, region: str, availability_zone: str | None = None,
                 reserved_memory: int = 0) -> dict[str, Any]:
    """totalResources, attributes and versionInfo for RegisterContainerInstance."""
    memory = max(0, info.memory_mib - max(0, reserved_memory))
    resources = [
        {"name": "CPU", "type": "INTEGER", "integerValue": info.cpus * 1024},
        {"name": "MEMORY", "type": "INTEGER", "integerValue": memory},
        {"name": "PORTS", "type": "STRINGSET", "stringSetValue": list(RESERVED_PORTS)},
        {"name": "PORTS_UDP", "type": "STRINGSET", "stringSetValue": []},
    ]
    attrs: list[dict[str, str]] = [
        {"name": "ecs.os-type", "value": info.os_type or "linux"},
        {"name": "ecs.os-family", "value": (info.os_type or "linux").upper()},
        {"name": "ecs.cpu-architecture", "value": ARCHITECTURES.get(info.architecture, info.architecture)},
        {"name": "ecs.instance-type", "value": instance_type(info)},
        {"name": "ecs.availability-zone", "value": availability_zone or f"{region}a"},
    ]
    names = [LEGACY + "docker-remote-api." + v for v in docker_api_versions(info.api_version)]
    names += [LEGACY + "logging-driver." + d for d in info.logging_drivers if d in SUPPORTED_LOG_DRIVERS]
    names += CAPABILITIES
    attrs += [{"name": n} for n in dict.fromkeys(names)]
    return {
        "totalResources": resources,
        "attributes": attrs,
        "versionInfo": {"agentVersion": dockyard.__version__, "agentHash": agent_hash(),
                        "dockerVersion": f"DockerVersion: {info.server_version}"},
    }
