"""``dockyard agent``: register this host as a container instance and run the tasks the server places on it.

``run_agent(config)`` is the whole agent, as one coroutine:

1. ``driver.info()`` → the registration (``agent/host.py``).
2. ``CreateCluster`` when the cluster is ``default`` and does not exist (as the ECS agent
   does), then ``RegisterContainerInstance`` with botocore, signed with the agent's own
   key (botocore is synchronous: its calls run in a thread). The instance ARN is kept in
   ``<data-dir>/<cluster>.instance.json`` and passed back on the next start, so a restarted
   agent is the same container instance.
3. The task engine adopts the containers already on the host for this instance (by label),
   then ``engine.run()`` and the agent channel session (``agent/session.py``) run until
   stopped. Stopping closes the channel and the engine and leaves containers running; the
   next start adopts them.

Nothing here is global (one botocore session, a read-only model cache, is shared), so many
agents can run in one loop (the benchmark runs 200 with fake drivers); signal handlers are
installed only when no ``stop_event`` is given.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import random
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from dockyard.agent import host, protocol
from dockyard.agent.drivers.base import Driver
from dockyard.agent.engine import EngineConfig, TaskEngine
from dockyard.agent.protocol import TaskState
from dockyard.agent.pull import ImagePuller, RegistryAuth
from dockyard.agent.session import AgentSession

log = logging.getLogger("dockyard.agent")

DEFAULT_CLUSTER = "default"
PULL_BEHAVIORS = ("default", "always", "once", "prefer-cached")


@dataclass
class AgentConfig:
    server: str  # the Dockyard server's URL, e.g. http://127.0.0.1:7480
    cluster: str = DEFAULT_CLUSTER
    data_dir: Path = field(default_factory=lambda: Path.home() / ".dockyard" / "agent")
    access_key: str | None = None  # None: botocore's chain (environment, shared credentials file)
    secret_key: str | None = None
    region: str = "us-east-1"
    availability_zone: str | None = None  # default "<region>a"
    reserved_memory: int = 0  # MiB kept from tasks (ECS_RESERVED_MEMORY)
    driver: str = "docker"  # "docker" | "fake"
    bind_ip: str = "0.0.0.0"  # host address published container ports bind to
    pull_behavior: str = "default"  # ECS_IMAGE_PULL_BEHAVIOR: default | always | once | prefer-cached
    stop_timeout: float = 30.0  # ECS_CONTAINER_STOP_TIMEOUT
    heartbeat: float | None = None  # None: protocol.heartbeat_seconds()
    credentials_file: Path | None = None  # an AWS shared-credentials file to read the key from
    profile: str | None = None


@dataclass
class RunningAgent:
    """What ``run_agent`` started (given to ``on_start``: tests and embedders look at it)."""

    instance_arn: str
    cluster_arn: str
    engine: TaskEngine
    session: AgentSession
    driver: Driver


class AgentError(Exception):
    """The agent cannot start (bad credentials, unknown cluster, ...)."""


# -- botocore ---------------------------------------------------------------------------------

_boto_lock = threading.Lock()
_boto_session: Any = None


def _ecs_client(config: AgentConfig, key: str, secret: str) -> Any:
    """A botocore ECS client for the server (botocore's session is not thread-safe: one lock)."""
    global _boto_session
    import botocore.session
    from botocore.config import Config

    with _boto_lock:
        if _boto_session is None:
            _boto_session = botocore.session.get_session()
        return _boto_session.create_client(
            "ecs", region_name=config.region, endpoint_url=config.server, aws_access_key_id=key,
            aws_secret_access_key=secret,
            config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30))


def _read_credentials_file(path: Path, profile: str) -> tuple[str, str] | None:
    import configparser

    cp = configparser.ConfigParser()
    try:
        cp.read(path)
    except configparser.Error:
        return None
    if not cp.has_section(profile):
        return None
    key = cp.get(profile, "aws_access_key_id", fallback=None)
    secret = cp.get(profile, "aws_secret_access_key", fallback=None)
    return (key.strip(), secret.strip()) if key and secret else None


