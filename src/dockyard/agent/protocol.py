"""The agent channel: one websocket between each agent and the server.

This module is the single description of the wire; the server side
(``api/agent_channel.py``) and the agent side (``agent/session.py``) both use it.

Connection
----------
``GET /ws/agent?containerInstance=<arn>&<SigV4 presigned query>`` on the server's
API port. The query is presigned with the agent's own access key for service
``ecs`` (method GET, path ``/ws/agent``), as the ECS agent presigns its ACS
URL; the client sends the query exactly as signed (percent-encoded, not
re-encoded). The server refuses with HTTP 403 before the upgrade a bad signature, an
instance the key's account (and region) does not own, or an unknown or INACTIVE
instance; an instance deregistered while connected is closed with 1008. While
the socket is open the instance's ``agentConnected`` is true; it turns false
when the socket closes or when nothing arrives for ``3 * HEARTBEAT_SECONDS``. A
second connection for the same instance replaces the first (the older one is
closed with 4000).

Close codes travel in a ``close`` frame (below) sent just before the server
closes the socket: the handler's websocket interface (RSGI-style, ``api/http1.py``)
closes with 1000 whatever the reason.

``HEARTBEAT_SECONDS`` can be changed for tests with the environment variable
``DOCKYARD_AGENT_HEARTBEAT_SECONDS``, read by both ends (``heartbeat_seconds()``).

Frames are JSON text (orjson). Every frame is an object with ``type``.

Agent -> server
---------------
``hello``   first frame after the upgrade::

    {"type": "hello", "agentVersion": "...", "tasks": [TaskState, ...]}

  ``tasks`` is everything the agent has on the host for this instance (adopted
  from container labels after a restart) whose final state the server has not
  acknowledged yet. The server applies them like a ``state`` frame, then
  answers with a full ``tasks`` frame (below), which also acknowledges them.

``state``   task state changes, level-triggered (each entry is the task's whole
  current state, so resending is harmless)::

    {"type": "state", "seq": 17, "tasks": [TaskState, ...]}

  The server commits them durably and then answers ``{"type": "ack", "seq": 17}``.
  The agent keeps unacknowledged entries and resends them (in ``hello``) after
  a reconnect.

``ack``     ``{"type": "ack", "seq": N}`` for a server ``tasks`` frame.

``heartbeat`` ``{"type": "heartbeat"}`` every ``HEARTBEAT_SECONDS``; optional
  ``"stats": {taskArn: {"cpu": <units used>, "memory": <MiB used>}}`` for RUNNING tasks
  (CPU units are 1024 per core busy since the previous heartbeat; absent on a task's
  first sample). The server keeps the latest per task (``AgentHub.usage``) for the
  metrics and auto scaling to come.

Server -> agent
---------------
``tasks``   desired state::

    {"type": "tasks", "seq": 5, "full": false, "tasks": [TaskPayload, ...]}

  ``full: true`` (always the answer to ``hello``) lists every task the server
  has on this instance that is not STOPPED; the agent stops anything it runs
  for this instance that is not in a full list. ``full: false`` frames carry
  only what changed (a new task, or desiredStatus now STOPPED). Applying a
  payload is idempotent: tasks are identified by ``taskArn``, containers by
  (taskArn, container name), both carried as Docker labels.

``ack``     ``{"type": "ack", "seq": N}`` for an agent ``state`` frame.

``heartbeat`` ``{"type": "heartbeat"}`` in answer to one.

``close``   ``{"type": "close", "code": 4000, "reason": "..."}`` just before the server
  closes the socket: 4000 replaced by a newer connection, 1008 policy (the
  instance was deregistered), 1001 the server is shutting down. The agent
  reconnects with backoff (for 4000 and 1008 without resetting it).

TaskState (agent -> server)
---------------------------
::

    {"taskArn": str,
     "lastStatus": "PENDING" | "RUNNING" | "STOPPING" | "STOPPED",
     "desiredStatus": "STOPPED",          # optional: the agent decided to stop it
     "stopCode": str, "reason": str,      # optional, with desiredStatus STOPPED or STOPPED
     "healthStatus": "HEALTHY" | "UNHEALTHY" | "UNKNOWN",
     "pullStartedAt": float, "pullStoppedAt": float,       # epoch seconds, optional
     "startedAt": float, "executionStoppedAt": float,       # optional
     "containers": [ContainerState, ...]}

ContainerState::

    {"name": str, "lastStatus": "PENDING" | "RUNNING" | "STOPPED",
     "runtimeId": str, "imageDigest": str, "exitCode": int, "reason": str,
     "healthStatus": "HEALTHY" | "UNHEALTHY" | "UNKNOWN",
     "networkBindings": [{"bindIP": str, "containerPort": int, "hostPort": int, "protocol": "tcp"|"udp"}]}

All container fields but ``name`` and ``lastStatus`` are optional.

TaskPayload (server -> agent)
-----------------------------
::

    {"taskArn": str, "clusterArn": str, "desiredStatus": "RUNNING" | "STOPPED",
     "family": str, "revision": int,
     "taskDefinition": {... the RegisterTaskDefinition document: containerDefinitions,
                        volumes, networkMode, pidMode, ipcMode, cpu, memory, ...},
     "overrides": {... RunTask overrides ...},
     "containers": [{"name": str, "containerArn": str}],
     "stopCode": str, "stoppedReason": str}        # when desiredStatus is STOPPED
"""

