"""One task's state machine on a runtime driver (the TaskEngine in ``engine.py`` holds many).

Life of a task (ECS semantics, see the reference's section 1):

    PENDING ── pull, volumes, create, start (dependsOn order) ──> RUNNING
       │                                                          │ essential exit /
       │ failure (TaskFailedToStart) or stop                      │ server stop / full sync
       v                                                          v
    STOPPED <──────────── every container stopped ─────────── STOPPING

- The start runs as one asyncio task (``_start``); each container is brought up by its own
  coroutine (pull first, then create after its creation dependencies, then start when its
  ``dependsOn`` conditions hold). Waits never poll: they sleep on the task's change event,
  set whenever a container changes (driver events arrive through ``on_event``).
- The stop runs as another asyncio task (``_shutdown``): the start is cancelled first, then
  each container is stopped once every container depending on it has stopped (reverse
  start order), with its own stopTimeout (signal, then SIGKILL).
- ``state()`` is the TaskState reported upstream; ``_update()`` reports it whenever a
  reportable field changed (statuses, exit codes, reasons, health, stop decision).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dockyard.agent.docker_config import PlanError, TaskPlan, plan_task, stop_timeout, task_id
from dockyard.agent.drivers.base import ContainerEvent, ContainerSpec, ContainerStatus, DriverError
from dockyard.agent.protocol import ContainerState, NetworkBinding, TaskPayload, TaskState

if TYPE_CHECKING:
    from dockyard.agent.engine import TaskEngine

log = logging.getLogger("dockyard.agent.task")

PENDING, RUNNING, STOPPING, STOPPED = "PENDING", "RUNNING", "STOPPING", "STOPPED"
HEALTHY, UNHEALTHY, UNKNOWN = "HEALTHY", "UNHEALTHY", "UNKNOWN"

STOP_FAILED_TO_START = "TaskFailedToStart"
STOP_ESSENTIAL_EXITED = "EssentialContainerExited"
REASON_ESSENTIAL_EXITED = "Essential container in task exited"
REASON_NOT_KNOWN = "Task not known to the server"
REASON_OOM = "OutOfMemoryError: Container killed due to memory usage"
REASON_MAX = 1024
# ECS reports a container whose dependency can never be met as stopped by SIGTERM.
EXIT_DEPENDENCY_FAILED = 143

_HEALTH = {"healthy": HEALTHY, "unhealthy": UNHEALTHY}
_CONDITIONS = ("START", "COMPLETE", "SUCCESS", "HEALTHY")


def _reason(text: str) -> str:
    return text if len(text) <= REASON_MAX else text[: REASON_MAX - 3] + "..."


@dataclass(eq=False, slots=True)
class Container:
    """One container of the task: its definition and what is known of it on the host."""

    name: str
    essential: bool = True
    spec: ContainerSpec | None = None
    has_health: bool = False
    start_timeout: float = 0.0
    stop_timeout: float = 30.0
    create_after: list[str] = field(default_factory=list)  # must exist before this one is created
    deps: list[tuple[str, str]] = field(default_factory=list)  # (container, condition) before start
    id: str | None = None
    create_attempted: bool = False
    status: str = PENDING
    ever_running: bool = False
    failed: bool = False  # never started and never will (pull, create, start or dependency failure)
    started_at: float | None = None  # epoch seconds
    started_mono: float | None = None  # loop time of the start (dependency timeouts)
    exit_code: int | None = None
    reason: str = ""
    health: str = UNKNOWN
    was_healthy: bool = False
    image_digest: str = ""
    bindings: list[NetworkBinding] = field(default_factory=list)

    def state(self) -> ContainerState:
        s: ContainerState = {"name": self.name, "lastStatus": self.status}
        if self.id:
            s["runtimeId"] = self.id
        if self.image_digest:
            s["imageDigest"] = self.image_digest
        if self.exit_code is not None:
            s["exitCode"] = self.exit_code
        if self.reason:
            s["reason"] = self.reason
        if self.has_health:
            s["healthStatus"] = self.health
        if self.bindings:
            s["networkBindings"] = list(self.bindings)
        return s


class ManagedTask:
    def __init__(self, engine: TaskEngine, arn: str, payload: TaskPayload | None) -> None:
        self.engine = engine
        self.arn = arn
        self.id = task_id(arn)
        self.payload = payload
        self.plan: TaskPlan | None = None
        self.containers: dict[str, Container] = {}
        self.stray_ids: list[str] = []  # containers of this task on the host not in its definition
        self.desired = RUNNING
        self.reached_running = False
        self.stopping = False  # containers are being stopped
        self.stopped = False  # final
        self.stop_code = ""
        self.stop_reason = ""
        self.agent_stopped = False  # the agent decided the stop (reported as desiredStatus)
        self.pull_started_at: float | None = None
        self.pull_stopped_at: float | None = None
        self.started_at: float | None = None
        self.execution_stopped_at: float | None = None
        self.final: TaskState | None = None  # restored from a checkpoint after a restart
        self.quiet = False  # no reports (while adopting)
        self.cleanup_handle: asyncio.TimerHandle | None = None
        self.cleanup_task: asyncio.Task[None] | None = None
        self._start_task: asyncio.Task[None] | None = None
        self._stop_task: asyncio.Task[None] | None = None
        self._changed: asyncio.Event | None = None
        self._last_sig: Any = None
        self._dependents: dict[str, list[str]] = {}

    # -- building ------------------------------------------------------------------------

    def build(self) -> str | None:
        """Plan the task from its payload; the failure reason when it cannot run here."""
        payload = self.payload
        assert payload is not None
        config = self.engine.config
        try:
            self.plan = plan_task(payload, config.instance_arn, config.data_dir, config.bind_ip)
        except PlanError as e:
            return "CannotCreateContainerError: " + "; ".join(e.problems)
        except (KeyError, TypeError, ValueError) as e:
            return f"CannotCreateContainerError: the task definition cannot be translated: {e!r}"
        plan = self.plan
        defs = {c["name"]: c for c in payload["taskDefinition"].get("containerDefinitions") or []}
        problems: list[str] = []
        for name, spec in plan.containers.items():
            cd = defs.get(name, {})
            c = self.containers.get(name) or Container(name=name)
            c.essential = cd.get("essential", True) is not False
            c.spec = spec
            c.has_health = bool(cd.get("healthCheck"))
            st = cd.get("startTimeout")
            c.start_timeout = float(st) if st else config.start_timeout
            c.stop_timeout = stop_timeout(cd, config.stop_timeout)
            running = plan.requires_running.get(name, [])
            created = plan.requires_created.get(name, [])
            c.create_after = list(dict.fromkeys(created + running))
            deps: list[tuple[str, str]] = []
            for d in cd.get("dependsOn") or []:
                target, cond = d.get("containerName", ""), str(d.get("condition", "")).upper()
                if target not in plan.containers:
                    problems.append(f"container '{name}': dependsOn refers to unknown container '{target}'")
                elif cond not in _CONDITIONS:
                    problems.append(f"container '{name}': dependsOn condition {cond} is not valid")
                else:
                    deps.append((target, cond))
            # Links and the task's shared namespaces need the other container running (START);
            # volumesFrom needs it created (ECS's CREATE), which the creation order ensures.
            deps += [(t, "START") for t in running if (t, "START") not in deps]
            c.deps = deps
            self.containers[name] = c
        for name, c in self.containers.items():
            for t in {d for d, _ in c.deps} | set(c.create_after):
                self._dependents.setdefault(t, []).append(name)
        if problems:
            return "CannotCreateContainerError: " + "; ".join(problems)
        cycle = self._cycle()
        if cycle:
            return f"CannotCreateContainerError: containers depend on each other in a cycle: {', '.join(cycle)}"
        return None

    def build_failed(self, reason: str) -> None:
        """The task cannot run at all: STOPPED at once (nothing was created)."""
        payload = self.payload
        if not self.containers and payload is not None:
            for cd in payload["taskDefinition"].get("containerDefinitions") or []:
                if cd.get("name"):
                    self.containers[cd["name"]] = Container(name=cd["name"])
        reason = _reason(reason)
        for c in self.containers.values():
            c.status, c.failed, c.reason = STOPPED, True, reason
        self.desired = STOPPED
        self.stop_code, self.stop_reason, self.agent_stopped = STOP_FAILED_TO_START, reason, True
        self.stopped = True
        self.update()

    def _cycle(self) -> list[str]:
        if len(self.containers) < 2:
            return []
        edges = {n: {d for d, _ in c.deps} | set(c.create_after) for n, c in self.containers.items()}
        done: set[str] = set()
        while True:
            ready = [n for n, deps in edges.items() if n not in done and deps <= done]
            if not ready:
                break
            done.update(ready)
        return sorted(set(edges) - done)

    # -- starting --------------------------------------------------------------------

    def launch(self) -> None:
        """Begin (or, after a restart, continue) the start."""
        self.update()  # PENDING
        self._start_task = asyncio.get_running_loop().create_task(self._start(), name=f"start {self.id}")

    async def _start(self) -> None:
        todo = [c for c in self.containers.values() if c.status == PENDING and not c.failed]
        try:
            to_create = [c for c in todo if c.id is None]
            if to_create:
                await self._pull(to_create)
                if self.desired != RUNNING:
                    return
                await self._prepare_storage()
            todo = [c for c in todo if not c.failed]
            if len(todo) == 1:
                await self._bring_up(todo[0])
            elif todo:
                await asyncio.gather(*(self._bring_up(c) for c in todo))
        except DriverError as e:
            self.fail_start(f"{e.reason}: {e.message}")
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug must not leave the task PENDING forever
            log.exception("task %s: the start failed", self.arn)
            self.fail_start(f"CannotStartContainerError: internal error: {e!r}")

    async def _pull(self, containers: list[Container]) -> None:
        by_image: dict[str, list[Container]] = {}
        for c in containers:
            assert c.spec is not None
            by_image.setdefault(str(c.spec.config.get("Image") or ""), []).append(c)
        puller = self.engine.puller
        began = time.time()

        async def one(ref: str) -> tuple[str, bool, DriverError | None]:
            try:
                return ref, await puller.ensure(ref), None
            except DriverError as e:
                return ref, True, e

        if len(by_image) == 1:
            results = [await one(next(iter(by_image)))]
        else:
            results = list(await asyncio.gather(*(one(r) for r in by_image)))
        if any(attempted for _, attempted, _ in results):
            self.pull_started_at = began
            self.pull_stopped_at = time.time()
        first: str | None = None
        for ref, _, err in results:
            if err is None:
                continue
            reason = f"{err.reason}: {err.message}"
            for c in by_image[ref]:
                self._container_failed(c, reason, decide=False)
                if c.essential and first is None:
                    first = c.reason
        if first is not None:
            self.fail_start(first)
        elif any(err for _, _, err in results):
            self.update()

    async def _prepare_storage(self) -> None:
        plan = self.plan
        assert plan is not None
        for d in plan.host_dirs:
            d.mkdir(parents=True, exist_ok=True)
        driver = self.engine.driver
        for v in plan.volumes:
            if v.scope == "task" or v.autoprovision:
                await driver.create_volume(v.name, v.driver, v.driver_opts, v.labels)
            elif not await driver.volume_present(v.name):
                raise DriverError("CannotCreateContainerError",
                                  f"volume '{v.source}': the shared volume {v.name} does not exist "
                                  f"and autoprovision is false")

    async def _bring_up(self, c: Container) -> None:
        driver = self.engine.driver
        if c.create_after and c.id is None:
            failure = await self._wait_deps(c, [(n, "CREATE") for n in c.create_after])
            if failure:
                self._container_failed(c, failure, EXIT_DEPENDENCY_FAILED)
                return
        if c.id is None:
            assert c.spec is not None
            c.create_attempted = True
            try:
                cid = await driver.create(c.spec)
            except DriverError as e:
                self._container_failed(c, f"{e.reason}: {e.message}")
                return
            c.id = cid
            self.engine.register(cid, self)
            self._notify()  # CREATE dependencies
        if c.deps:
            failure = await self._wait_deps(c, c.deps)
            if failure:
                self._container_failed(c, failure, EXIT_DEPENDENCY_FAILED)
                return
        try:
            await driver.start(c.id)
        except DriverError as e:
            self._container_failed(c, f"{e.reason}: {e.message}")
            return
        c.started_mono = asyncio.get_running_loop().time()
        try:
            status = await driver.inspect(c.id)
        except DriverError as e:
            log.warning("task %s: inspecting %s after its start failed: %s", self.arn, c.name, e)
            status = None
        self._started(c, status)

    def _started(self, c: Container, status: ContainerStatus | None) -> None:
        c.ever_running = True
        if status is not None:
            c.started_at = status.started_at or time.time()
            c.image_digest = status.image_digest or c.image_digest
            c.bindings = _bindings(status)
            if status.state in ("exited", "dead") and c.status != STOPPED:
                # It died before its die event was seen: the same as the event.
                self._exited(c, status.exit_code, status.oom_killed, status.finished_at)
                return
        else:
            c.started_at = time.time()
        if c.status == PENDING:
            c.status = RUNNING
        self.update()

    def _container_failed(self, c: Container, reason: str, exit_code: int | None = None,
                          decide: bool = True) -> None:
        """``c`` cannot start; an essential container takes the task down with it."""
        reason = _reason(reason)
        c.status, c.failed, c.reason = STOPPED, True, reason
        if exit_code is not None:
            c.exit_code = exit_code
        if not decide:
            return
        if c.essential:
            self.fail_start(reason)
        else:
            self.update()

    def fail_start(self, reason: str) -> None:
        self.begin_stop(STOP_FAILED_TO_START, _reason(reason), agent=True)

    async def _wait_deps(self, c: Container, deps: list[tuple[str, str]]) -> str | None:
        """Wait until every (container, condition) holds; the failure reason when one never will."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            pending = False
            deadline: float | None = None
            for name, cond in deps:
                d = self.containers[name]
                dead = d.status == STOPPED and not d.ever_running  # never started, never will
                if cond == "CREATE":
                    if d.id is not None:
                        continue
                    if d.failed or d.status == STOPPED:
                        return _dep_error(d.name, c.name, "because dependency will never start")
                    pending = True
                    continue
                if cond == "START":
                    if d.ever_running:  # started, even if it has stopped since
                        continue
                    if dead:
                        return _dep_error(d.name, c.name, "because dependency will never start")
                    pending = True
                    continue
                if dead:
                    return _dep_error(d.name, c.name, "because dependency will never start")
                if cond == "COMPLETE" and d.status == STOPPED:
                    continue
                if cond == "SUCCESS" and d.status == STOPPED:
                    if d.exit_code == 0:
                        continue
                    return ("CannotStartContainerError: dependency graph: failed to resolve container ordering "
                            f"dependency [{d.name}] for target [{c.name}] as dependency did not exit successfully.")
                if cond == "HEALTHY":
                    if d.was_healthy:
                        continue
                    if d.status == STOPPED:
                        return _dep_error(d.name, c.name, "because dependency stopped before it was healthy")
                # Waiting for COMPLETE, SUCCESS or HEALTHY: bounded by the dependency's
                # startTimeout, counted from its start.
                if d.started_mono is not None:
                    limit = d.started_mono + d.start_timeout
                    if now >= limit:
                        return (f"CannotStartContainerError: dependency graph: container ordering dependency "
                                f"[{d.name}] for target [{c.name}] has timed out.")
                    deadline = limit if deadline is None else min(deadline, limit)
                pending = True
            if not pending:
                return None
            await self._wait_change(None if deadline is None else deadline - now)

    # -- changes -----------------------------------------------------------------------

    def _notify(self) -> None:
        ev = self._changed
        if ev is not None:
            self._changed = None
            ev.set()

    async def _wait_change(self, timeout: float | None) -> None:
        if self._changed is None:
            self._changed = asyncio.Event()
        ev = self._changed
        if timeout is None:
            await ev.wait()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ev.wait(), max(timeout, 0.0))

    def on_event(self, ev: ContainerEvent) -> None:
        """A driver event for one of this task's containers."""
        if self.stopped:
            return
        c = self._container_of(ev)
        if c is None:
            return
        if ev.kind == "die":
            if c.status != STOPPED:
                self._exited(c, ev.exit_code, ev.oom, ev.time or None)
        elif ev.kind == "health":
            if c.has_health and c.status != STOPPED:
                c.health = _HEALTH.get(ev.health, UNKNOWN)
                c.was_healthy = c.was_healthy or c.health == HEALTHY
                self.update()
        elif ev.kind == "destroy" and c.status != STOPPED:
            c.reason = c.reason or "CannotInspectContainerError: the container was removed outside the agent"
            self._exited(c, None, False, ev.time or None)

    def _container_of(self, ev: ContainerEvent) -> Container | None:
        for c in self.containers.values():
            if c.id == ev.id:
                return c
        return None

    def _exited(self, c: Container, exit_code: int | None, oom: bool, when: float | None) -> None:
        c.status = STOPPED
        c.ever_running = True
        if exit_code is not None:
            c.exit_code = exit_code
        if oom:
            c.reason = REASON_OOM
        if c.essential and self.execution_stopped_at is None:
            self.execution_stopped_at = when or time.time()
        # Without a payload (adopted by labels alone) nothing says whether it was essential:
        # the decision waits for the payload (resume()).
        if c.essential and self.desired == RUNNING and self.payload is not None:
            self.begin_stop(STOP_ESSENTIAL_EXITED, REASON_ESSENTIAL_EXITED, agent=True)
        self.update()

    def update(self) -> None:
        """Recompute the task's status and health; report when something reportable changed."""
        if not self.reached_running and self.desired == RUNNING and self.containers and all(
                c.ever_running or c.status == STOPPED for c in self.containers.values()):
            self.reached_running = True
            self.started_at = time.time()
        if any(c.essential and c.status == STOPPED for c in self.containers.values()) \
                and self.execution_stopped_at is None:
            self.execution_stopped_at = time.time()
        self._notify()
        if self.quiet:
            return
        sig = self._signature()
        if sig != self._last_sig:
            self._last_sig = sig
            self.engine.report(self.state())

    def _signature(self) -> Any:
        # What makes a state worth a report: statuses, exits, reasons, health, the stop decision.
        return (self.last_status(), self.desired, self.stop_code, self.stop_reason,
                tuple((c.status, c.exit_code, c.reason, c.health) for c in self.containers.values()))

    def settle(self) -> None:
        """After adoption (done quietly): the current state counts as reported (adopt returns it)."""
        self.quiet = False
        self._last_sig = self._signature()

    # -- stopping ----------------------------------------------------------------------

    def begin_stop(self, code: str, reason: str, agent: bool) -> None:
        """Desired STOPPED (the first decision wins): stop whatever runs, then STOPPED."""
        if self.desired == STOPPED:
            return
        self.desired = STOPPED
        self.stop_code, self.stop_reason, self.agent_stopped = code, reason, agent
        self._stop()

    def _stop(self) -> None:
        st = self._start_task
        if st is not None and not st.done():
            # Cancelled now, the start takes no further step (a create in flight is waited for below).
            st.cancel()
        if not any(c.status != STOPPED and (c.id is not None or c.create_attempted)
                   for c in self.containers.values()):
            self._finish()  # nothing was created, or all of it has stopped: STOPPED at once
            return
        self.stopping = True
        self.engine.checkpoint(self)
        self._stop_task = asyncio.get_running_loop().create_task(self._shutdown(st), name=f"stop {self.id}")
        self.update()

    async def _shutdown(self, start: asyncio.Task[None] | None) -> None:
        if start is not None and not start.done():
            await asyncio.gather(start, return_exceptions=True)
        todo = [c for c in self.containers.values() if c.status != STOPPED]
        if len(todo) == 1:
            await self._stop_one(todo[0])
        elif todo:
            await asyncio.gather(*(self._stop_one(c) for c in todo))
        self._finish()

    async def _stop_one(self, c: Container) -> None:
        if c.id is None:
            c.status = STOPPED
            self.update()
            return
        dependents = [self.containers[n] for n in self._dependents.get(c.name, ())]
        while any(d.status != STOPPED for d in dependents):
            await self._wait_change(None)
        driver = self.engine.driver
        delay = 0.5
        while c.status != STOPPED:
            try:
                await driver.stop(c.id, c.stop_timeout)
                if c.status == STOPPED:
                    break  # its die event has been handled
                status = await driver.inspect(c.id)
            except DriverError as e:
                log.warning("task %s: stopping %s failed (retrying in %.1f s): %s", self.arn, c.name, delay, e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            if c.status == STOPPED:
                break  # the die event came first
            if status is None or status.state in ("exited", "dead"):
                self._exited(c, status.exit_code if status else None, bool(status and status.oom_killed),
                             status.finished_at if status else None)
            elif status.state == "created":  # never started
                c.status = STOPPED
                self.update()

    def _finish(self) -> None:
        for c in self.containers.values():
            if c.status != STOPPED:
                c.status = STOPPED
        self.stopping = False
        self.stopped = True
        self.update()
        self.engine.checkpoint(self)

    # -- reporting -----------------------------------------------------------------------

    def last_status(self) -> str:
        if self.stopped:
            return STOPPED
        if self.stopping:
            return STOPPING
        return RUNNING if self.reached_running else PENDING

    def health(self) -> str:
        checked = [c for c in self.containers.values() if c.essential and c.has_health]
        if not checked:
            return UNKNOWN
        if any(c.health == UNHEALTHY for c in checked):
            return UNHEALTHY
        if any(c.health == UNKNOWN for c in checked):
            return UNKNOWN
        return HEALTHY

    def state(self) -> TaskState:
        if self.final is not None:
            return self.final
        s: TaskState = {"taskArn": self.arn, "lastStatus": self.last_status(),
                        "containers": [c.state() for c in self.containers.values()]}
        if self.desired == STOPPED and self.agent_stopped:
            s["desiredStatus"] = STOPPED
            if self.stop_code:
                s["stopCode"] = self.stop_code
            if self.stop_reason:
                s["reason"] = self.stop_reason
        s["healthStatus"] = self.health()
        if self.pull_started_at is not None:
            s["pullStartedAt"] = self.pull_started_at
        if self.pull_stopped_at is not None:
            s["pullStoppedAt"] = self.pull_stopped_at
        if self.started_at is not None:
            s["startedAt"] = self.started_at
        if self.execution_stopped_at is not None:
            s["executionStoppedAt"] = self.execution_stopped_at
        return s

    # -- adoption ------------------------------------------------------------------------

    def adopt_container(self, status: ContainerStatus, name: str, loop_now: float) -> None:
        """Take over a container found on the host (after an agent restart)."""
        c = self.containers.get(name)
        if c is None:
            if self.plan is not None:
                self.stray_ids.append(status.id)
                return
            # No definition (yet): known by its labels.
            c = self.containers[name] = Container(name=name, stop_timeout=self.engine.config.stop_timeout)
        if c.id is not None and c.id != status.id:
            self.stray_ids.append(status.id)
            return
        c.id = status.id
        c.create_attempted = True
        c.image_digest = status.image_digest
        c.bindings = _bindings(status)
        c.started_at = status.started_at
        if status.started_at is not None:
            c.started_mono = loop_now - max(0.0, time.time() - status.started_at)
        if status.health:
            c.health = _HEALTH.get(status.health, UNKNOWN)
            c.was_healthy = c.health == HEALTHY
        if status.state == "running":
            c.status, c.ever_running = RUNNING, True
        elif status.state in ("exited", "dead"):
            c.status = STOPPED
            c.ever_running = status.started_at is not None
            c.exit_code = status.exit_code
            if status.oom_killed:
                c.reason = REASON_OOM
        elif status.state == "created":
            c.status = PENDING
        else:  # paused, restarting, removing: it has run
            c.status, c.ever_running = RUNNING, True

    def resume(self, stop: dict[str, Any] | None) -> None:
        """After adoption: carry on from where the previous agent left the task."""
        if self.stopped:
            return
        if stop is not None:
            self.desired = STOPPED
            self.stop_code = stop.get("stopCode", "")
            self.stop_reason = stop.get("reason", "")
            self.agent_stopped = bool(stop.get("agent"))
            self._stop()
            return
        exited = [c for c in self.containers.values() if c.essential and c.status == STOPPED]
        if exited:
            self.execution_stopped_at = self.execution_stopped_at or time.time()
            self.begin_stop(STOP_ESSENTIAL_EXITED, REASON_ESSENTIAL_EXITED, agent=True)
            return
        if not self.observe():
            self.launch()

    def observe(self) -> bool:
        """After adoption: whether every container has run (the task is RUNNING) — no action taken."""
        if not self.containers or not all(c.ever_running or c.status == STOPPED for c in self.containers.values()):
            return False
        if not self.reached_running:
            self.reached_running = True
            starts = [c.started_at for c in self.containers.values() if c.started_at]
            self.started_at = max(starts) if starts else time.time()
        self.update()
        return True

    def owns_host_resources(self) -> bool:
        return bool(self.containers) or bool(self.stray_ids)

    def cleanup_targets(self) -> list[str]:
        """Ids (or, when the id never came back from a create, engine names) to remove."""
        out: list[str] = []
        for c in self.containers.values():
            if c.id is not None:
                out.append(c.id)
            elif c.create_attempted and c.spec is not None:
                out.append(c.spec.name)
        return out + self.stray_ids

    def cancel(self) -> list[asyncio.Task[Any]]:
        """Stop driving the task (the engine closes); its containers are left as they are."""
        tasks = [t for t in (self._start_task, self._stop_task, self.cleanup_task) if t is not None and not t.done()]
        for t in tasks:
            t.cancel()
        if self.cleanup_handle is not None:
            self.cleanup_handle.cancel()
        self.quiet = True
        return tasks


def _dep_error(dep: str, target: str, why: str) -> str:
    return (f"CannotStartContainerError: dependency graph: failed to resolve container ordering dependency "
            f"[{dep}] for target [{target}] {why}")


def _bindings(status: ContainerStatus) -> list[NetworkBinding]:
    return [{"bindIP": p.host_ip or "0.0.0.0", "containerPort": p.container_port, "hostPort": p.host_port,
             "protocol": p.protocol} for p in status.ports]

