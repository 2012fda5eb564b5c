"""The Docker driver: the local Docker engine through aiodocker (one HTTP session over the socket).

Every call is one Engine API request (the task engine's fast path is
create → start → inspect: three round trips). Errors become ``DriverError`` with
ECS's reason names. ``events()`` reads the engine's ``/events`` stream, filtered
to containers carrying ``LABEL_INSTANCE``; when the stream breaks (engine
restart) it reconnects with ``since`` = the last event seen, so nothing is lost.

Choices:

- ``create`` is idempotent per engine name: when the name is taken by the *same*
  task's container (labels ``LABEL_TASK_ARN`` and ``LABEL_CONTAINER_NAME`` equal),
  the existing container's id is returned; a different owner is a
  CannotCreateContainerError.
- ``stop`` and ``remove`` of a missing container are not errors; ``remove`` forces
  (a running container is killed) and removes anonymous volumes.
- OOM: the engine sends ``oom`` before ``die``; the driver folds it into the die
  event (``oom=True``). A die with exit code 137 and no oom event seen is
  checked once with an inspect (State.OOMKilled).
- ``ContainerStatus.image_digest`` is the image id the container runs
  (``sha256:...``), available without another request; registry manifest digests
  need an image inspect and locally built images have none.
"""

from __future__ import annotations

import asyncio
import base64
import math
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp
import orjson
from aiodocker import Docker
from aiodocker.exceptions import DockerError

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

MIB = 1024 * 1024
_TIMEOUT = aiohttp.ClientTimeout(total=300)
_NO_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_read=None)
_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}
_STATES = {"created", "running", "exited", "dead", "paused", "restarting", "removing"}
# Actor attributes the engine adds to an event besides the container's labels.
_EVENT_ATTRS = {"image", "name", "exitCode", "signal", "execDuration"}
_EVENT_FILTERS = orjson.dumps({
    "type": ["container"],
    "label": [LABEL_INSTANCE],
    "event": ["start", "die", "health_status", "destroy", "oom"],
}).decode()


def _parse_time(text: str | None) -> float | None:
    """Docker's RFC 3339 nano timestamps → epoch seconds; the zero time ("0001-...") → None."""
    if not text or text.startswith("0001-"):
        return None
    main, _, frac = text.partition(".")
    tz = ""
    if frac:
        digits = ""
        for i, ch in enumerate(frac):
            if not ch.isdigit():
                tz = frac[i:]
                break
            digits += ch
        text = f"{main}.{digits[:6]}{tz}"
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _split_ref(ref: str) -> tuple[str, str]:
    """An image reference → (repository with registry host, tag or digest); no tag means "latest"."""
    if "@" in ref:
        repo, digest = ref.split("@", 1)
        return repo, digest
    if ":" in ref.rsplit("/", 1)[-1]:
        repo, tag = ref.rsplit(":", 1)
        return repo, tag
    return ref, "latest"


def _status(data: dict[str, Any]) -> ContainerStatus:
    state = data.get("State") or {}
    config = data.get("Config") or {}
    status: Any = state.get("Status") or "created"
    if status not in _STATES:
        status = "dead"
    exited = status in ("exited", "dead")
    health: Any = (state.get("Health") or {}).get("Status") or ""
    ports: list[PortBinding] = []
    for key, binds in ((data.get("NetworkSettings") or {}).get("Ports") or {}).items():
        if not binds:
            continue
        port, _, proto = key.partition("/")
        for b in binds:
            if b.get("HostPort"):
                ports.append(PortBinding(container_port=int(port), host_port=int(b["HostPort"]),
                                         protocol=proto or "tcp", host_ip=b.get("HostIp") or ""))
    return ContainerStatus(
        id=data["Id"],
        name=(data.get("Name") or "").lstrip("/"),
        labels=config.get("Labels") or {},
        state=status,
        exit_code=state.get("ExitCode") if exited else None,
        oom_killed=bool(state.get("OOMKilled")),
        error=state.get("Error") or "",
        health=health if health in ("healthy", "unhealthy", "starting") else "",
        started_at=_parse_time(state.get("StartedAt")),
        finished_at=_parse_time(state.get("FinishedAt")) if exited else None,
        image_digest=data.get("Image") or "",
        ports=ports,
    )


