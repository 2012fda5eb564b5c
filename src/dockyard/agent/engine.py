"""The agent's task engine: desired task payloads in, containers on a driver, task states out.

The engine holds one ``ManagedTask`` (``agent/task.py``) per task ARN and is the only
consumer of the driver's events (``run()``), which it hands to the task owning the
container. Everything runs on the event loop; nothing polls or sleeps on the start path.

Checkpoints (``agent/checkpoint.py``): each task's payload is saved to
``<data_dir>/tasks/<task id>.json`` when first applied (atomic rename, no fsync, by a writer
thread so the loop does no file I/O: the containers' labels carry their identity, and a
checkpoint lost with a crash is rebuilt from the next full payload). The stop decision and
the final state are added when they happen, so a restarted agent (``adopt()``) rebuilds
every task from the checkpoint plus the containers it finds by label, without restarting
or recreating any. The checkpoint goes with the task's containers at cleanup.

Task-scoped bind-mount host directories live under ``<data_dir>/<task id>/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard.agent.checkpoint import CheckpointStore
from dockyard.agent.drivers.base import ContainerEvent, Driver, DriverError
from dockyard.agent.protocol import (
    LABEL_CONTAINER_NAME,
    LABEL_INSTANCE,
    LABEL_TASK_ARN,
    TaskPayload,
    TaskState,
)
from dockyard.agent.pull import ImagePuller
from dockyard.agent.task import REASON_NOT_KNOWN, RUNNING, STOPPED, Container, ManagedTask

log = logging.getLogger("dockyard.agent.engine")


@dataclass
class EngineConfig:
    cluster_arn: str
    instance_arn: str
    data_dir: Path  # task-scoped bind-mount host directories live under here
    pull_behavior: str = "default"  # default | always | once | prefer-cached (ECS_IMAGE_PULL_BEHAVIOR)
    stop_timeout: float = 30.0  # ECS_CONTAINER_STOP_TIMEOUT
    start_timeout: float = 180.0  # ECS_CONTAINER_START_TIMEOUT (dependsOn waits)
    cleanup_wait: float = 3 * 3600.0  # ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION
    bind_ip: str = "0.0.0.0"  # host address published container ports bind to


class TaskEngine:
    """Runs the tasks the server wants on this host and reports what they do.

    ``report(state)`` is called (on the event loop, never blocking) each time a task's
    reportable state changes; the session sends it up and resends it until acknowledged.
    """

    def __init__(self, driver: Driver, config: EngineConfig, report: Callable[[TaskState], None]) -> None:
        self.driver = driver
        self.config = config
        self._report = report
        self.tasks: dict[str, ManagedTask] = {}
        self._usage: dict[str, tuple[int, float]] = {}  # container id -> last (cpu ns, time) sample
        self._by_id: dict[str, ManagedTask] = {}
        self.puller = ImagePuller(driver, config.pull_behavior, config.data_dir / "pulled-images.json")
        self._checkpoints = CheckpointStore(config.data_dir / "tasks")
        self._events: AsyncIterator[ContainerEvent] | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._closed = False

    # -- for the tasks ---------------------------------------------------------------------

    def report(self, state: TaskState) -> None:
        if self._closed:
            return
        try:
            self._report(state)
        except Exception:
            log.exception("the report callback failed")

    def register(self, container_id: str, task: ManagedTask) -> None:
        self._by_id[container_id] = task

    def checkpoint(self, task: ManagedTask) -> None:
        """Save the task's checkpoint (payload, stop decision, final state); written off the loop."""
        if task.payload is None or self._closed:
            return
        doc: dict[str, Any] = {"payload": task.payload}
        if task.desired == STOPPED:
            doc["stop"] = {"stopCode": task.stop_code, "reason": task.stop_reason, "agent": task.agent_stopped}
        if task.stopped:
            doc["final"] = task.state()
        self._checkpoints.save(task.id, doc)

    # -- the interface -----------------------------------------------------------------------

    async def adopt(self) -> list[TaskState]:
        """At start-up: take over the containers this instance already has (by label).

        Returns the current state of every adopted task; nothing is restarted or recreated.
        """
        # Subscribe before listing: whatever happens from now on is in the stream run() reads.
        if self._events is None:
            self._events = self.driver.events()
        await self._checkpoints.flush()  # an engine of this process may have just written them
        saved: dict[str, dict[str, Any]] = {}
        for saved_doc in self._checkpoints.load():
            try:
                saved[saved_doc["payload"]["taskArn"]] = saved_doc
            except (KeyError, TypeError):
                log.warning("ignoring a checkpoint without a task payload")
        found = await self.driver.list_managed(LABEL_INSTANCE, self.config.instance_arn)
        by_task: dict[str, list[Any]] = {}
        for st in found:
            arn = st.labels.get(LABEL_TASK_ARN)
            if arn:
                by_task.setdefault(arn, []).append(st)
        loop = asyncio.get_running_loop()
        adopted: list[tuple[ManagedTask, dict[str, Any] | None, str | None]] = []
        for arn in list(saved) + [a for a in by_task if a not in saved]:
            if arn in self.tasks:
                continue
            doc = saved.get(arn)
            task = ManagedTask(self, arn, doc["payload"] if doc else None)
            task.quiet = True
            failure = task.build() if task.payload is not None else None
            for st in by_task.get(arn, []):
                task.adopt_container(st, st.labels.get(LABEL_CONTAINER_NAME, ""), loop.time())
                self.register(st.id, task)
            if doc and doc.get("final"):
                task.final = doc["final"]
                task.stopped = True
                task.desired = STOPPED
            self.tasks[arn] = task
            adopted.append((task, doc.get("stop") if doc else None, failure))
        for task, stop, failure in adopted:
            if failure is not None:  # planned before, not now (the agent changed): stop what is there
                task.begin_stop("TaskFailedToStart", failure, agent=True)
            elif task.payload is not None:
                task.resume(stop)
            else:
                task.observe()  # known by its labels only, until the server's payload comes
        for task, _, _ in adopted:
            task.settle()
        return [t.state() for t, _, _ in adopted]

    def apply(self, payloads: list[TaskPayload], full: bool) -> None:
        """New desired state. Idempotent. With ``full``, tasks not listed are stopped."""
        if self._closed:
            return
        listed: set[str] = set()
        for p in payloads:
            arn = p["taskArn"]
            listed.add(arn)
            task = self.tasks.get(arn)
            if p.get("desiredStatus") == STOPPED:
                if task is None:
                    self._stopped_unknown(p)
                else:
                    if task.payload is None:
                        self._attach(task, p, resume=False)
                    task.begin_stop(p.get("stopCode", ""), p.get("stoppedReason", ""), agent=False)
            elif task is None:
                self._start(p)
            elif task.payload is None:
                self._attach(task, p, resume=True)
        if full:
            for arn, task in list(self.tasks.items()):
                if arn not in listed and task.desired == RUNNING:
                    task.begin_stop("", REASON_NOT_KNOWN, agent=True)

    def acknowledged(self, task_arn: str, last_status: str) -> None:
        """The server has durably recorded ``last_status`` for the task (STOPPED: cleanup may start)."""
        task = self.tasks.get(task_arn)
        if last_status != STOPPED or task is None or not task.stopped or self._closed:
            return
        if task.cleanup_handle is not None or task.cleanup_task is not None:
            return
        loop = asyncio.get_running_loop()
        task.cleanup_handle = loop.call_later(max(self.config.cleanup_wait, 0.0), self._begin_cleanup, task)

    def states(self) -> list[TaskState]:
        """The current state of every task the engine knows."""
        return [t.state() for t in self.tasks.values()]

    async def usage(self) -> dict[str, dict[str, float]]:
        """Per RUNNING task: CPU units in use (since the previous sample) and memory MiB now.

        Sent up with heartbeats (protocol ``stats``); a task's first sample has memory only.
        """
        running = [(t.arn, c.id) for t in self.tasks.values() if t.last_status() == RUNNING
                   for c in t.containers.values() if c.id and c.status == RUNNING]
        samples = await asyncio.gather(*(self.driver.usage(cid) for _, cid in running), return_exceptions=True)
        out: dict[str, dict[str, float]] = {}
        seen: dict[str, tuple[int, float]] = {}
        for (arn, cid), u in zip(running, samples, strict=True):
            if u is None or isinstance(u, BaseException):
                continue
            entry = out.setdefault(arn, {"memory": 0.0})
            entry["memory"] += u.memory_bytes / (1024 * 1024)
            seen[cid] = (u.cpu_ns, u.time)
            prev = self._usage.get(cid)
            if prev is not None and u.time > prev[1]:
                # CPU units: 1024 per core-second used per second of wall time.
                cpu = (u.cpu_ns - prev[0]) / 1e9 / (u.time - prev[1]) * 1024
                entry["cpu"] = entry.get("cpu", 0.0) + max(cpu, 0.0)
        self._usage = seen
        return out

    async def run(self) -> None:
        """Consume the driver's events until close(); the engine's only loop."""
        if self._closed:
            return
        if self._events is None:
            self._events = self.driver.events()
        self._consumer = asyncio.get_running_loop().create_task(self._consume(self._events))
        try:
            await self._consumer
        except asyncio.CancelledError:
            if not self._closed:
                raise

    async def close(self) -> None:
        """Stop managing (containers keep running, to be adopted by the next start)."""
        self._closed = True
        if self._consumer is not None and not self._consumer.done():
            self._consumer.cancel()
            await asyncio.gather(self._consumer, return_exceptions=True)
        pending: list[asyncio.Task[Any]] = []
        for t in self.tasks.values():
            pending += t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        await self._checkpoints.flush()
        events, self._events = self._events, None
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()

    async def flush_checkpoints(self) -> None:
        """Wait until every checkpoint change requested so far is on disk (tests, shutdown)."""
        await self._checkpoints.flush()

    # -- internals -----------------------------------------------------------------------------

    def _start(self, payload: TaskPayload) -> None:
        task = ManagedTask(self, payload["taskArn"], payload)
        self.tasks[task.arn] = task
        failure = task.build()
        if failure is not None:
            task.build_failed(failure)  # STOPPED at once; nothing on the host, no checkpoint
            return
        self.checkpoint(task)
        task.launch()

    def _stopped_unknown(self, payload: TaskPayload) -> None:
        """Desired STOPPED for a task this host never ran: STOPPED at once."""
        task = ManagedTask(self, payload["taskArn"], None)
        for cd in (payload.get("taskDefinition") or {}).get("containerDefinitions") or []:
            if cd.get("name"):
                task.containers[cd["name"]] = Container(name=cd["name"], status=STOPPED)
        for ref in payload.get("containers") or []:
            if ref.get("name") and ref["name"] not in task.containers:
                task.containers[ref["name"]] = Container(name=ref["name"], status=STOPPED)
        task.desired = STOPPED
        task.stopped = True
        self.tasks[task.arn] = task
        task.update()

    def _attach(self, task: ManagedTask, payload: TaskPayload, resume: bool) -> None:
        """A payload for a task adopted from container labels alone (its checkpoint was lost)."""
        task.payload = payload
        if task.build() is not None:
            # Cannot plan it now: keep what is on the host and stop it.
            task.begin_stop("TaskFailedToStart", "CannotCreateContainerError: the task cannot be rebuilt",
                            agent=True)
            return
        self.checkpoint(task)
        if resume:
            task.resume(None)

    def _begin_cleanup(self, task: ManagedTask) -> None:
        task.cleanup_handle = None
        if self._closed or self.tasks.get(task.arn) is not task:
            return
        task.cleanup_task = asyncio.get_running_loop().create_task(self._cleanup(task), name=f"cleanup {task.id}")

    async def _cleanup(self, task: ManagedTask) -> None:
        """Remove the task's checkpoint, containers, task-scoped volumes and host directories."""
        # The checkpoint first: a crash half-way leaves containers known by their labels only,
        # which the next full sync stops and cleans, never a checkpoint that would restart them.
        self._checkpoints.delete(task.id)
        driver = self.driver
        for ref in task.cleanup_targets():
            try:
                await driver.remove(ref)
            except DriverError as e:
                log.warning("task %s: removing container %s failed: %s", task.arn, ref, e)
        plan = task.plan
        if plan is not None:
            for v in plan.volumes:
                if v.scope == "task":
                    try:
                        await driver.remove_volume(v.name)
                    except DriverError as e:
                        log.warning("task %s: removing volume %s failed: %s", task.arn, v.name, e)
            parents = set()
            for d in plan.host_dirs:
                shutil.rmtree(d, ignore_errors=True)
                parents.add(d.parent)
            for parent in parents:  # <data_dir>/<task id>, when nothing else is in it
                with contextlib.suppress(OSError):
                    parent.rmdir()
        for c in task.containers.values():
            if c.id is not None and self._by_id.get(c.id) is task:
                del self._by_id[c.id]
        for cid in task.stray_ids:
            if self._by_id.get(cid) is task:
                del self._by_id[cid]
        if self.tasks.get(task.arn) is task:
            del self.tasks[task.arn]

    async def _consume(self, events: AsyncIterator[ContainerEvent]) -> None:
        async for ev in events:
            task = self._by_id.get(ev.id)
            if task is None:
                task = self.tasks.get(ev.labels.get(LABEL_TASK_ARN, ""))
                if task is None:
                    continue
            try:
                task.on_event(ev)
            except Exception:
                log.exception("task %s: handling a %s event failed", task.arn, ev.kind)

