"""A deterministic, in-process runtime driver: a simulated host for tests and benchmarks.

No threads, no processes, no sleeping except asyncio timers: a container is a small
record, its life a few ``loop.call_later`` handles. One process can simulate hundreds of
hosts, each with its own ``FakeDriver`` (its own containers, images, volumes and bound
host ports). A FakeDriver outlives the agents that use it (an agent restarted on the same
driver finds its containers, like a real host's).

Construction knobs::

    FakeDriver(images=["nginx:latest"],        # present on the host (no tag means :latest)
               available=["nginx:latest"],     # what the simulated registry serves (None: everything)
               pull_delay=0.0, create_delay=0.0, start_delay=0.0,   # seconds each call takes
               cpus=4, memory_mib=8192, architecture="x86_64")

- ``pull(ref)`` succeeds for refs in ``available`` (the image becomes present) and raises
  ``DriverError("CannotPullContainerError", ...)`` otherwise.
- ``create`` needs the image present (else CannotCreateContainerError, like Docker's "No
  such image"); the engine name is unique (a second create of the same task's container
  returns the existing id, any other owner is a conflict); Links/VolumesFrom targets must
  exist.
- ``start`` binds the container's PortBindings on this simulated host: HostPort "" gets the
  next free port from 32768 upward, a static port already bound by a running container is
  a CannotStartContainerError ("port is already allocated").

Per-container behaviour, from the ContainerCreate body's ``Env`` (so task definitions drive
it through their ``environment``):

- ``FAKE_EXIT_AFTER=<seconds>``: the main process exits that long after start, with
  ``FAKE_EXIT_CODE`` (default 0). Without it the container runs until stopped.
- ``FAKE_OOM=1``: killed for memory (exit 137, ``oom``) at FAKE_EXIT_AFTER (default: at once).
- ``FAKE_HEALTH``: only when the body has a Healthcheck (not ``["NONE"]``): a comma list of
  ``<status>`` or ``<status>_after:<seconds>`` with status healthy | unhealthy | starting,
  e.g. ``healthy``, ``unhealthy``, ``healthy_after:0.5``, ``healthy_after:0.2,unhealthy_after:1``.
  With a Healthcheck and no FAKE_HEALTH the container turns healthy at once.
- ``FAKE_IGNORE_STOP=1``: the stop signal is ignored; ``stop`` kills it after its timeout
  (exit 137).
- ``FAKE_STOP_AFTER=<seconds>``: the process takes that long to exit after the stop signal
  (killed, exit 137, if that exceeds the stop timeout). ``FAKE_STOP_EXIT_CODE``: its exit
  code after the stop signal (default 143, killed by SIGTERM).
- ``FAKE_START_FAIL=<message>``: ``start`` raises CannotStartContainerError(message).
- ``FAKE_CREATE_FAIL=<message>``: ``create`` raises CannotCreateContainerError(message).

Test hooks: ``kill(container_id, exit_code=137, oom=False)`` (like ``docker kill``: the
container dies now), ``set_health(container_id, status)``, ``containers`` (id → record),
``bound_ports()``. ``remove`` and ``kill`` accept a container's name as well as its id.

Events (``events()``) are delivered only for containers carrying ``LABEL_INSTANCE``, as the
Docker driver filters them; each ``events()`` call subscribes at once (not at first
iteration), so nothing between the call and the first ``__anext__`` is lost.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from dockyard.agent.drivers.base import (
    ContainerEvent,
    ContainerSpec,
    ContainerStatus,
    ContainerUsage,
    DriverError,
    HostInfo,
    PortBinding,
)
from dockyard.agent.protocol import LABEL_CONTAINER_NAME, LABEL_INSTANCE, LABEL_TASK_ARN

DYNAMIC_PORT_FIRST = 32768
DYNAMIC_PORT_LAST = 60999
EXIT_SIGTERM = 143
EXIT_SIGKILL = 137

# Container ids are unique across every FakeDriver of the process (and deterministic).
_ids = itertools.count(1)


def normalize_ref(ref: str) -> str:
    """``nginx`` → ``nginx:latest``; refs with a tag or digest are kept."""
    if "@" in ref or ":" in ref.rsplit("/", 1)[-1]:
        return ref
    return ref + ":latest"


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


@dataclass(slots=True)
class FakeContainer:
    id: str
    name: str
    labels: dict[str, str]
    config: dict[str, Any]
    env: dict[str, str]
    image: str
    state: str = "created"  # created | running | exited
    exit_code: int | None = None
    oom_killed: bool = False
    health: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    ports: list[PortBinding] = field(default_factory=list)
    timers: list[asyncio.TimerHandle] = field(default_factory=list)
    exited: asyncio.Future[None] | None = None  # resolved when the running process exits
    stopping: bool = False

    @property
    def has_healthcheck(self) -> bool:
        test = (self.config.get("Healthcheck") or {}).get("Test") or []
        return bool(test) and test[0] != "NONE"


class _EventStream:
    """One subscriber's events; ends when the driver closes or on aclose()."""

    def __init__(self, driver: FakeDriver) -> None:
        self._driver = driver
        self._queue: deque[ContainerEvent | None] = deque()
        self._ready: asyncio.Event = asyncio.Event()
        self._done = False

    def put(self, ev: ContainerEvent | None) -> None:
        self._queue.append(ev)
        self._ready.set()

    def __aiter__(self) -> _EventStream:
        return self

    async def __anext__(self) -> ContainerEvent:
        while not self._queue:
            if self._done:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        ev = self._queue.popleft()
        if ev is None:
            self._done = True
            self._driver._streams.discard(self)
            raise StopAsyncIteration
        return ev

    async def aclose(self) -> None:
        self._done = True
        self._queue.clear()
        self._driver._streams.discard(self)
        self._ready.set()