def resolve_credentials(config: AgentConfig) -> tuple[str, str]:
    """The agent's key: given, else from ``credentials_file``, else botocore's chain."""
    if config.access_key and config.secret_key:
        return config.access_key, config.secret_key
    profile = config.profile or os.environ.get("AWS_PROFILE") or "default"
    if config.credentials_file is not None:
        found = _read_credentials_file(config.credentials_file, profile)
        if found is None:
            raise AgentError(f"no aws_access_key_id/aws_secret_access_key for profile [{profile}] in "
                             f"{config.credentials_file}")
        return found
    import botocore.session

    creds = botocore.session.Session(profile=config.profile).get_credentials()
    if creds is None:
        raise AgentError("no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give a "
                         "credentials file (create a key with `dockyard keys create --user agent`)")
    frozen = creds.get_frozen_credentials()
    return frozen.access_key, frozen.secret_key


# -- registration -------------------------------------------------------------------------------

def _cluster_name(cluster: str) -> str:
    return cluster.rsplit("/", 1)[-1] if cluster.startswith("arn:") else cluster


def instance_file(config: AgentConfig) -> Path:
    return config.data_dir / f"{_cluster_name(config.cluster)}.instance.json"


def _load_instance(path: Path) -> str | None:
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    arn = data.get("containerInstanceArn") if isinstance(data, dict) else None
    return arn if isinstance(arn, str) and arn else None


def _save_instance(path: Path, arn: str, cluster_arn: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps({"containerInstanceArn": arn, "clusterArn": cluster_arn},
                                 option=orjson.OPT_INDENT_2))
    tmp.replace(path)


def cluster_arn_of(instance_arn: str) -> str:
    """arn:aws:ecs:r:a:container-instance/<cluster>/<id> -> arn:aws:ecs:r:a:cluster/<cluster>."""
    prefix, _, rest = instance_arn.partition(":container-instance/")
    return f"{prefix}:cluster/{rest.split('/', 1)[0]}"


def _register(client: Any, config: AgentConfig, registration: dict[str, Any]) -> str:
    """CreateCluster (default only) and RegisterContainerInstance; returns the instance ARN (sync)."""
    from botocore.exceptions import ClientError

    if config.cluster == DEFAULT_CLUSTER:
        found = client.describe_clusters(clusters=[DEFAULT_CLUSTER])["clusters"]
        if not any(c.get("status") == "ACTIVE" for c in found):
            client.create_cluster(clusterName=DEFAULT_CLUSTER)
            log.info("created cluster %s", DEFAULT_CLUSTER)
    path = instance_file(config)
    previous = _load_instance(path)
    req = {"cluster": config.cluster, **registration}
    try:
        if previous:
            try:
                resp = client.register_container_instance(containerInstanceArn=previous, **req)
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") != "ClientException":
                    raise
                log.warning("container instance %s cannot be registered again (%s); registering a new "
                            "one. Containers of the old instance are not adopted.", previous,
                            e.response["Error"].get("Message"))
                resp = client.register_container_instance(**req)
        else:
            resp = client.register_container_instance(**req)
    except ClientError as e:
        err = e.response.get("Error", {})
        raise AgentError(f"RegisterContainerInstance in cluster {config.cluster}: {err.get('Code')}: "
                         f"{err.get('Message')}") from None
    arn: str = resp["containerInstance"]["containerInstanceArn"]
    _save_instance(path, arn, cluster_arn_of(arn))
    return arn


async def _register_until_up(client: Any, config: AgentConfig, registration: dict[str, Any],
                             stop: asyncio.Event) -> str | None:
    """Register, retrying while the server cannot be reached; None if stopped first."""
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError

    delay = 0.2
    while not stop.is_set():
        try:
            return await asyncio.to_thread(_register, client, config, registration)
        except (BotoConnectionError, HTTPClientError, OSError) as e:
            log.warning("cannot reach %s (%s); retrying in %.1f s", config.server, e, delay)
        try:
            await asyncio.wait_for(stop.wait(), delay * random.uniform(0.5, 1.0))
        except TimeoutError:
            pass
        delay = min(30.0, delay * 2)
    return None


# -- the agent ------------------------------------------------------------------------------------

def make_driver(config: AgentConfig) -> Driver:
    if config.driver == "docker":
        from dockyard.agent.drivers.docker import DockerDriver

        return DockerDriver()
    if config.driver == "fake":
        from dockyard.agent.drivers.fake import FakeDriver

        return FakeDriver()  # type: ignore[no-any-return, unused-ignore]
    raise AgentError(f"unknown driver {config.driver!r} (docker or fake)")