class DockerDriver:
    """Driver over the local Docker engine. ``url``: e.g. ``unix:///var/run/docker.sock``
    (default: DOCKER_HOST, else the usual socket paths)."""

    def __init__(self, url: str | None = None) -> None:
        self._url = url
        self._docker: Docker | None = None
        self._closed = False
        self._streams: set[aiohttp.ClientResponse] = set()

    # -- plumbing ------------------------------------------------------------------

    def _client(self) -> Docker:
        if self._docker is None:
            if self._closed:
                raise DriverError("CannotInspectContainerError", "the driver is closed")
            self._docker = Docker(url=self._url)
        return self._docker

    async def _call(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                    body: Any = None, headers: dict[str, str] | None = None,
                    timeout: aiohttp.ClientTimeout = _TIMEOUT) -> Any:
        """One request; the decoded JSON answer (None when empty). DockerError on 4xx/5xx or no engine."""
        data = orjson.dumps(body) if body is not None else None
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        async with self._client()._query(path, method, params=params, data=data, headers=hdrs,
                                         timeout=timeout) as resp:
            raw = await resp.read()
        return orjson.loads(raw) if raw else None

    # -- host ----------------------------------------------------------------------

    async def info(self) -> HostInfo:
        try:
            info, version = await asyncio.gather(self._call("GET", "info"), self._call("GET", "version"))
        except DockerError as e:
            raise DriverError("CannotInspectContainerError", f"engine info: {e.message}") from e
        drivers = list((info.get("Plugins") or {}).get("Log") or [])
        if "none" not in drivers:
            drivers.append("none")  # built in, never listed as a plugin
        arch = info.get("Architecture") or ""
        return HostInfo(
            cpus=int(info.get("NCPU") or 0),
            memory_mib=int(info.get("MemTotal") or 0) // MIB,
            os_type=info.get("OSType") or "linux",
            architecture=_ARCH.get(arch, arch),
            api_version=str(version.get("ApiVersion") or ""),
            server_version=str(version.get("Version") or info.get("ServerVersion") or ""),
            logging_drivers=sorted(drivers),
        )

    # -- images --------------------------------------------------------------------

    async def _exists(self, path: str, reason: str, what: str) -> bool:
        """GET ``path``: True, False on 404, DriverError(reason) otherwise."""
        try:
            await self._call("GET", path)
        except DockerError as e:
            if e.status == 404:
                return False
            raise DriverError(reason, f"{what}: {e.message}") from e
        return True

    async def image_present(self, ref: str) -> bool:
        return await self._exists(f"images/{ref}/json", "CannotPullContainerError", f"image {ref}")

    async def pull(self, ref: str, auth: dict[str, str] | None = None) -> None:
        repo, tag = _split_ref(ref)
        headers = {}
        if auth:
            headers["X-Registry-Auth"] = base64.urlsafe_b64encode(orjson.dumps(auth)).decode()
        try:
            async with self._client()._query("images/create", "POST", params={"fromImage": repo, "tag": tag},
                                             headers=headers or None, timeout=_NO_TIMEOUT) as resp:
                async for line in _lines(resp):
                    try:
                        msg = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        continue
                    if isinstance(msg, dict) and (msg.get("error") or msg.get("errorDetail")):
                        text = msg.get("error") or (msg.get("errorDetail") or {}).get("message") or str(msg)
                        raise DriverError("CannotPullContainerError", f"{ref}: {text}")
        except DockerError as e:
            raise DriverError("CannotPullContainerError", f"{ref}: {e.message}") from e
        except aiohttp.ClientError as e:
            raise DriverError("CannotPullContainerError", f"{ref}: {e}") from e

    # -- containers ------------------------------------------------------------------

    async def create(self, spec: ContainerSpec) -> str:
        try:
            out = await self._call("POST", "containers/create", params={"name": spec.name}, body=spec.config)
        except DockerError as e:
            if e.status == 409:
                existing = await self.inspect(spec.name)
                want = spec.config.get("Labels") or {}
                if existing is not None and all(existing.labels.get(k) == want.get(k)
                                                for k in (LABEL_TASK_ARN, LABEL_CONTAINER_NAME)):
                    return existing.id
            raise DriverError("CannotCreateContainerError", e.message) from e
        return str(out["Id"])

    async def start(self, container_id: str) -> None:
        try:
            await self._call("POST", f"containers/{container_id}/start")
        except DockerError as e:
            raise DriverError("CannotStartContainerError", e.message) from e

    async def stop(self, container_id: str, timeout: float) -> None:
        t = max(0, math.ceil(timeout))
        try:
            await self._call("POST", f"containers/{container_id}/stop", params={"t": t},
                             timeout=aiohttp.ClientTimeout(total=t + 120))
        except DockerError as e:
            if e.status == 404:
                return
            raise DriverError("CannotStopContainerError", e.message) from e
        except TimeoutError as e:
            raise DriverError("CannotStopContainerError", f"{container_id}: the engine did not stop it "
                                                          f"within {t + 120} s") from e

    async def inspect(self, container_id: str) -> ContainerStatus | None:
        try:
            data = await self._call("GET", f"containers/{container_id}/json")
        except DockerError as e:
            if e.status == 404:
                return None
            raise DriverError("CannotInspectContainerError", e.message) from e
        return _status(data)

    async def usage(self, container_id: str) -> ContainerUsage | None:
        try:
            # one-shot: a single sample now instead of the engine's two-sample wait (API 1.41).
            data = await self._call("GET", f"containers/{container_id}/stats",
                                    params={"stream": "false", "one-shot": "true"})
        except DockerError as e:
            if e.status in (404, 409):
                return None
            raise DriverError("CannotInspectContainerError", e.message) from e
        if not data or not data.get("read") or data["read"].startswith("0001-"):
            return None  # not running
        mem = data.get("memory_stats") or {}
        stats = mem.get("stats") or {}
        used = int(mem.get("usage", 0)) - int(stats.get("total_inactive_file", stats.get("inactive_file", 0)))
        cpu = int(((data.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage", 0))
        return ContainerUsage(cpu_ns=cpu, memory_bytes=max(used, 0), time=time.monotonic())

    async def remove(self, container_id: str) -> None:
        try:
            await self._call("DELETE", f"containers/{container_id}", params={"v": True, "force": True})
        except DockerError as e:
            if e.status == 404 or (e.status == 409 and "already in progress" in e.message):
                return
            raise DriverError("CannotRemoveContainerError", e.message) from e

    async def list_managed(self, label: str, value: str) -> list[ContainerStatus]:
        filters = orjson.dumps({"label": [f"{label}={value}"]}).decode()
        try:
            summaries = await self._call("GET", "containers/json", params={"all": True, "filters": filters})
        except DockerError as e:
            raise DriverError("CannotInspectContainerError", e.message) from e
        found = await asyncio.gather(*(self.inspect(s["Id"]) for s in summaries or []))
        return [s for s in found if s is not None]

    # -- volumes ---------------------------------------------------------------------

    async def create_volume(self, name: str, driver: str, options: dict[str, str],
                            labels: dict[str, str]) -> None:
        body = {"Name": name, "Driver": driver or "local", "DriverOpts": options or {}, "Labels": labels or {}}
        try:
            await self._call("POST", "volumes/create", body=body)
        except DockerError as e:
            raise DriverError("CannotCreateVolumeError", f"volume {name}: {e.message}") from e

    async def volume_present(self, name: str) -> bool:
        """Whether the named volume exists (a shared volume without autoprovision must)."""
        return await self._exists(f"volumes/{name}", "CannotCreateVolumeError", f"volume {name}")

    async def remove_volume(self, name: str) -> None:
        try:
            await self._call("DELETE", f"volumes/{name}")
        except DockerError as e:
            if e.status == 404:
                return
            raise DriverError("CannotRemoveVolumeError", f"volume {name}: {e.message}") from e

    # -- events ----------------------------------------------------------------------

    def events(self) -> AsyncIterator[ContainerEvent]:
        # "From now on" is the moment of this call, not of the first iteration: the stream
        # starts with since=now, so events between the two are not lost.
        return self._events(time.time())

    async def _events(self, start: float) -> AsyncIterator[ContainerEvent]:
        oom: set[str] = set()
        since = f"{start:.6f}"
        last_nano = 0
        delay = 0.2
        while not self._closed:
            params = {"filters": _EVENT_FILTERS, "since": since}
            try:
                async with self._client()._query("events", "GET", params=params, timeout=_NO_TIMEOUT) as resp:
                    self._streams.add(resp)
                    try:
                        delay = 0.2
                        async for line in _lines(resp):
                            ev = orjson.loads(line)
                            nano = int(ev.get("timeNano") or 0)
                            if nano and nano <= last_nano:
                                continue  # replayed after a reconnect
                            if nano:
                                last_nano = nano
                                since = f"{nano // 1_000_000_000}.{nano % 1_000_000_000:09d}"
                            out = await self._event(ev, oom)
                            if out is not None:
                                yield out
                    finally:
                        self._streams.discard(resp)
            except (DockerError, aiohttp.ClientError, orjson.JSONDecodeError, TimeoutError):
                pass
            except DriverError:
                return  # closed
            if self._closed:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _event(self, ev: dict[str, Any], oom: set[str]) -> ContainerEvent | None:
        action = str(ev.get("Action") or ev.get("status") or "")
        actor = ev.get("Actor") or {}
        cid = str(actor.get("ID") or ev.get("id") or "")
        attrs: dict[str, str] = actor.get("Attributes") or {}
        labels = {k: v for k, v in attrs.items() if k not in _EVENT_ATTRS}
        nano = ev.get("timeNano")
        when = int(nano) / 1e9 if nano else float(ev.get("time") or 0)
        if action == "oom":
            oom.add(cid)
            return None
        if action == "start":
            return ContainerEvent(id=cid, kind="start", labels=labels, time=when)
        if action == "die":
            code_text = attrs.get("exitCode")
            code = int(code_text) if code_text not in (None, "") else None
            killed = cid in oom
            oom.discard(cid)
            if not killed and code == 137:
                try:
                    st = await self.inspect(cid)
                except DriverError:
                    st = None
                killed = bool(st and st.oom_killed)
            return ContainerEvent(id=cid, kind="die", labels=labels, exit_code=code, oom=killed, time=when)
        if action.startswith("health_status"):
            health = action.partition(":")[2].strip()
            return ContainerEvent(id=cid, kind="health", labels=labels, health=health, time=when)
        if action == "destroy":
            oom.discard(cid)
            return ContainerEvent(id=cid, kind="destroy", labels=labels, time=when)
        return None

    async def close(self) -> None:
        self._closed = True
        for resp in list(self._streams):
            resp.close()
        self._streams.clear()
        if self._docker is not None:
            docker, self._docker = self._docker, None
            await docker.close()


async def _lines(resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """Newline-delimited chunks of a streamed answer, whatever their length."""
    buf = b""
    async for chunk in resp.content.iter_any():
        buf += chunk
        while True:
            line, sep, rest = buf.partition(b"\n")
            if not sep:
                break
            buf = rest
            if line.strip():
                yield line
    if buf.strip():
        yield buf