from __future__ import annotations

import os
from typing import Any, Literal, NotRequired, TypedDict

PATH = "/ws/agent"
HEARTBEAT_SECONDS = 10.0
HEARTBEAT_ENV = "DOCKYARD_AGENT_HEARTBEAT_SECONDS"
# Close codes (sent in a ``close`` frame): 1001 server going away, 1008 policy, 4000 replaced.
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_REPLACED = 4000


def heartbeat_seconds() -> float:
    """HEARTBEAT_SECONDS, or DOCKYARD_AGENT_HEARTBEAT_SECONDS when set (tests shorten it)."""
    value = os.environ.get(HEARTBEAT_ENV)
    if value:
        try:
            seconds = float(value)
        except ValueError:
            return HEARTBEAT_SECONDS
        if seconds > 0:
            return seconds
    return HEARTBEAT_SECONDS

Status = Literal["PENDING", "RUNNING", "STOPPING", "STOPPED"]
Health = Literal["HEALTHY", "UNHEALTHY", "UNKNOWN"]


class NetworkBinding(TypedDict):
    bindIP: str
    containerPort: int
    hostPort: int
    protocol: str


class ContainerState(TypedDict):
    name: str
    lastStatus: str
    runtimeId: NotRequired[str]
    imageDigest: NotRequired[str]
    exitCode: NotRequired[int]
    reason: NotRequired[str]
    healthStatus: NotRequired[str]
    networkBindings: NotRequired[list[NetworkBinding]]


class TaskState(TypedDict):
    taskArn: str
    lastStatus: str
    desiredStatus: NotRequired[str]
    stopCode: NotRequired[str]
    reason: NotRequired[str]
    healthStatus: NotRequired[str]
    pullStartedAt: NotRequired[float]
    pullStoppedAt: NotRequired[float]
    startedAt: NotRequired[float]
    executionStoppedAt: NotRequired[float]
    containers: list[ContainerState]


class ContainerRef(TypedDict):
    name: str
    containerArn: str


class TaskPayload(TypedDict):
    taskArn: str
    clusterArn: str
    desiredStatus: str
    family: str
    revision: int
    taskDefinition: dict[str, Any]
    overrides: dict[str, Any]
    containers: list[ContainerRef]
    stopCode: NotRequired[str]
    stoppedReason: NotRequired[str]


# Docker labels the agent puts on every container it creates (the ECS agent's names),
# plus Dockyard's own for re-adoption.
LABEL_CLUSTER = "com.amazonaws.ecs.cluster"
LABEL_CONTAINER_NAME = "com.amazonaws.ecs.container-name"
LABEL_TASK_ARN = "com.amazonaws.ecs.task-arn"
LABEL_FAMILY = "com.amazonaws.ecs.task-definition-family"
LABEL_REVISION = "com.amazonaws.ecs.task-definition-version"
LABEL_INSTANCE = "io.dockyard.container-instance"