class FakeDriver:
    """Driver over a simulated host (see the module docstring for the knobs)."""

    def __init__(self, images: Iterable[str] = (), available: Iterable[str] | None = None, *,
                 pull_delay: float = 0.0, create_delay: float = 0.0, start_delay: float = 0.0,
                 cpus: int = 4, memory_mib: int = 8192, architecture: str = "x86_64",
                 logging_drivers: Iterable[str] = ("json-file", "local", "none", "syslog", "journald")) -> None:
        self.images: set[str] = {normalize_ref(i) for i in images}
        self.available: set[str] | None = None if available is None else {normalize_ref(i) for i in available}
        self.pull_delay = pull_delay
        self.create_delay = create_delay
        self.start_delay = start_delay
        self._info = HostInfo(cpus=cpus, memory_mib=memory_mib, os_type="linux", architecture=architecture,
                              api_version="1.43", server_version="24.0.7-fake",
                              logging_drivers=sorted(logging_drivers))
        self.containers: dict[str, FakeContainer] = {}
        self._by_name: dict[str, str] = {}
        self.volumes: dict[str, dict[str, Any]] = {}
        self._ports: dict[tuple[int, str], str] = {}  # (host port, protocol) -> container id
        self._next_port = DYNAMIC_PORT_FIRST
        self._streams: set[_EventStream] = set()
        self._closed = False
        self.pulls: list[str] = []  # every pull attempted (tests count them)

    # -- helpers -------------------------------------------------------------------

    def _get(self, ref: str) -> FakeContainer | None:
        c = self.containers.get(ref)
        if c is None:
            cid = self._by_name.get(ref.lstrip("/"))
            c = self.containers.get(cid) if cid else None
        return c

    def _emit(self, c: FakeContainer, kind: Any, **kw: Any) -> None:
        if LABEL_INSTANCE not in c.labels or not self._streams:
            return
        ev = ContainerEvent(id=c.id, kind=kind, labels=dict(c.labels), time=time.time(), **kw)
        for s in self._streams:
            s.put(ev)

    @staticmethod
    async def _delay(seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)

    def bound_ports(self) -> dict[tuple[int, str], str]:
        """(host port, protocol) → id of the running container bound to it."""
        return dict(self._ports)

    # -- host ----------------------------------------------------------------------

    async def info(self) -> HostInfo:
        return self._info

    # -- images --------------------------------------------------------------------

    async def image_present(self, ref: str) -> bool:
        return normalize_ref(ref) in self.images

    async def pull(self, ref: str, auth: dict[str, str] | None = None) -> None:
        ref = normalize_ref(ref)
        self.pulls.append(ref)
        await self._delay(self.pull_delay)
        if self.available is not None and ref not in self.available:
            repo = ref.rsplit(":", 1)[0] if "@" not in ref else ref.split("@", 1)[0]
            raise DriverError("CannotPullContainerError",
                              f"Error response from daemon: pull access denied for {repo}, repository does not "
                              f"exist or may require 'docker login': denied: requested access to the resource "
                              f"is denied")
        self.images.add(ref)

    # -- containers ------------------------------------------------------------------

    async def create(self, spec: ContainerSpec) -> str:
        await self._delay(self.create_delay)
        config = spec.config
        labels = dict(config.get("Labels") or {})
        existing = self._get(spec.name)
        if existing is not None:
            if all(existing.labels.get(k) == labels.get(k) for k in (LABEL_TASK_ARN, LABEL_CONTAINER_NAME)):
                return existing.id
            raise DriverError("CannotCreateContainerError",
                              f'Conflict. The container name "/{spec.name}" is already in use by container '
                              f'"{existing.id}". You have to remove (or rename) that container to be able to '
                              f"reuse that name.")
        image = normalize_ref(str(config.get("Image") or ""))
        if image not in self.images:
            raise DriverError("CannotCreateContainerError", f"No such image: {image}")
        env: dict[str, str] = {}
        for item in config.get("Env") or []:
            k, _, v = str(item).partition("=")
            env[k] = v
        if env.get("FAKE_CREATE_FAIL"):
            raise DriverError("CannotCreateContainerError", env["FAKE_CREATE_FAIL"])
        host_config = config.get("HostConfig") or {}
        for link in host_config.get("Links") or []:
            target = str(link).split(":", 1)[0]
            if self._get(target) is None:
                raise DriverError("CannotCreateContainerError", f"Could not get container for {target}")
        for vf in host_config.get("VolumesFrom") or []:
            source = str(vf).split(":", 1)[0]
            if self._get(source) is None:
                raise DriverError("CannotCreateContainerError", f"No such container: {source}")
        for bind in host_config.get("Binds") or []:
            src = str(bind).split(":", 1)[0]
            if not src.startswith("/") and src not in self.volumes:
                self.volumes[src] = {"driver": "local", "options": {}, "labels": {}}  # Docker creates it
        cid = hashlib.sha256(f"fake-container-{next(_ids)}".encode()).hexdigest()
        c = FakeContainer(id=cid, name=spec.name, labels=labels, config=config, env=env, image=image)
        self.containers[cid] = c
        self._by_name[spec.name] = cid
        return cid

    def _bind_ports(self, c: FakeContainer) -> list[PortBinding]:
        bindings = (c.config.get("HostConfig") or {}).get("PortBindings") or {}
        out: list[PortBinding] = []
        taken: set[tuple[int, str]] = set()
        for key, binds in bindings.items():
            port, _, proto = str(key).partition("/")
            proto = proto or "tcp"
            for b in binds or []:
                host_ip = b.get("HostIp") or "0.0.0.0"
                wanted = str(b.get("HostPort") or "")
                if wanted:
                    hp = int(wanted)
                    if (hp, proto) in self._ports or (hp, proto) in taken:
                        raise DriverError("CannotStartContainerError",
                                          f"driver failed programming external connectivity on endpoint "
                                          f"{c.name}: Bind for {host_ip}:{hp} failed: port is already allocated")
                else:
                    hp = self._dynamic_port(proto, taken)
                taken.add((hp, proto))
                out.append(PortBinding(container_port=int(port), host_port=hp, protocol=proto, host_ip=host_ip))
        for hp, proto in taken:
            self._ports[(hp, proto)] = c.id
        return out

    def _dynamic_port(self, proto: str, taken: set[tuple[int, str]]) -> int:
        span = DYNAMIC_PORT_LAST - DYNAMIC_PORT_FIRST + 1
        for _ in range(span):
            hp = self._next_port
            self._next_port = hp + 1 if hp < DYNAMIC_PORT_LAST else DYNAMIC_PORT_FIRST
            if (hp, proto) not in self._ports and (hp, proto) not in taken:
                return hp
        raise DriverError("CannotStartContainerError", "no free host port in the ephemeral range")

    async def start(self, container_id: str) -> None:
        await self._delay(self.start_delay)
        c = self._get(container_id)
        if c is None:
            raise DriverError("CannotStartContainerError", f"No such container: {container_id}")
        if c.state == "running":
            return  # Docker: 304 not modified
        if c.env.get("FAKE_START_FAIL"):
            raise DriverError("CannotStartContainerError", c.env["FAKE_START_FAIL"])
        c.ports = self._bind_ports(c)
        loop = asyncio.get_running_loop()
        c.state = "running"
        c.exit_code = None
        c.oom_killed = False
        c.finished_at = None
        c.started_at = time.time()
        c.exited = loop.create_future()
        c.stopping = False
        c.health = "starting" if c.has_healthcheck else ""
        self._emit(c, "start")
        env = c.env
        oom = env.get("FAKE_OOM") == "1"
        after = env.get("FAKE_EXIT_AFTER")
        if after is not None or oom:
            delay = float(after) if after else 0.0
            code = EXIT_SIGKILL if oom else int(env.get("FAKE_EXIT_CODE") or 0)
            c.timers.append(loop.call_later(delay, self._exit, c, code, oom))
        if c.has_healthcheck:
            for item in (env.get("FAKE_HEALTH") or "healthy").split(","):
                status, _, when = item.strip().partition("_after:")
                if status in ("healthy", "unhealthy", "starting"):
                    c.timers.append(loop.call_later(float(when or 0), self.set_health, c.id, status))

    def _exit(self, c: FakeContainer, code: int, oom: bool = False) -> None:
        if c.state != "running":
            return
        for t in c.timers:
            t.cancel()
        c.timers.clear()
        c.state = "exited"
        c.exit_code = code
        c.oom_killed = oom
        c.finished_at = time.time()
        for key in [k for k, v in self._ports.items() if v == c.id]:
            del self._ports[key]
        if c.exited is not None and not c.exited.done():
            c.exited.set_result(None)
        self._emit(c, "die", exit_code=code, oom=oom)

    def kill(self, container_id: str, exit_code: int = EXIT_SIGKILL, *, oom: bool = False) -> None:
        """Test hook, like ``docker kill``: the running container dies now with ``exit_code``."""
        c = self._get(container_id)
        if c is None:
            raise KeyError(container_id)
        self._exit(c, exit_code, oom)

    def set_health(self, container_id: str, status: str) -> None:
        """Test hook: the container's health check reports ``status`` (healthy | unhealthy | starting)."""
        c = self._get(container_id)
        if c is None or c.state != "running" or not c.has_healthcheck or c.health == status:
            return
        c.health = status
        if status in ("healthy", "unhealthy"):  # Docker emits health_status only for these
            self._emit(c, "health", health=status)

    async def stop(self, container_id: str, timeout: float) -> None:
        c = self._get(container_id)
        if c is None or c.state != "running":
            return
        exited = c.exited
        assert exited is not None
        if not c.stopping:
            c.stopping = True
            loop = asyncio.get_running_loop()
            if c.env.get("FAKE_IGNORE_STOP") != "1":
                after = float(c.env.get("FAKE_STOP_AFTER") or 0)
                code = int(c.env.get("FAKE_STOP_EXIT_CODE") or EXIT_SIGTERM)
                if after <= 0:
                    self._exit(c, code)
                elif after < timeout:
                    c.timers.append(loop.call_later(after, self._exit, c, code))
            if c.state == "running":
                # SIGKILL when the timeout passes (docker stop -t).
                c.timers.append(loop.call_later(max(timeout, 0.0), self._exit, c, EXIT_SIGKILL))
        await asyncio.shield(exited)

    async def inspect(self, container_id: str) -> ContainerStatus | None:
        c = self._get(container_id)
        if c is None:
            return None
        return ContainerStatus(
            id=c.id, name=c.name, labels=dict(c.labels), state=c.state,  # type: ignore[arg-type]
            exit_code=c.exit_code, oom_killed=c.oom_killed, health=c.health,  # type: ignore[arg-type]
            started_at=c.started_at, finished_at=c.finished_at, image_digest=_digest(c.image),
            ports=list(c.ports))

    async def usage(self, container_id: str) -> ContainerUsage | None:
        """FAKE_CPU (units, default 0) and FAKE_MEMORY (MiB, default 0) of a running container."""
        c = self._get(container_id)
        if c is None or c.state != "running" or c.started_at is None:
            return None
        now = time.monotonic()
        units = float(c.env.get("FAKE_CPU", 0) or 0)
        ran = max(time.time() - c.started_at, 0.0)
        return ContainerUsage(cpu_ns=int(ran * units / 1024 * 1e9),
                              memory_bytes=int(float(c.env.get("FAKE_MEMORY", 0) or 0) * 1024 * 1024), time=now)

    async def remove(self, container_id: str) -> None:
        c = self._get(container_id)
        if c is None:
            return
        if c.state == "running":
            self._exit(c, EXIT_SIGKILL)  # force
        del self.containers[c.id]
        if self._by_name.get(c.name) == c.id:
            del self._by_name[c.name]
        self._emit(c, "destroy")

    async def list_managed(self, label: str, value: str) -> list[ContainerStatus]:
        out = []
        for c in list(self.containers.values()):
            if c.labels.get(label) == value:
                st = await self.inspect(c.id)
                if st is not None:
                    out.append(st)
        return out

    # -- volumes ---------------------------------------------------------------------

    async def create_volume(self, name: str, driver: str, options: dict[str, str],
                            labels: dict[str, str]) -> None:
        self.volumes.setdefault(name, {"driver": driver or "local", "options": dict(options or {}),
                                       "labels": dict(labels or {})})

    async def remove_volume(self, name: str) -> None:
        self.volumes.pop(name, None)

    async def volume_present(self, name: str) -> bool:
        return name in self.volumes

    # -- events ----------------------------------------------------------------------

    def events(self) -> AsyncIterator[ContainerEvent]:
        stream = _EventStream(self)
        if self._closed:
            stream.put(None)
        else:
            self._streams.add(stream)
        return stream

    async def close(self) -> None:
        """The host goes away: event streams end, containers' timers stop."""
        self._closed = True
        for s in list(self._streams):
            s.put(None)
        for c in self.containers.values():
            for t in c.timers:
                t.cancel()
            c.timers.clear()