def engine_config(config: AgentConfig, cluster_arn: str, instance_arn: str) -> EngineConfig:
    values: dict[str, Any] = {"cluster_arn": cluster_arn, "instance_arn": instance_arn,
                              # Per cluster, as the instance file is: checkpoints, task directories.
                              "data_dir": config.data_dir / _cluster_name(config.cluster),
                              "pull_behavior": config.pull_behavior,
                              "stop_timeout": config.stop_timeout, "bind_ip": config.bind_ip}
    known = {f.name for f in dataclasses.fields(EngineConfig)}
    return EngineConfig(**{k: v for k, v in values.items() if k in known})


EngineFactory = Callable[[Driver, EngineConfig, Callable[[TaskState], None]], TaskEngine]


async def run_agent(config: AgentConfig, driver: Driver | None = None, stop_event: asyncio.Event | None = None,
                    *, engine_factory: EngineFactory | None = None,
                    on_start: Callable[[RunningAgent], None] | None = None) -> None:
    """Run one agent until ``stop_event`` is set (or SIGINT/SIGTERM when no event is given).

    A ``driver`` given by the caller is not closed at the end (it outlives the agent: tests
    restart an agent on the same fake host). ``engine_factory`` replaces TaskEngine (tests).
    """
    if config.pull_behavior not in PULL_BEHAVIORS:
        raise AgentError(f"pull behavior must be one of {', '.join(PULL_BEHAVIORS)}")
    key, secret = resolve_credentials(config)
    loop = asyncio.get_running_loop()
    stop = stop_event if stop_event is not None else asyncio.Event()
    signals: list[signal.Signals] = []
    if stop_event is None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
                signals.append(sig)
            except (NotImplementedError, RuntimeError):  # not the main thread
                pass
    own_driver = driver is None
    drv = driver if driver is not None else make_driver(config)
    client: Any = None
    engine: TaskEngine | None = None
    tasks: list[asyncio.Task[Any]] = []
    try:
        info = await drv.info()
        registration = host.registration(info, config.region, config.availability_zone, config.reserved_memory)
        client = await asyncio.to_thread(_ecs_client, config, key, secret)
        try:
            instance_arn = await _register_until_up(client, config, registration, stop)
        finally:
            # Registration is all the agent asks of the API; do not keep a connection open.
            client.close()
            client = None
        if instance_arn is None:
            return
        cluster_arn = cluster_arn_of(instance_arn)
        log.info("registered %s (%s, %d CPU units, %d MiB)", instance_arn,
                 host.instance_type(info), info.cpus * 1024, info.memory_mib - config.reserved_memory)
        heartbeat = config.heartbeat if config.heartbeat is not None else protocol.heartbeat_seconds()
        session = AgentSession(config.server, instance_arn, config.region, key, secret, heartbeat=heartbeat)
        factory = engine_factory or TaskEngine
        engine = factory(drv, engine_config(config, cluster_arn, instance_arn), session.report)
        session.engine = engine
        if isinstance(getattr(engine, "puller", None), ImagePuller):
            # Images on the server's own registry are pulled with a token for the agent's key.
            engine.puller.registry_auth = RegistryAuth(config.server, config.region, key, secret)
        adopted = await engine.adopt()
        if adopted:
            log.info("adopted %d task(s) already on this host", len(adopted))
        engine_task = loop.create_task(engine.run(), name="agent-engine")
        session_task = loop.create_task(session.run(stop), name="agent-session")
        tasks = [engine_task, session_task]
        if on_start is not None:
            on_start(RunningAgent(instance_arn, cluster_arn, engine, session, drv))
        stopper = loop.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait({engine_task, session_task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        for t in done:
            if t is not stopper and not t.cancelled() and t.exception() is not None:
                log.error("agent %s stopped: %s", t.get_name(), t.exception())
    finally:
        # The channel first, so the server sees the agent go at once; then the engine (containers
        # keep running and are adopted by the next start).
        if tasks and not tasks[1].done():
            if not stop.is_set():
                tasks[1].cancel()  # the engine failed: nothing to keep the channel for
            try:
                # With stop set the session closes its websocket itself.
                await asyncio.wait_for(tasks[1], 15.0)
            except (TimeoutError, asyncio.CancelledError, Exception) as e:  # noqa: BLE001
                log.debug("agent session ended: %r", e)
        if engine is not None:
            try:
                await engine.close()
            except Exception:
                log.exception("closing the task engine failed")
        for t in tasks:
            if not t.done():
                t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if own_driver:
            try:
                await drv.close()
            except Exception:
                log.exception("closing the driver failed")
        if client is not None:
            client.close()
        for sig in signals:
            loop.remove_signal_handler(sig)
