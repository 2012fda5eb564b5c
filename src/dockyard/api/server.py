"""``dockyard server``: the store, the API, the agent channel and (later) the controllers in one event loop."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import botocore.session
import uvloop

from dockyard.api.agent_channel import AgentHub
from dockyard.api.app import App
from dockyard.api.awsjson import JsonProtocol
from dockyard.api.compiled_validator import compiled_validators
from dockyard.api.http1 import HttpServer
from dockyard.api.validation import Validator
from dockyard.api.workers import ApiWorkers
from dockyard.registry.blobs import BlobStore
from dockyard.registry.http import RegistryHttp
from dockyard.services.ecr.blob_port import BlobStorePort, set_blob_port
from dockyard.state import keys
from dockyard.state.store import Store

log = logging.getLogger("dockyard.server")

DEFAULT_PORT = 7480
LISTEN_BACKLOG = 1024
# How long a start waits for its port to be released (by the workers of a server just killed).
BIND_WAIT_SECONDS = 10.0


def default_api_workers() -> int:
    """One API worker beside the server process when there is a second core for it."""
    return 1 if (os.cpu_count() or 1) >= 2 else 0


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    data_dir: Path = Path.home() / ".dockyard"
    database_url: str | None = None
    api_workers: int | None = None  # None: default_api_workers()

    @property
    def url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'dockyard.db'}"


def build_app(store: Store) -> App:
    from dockyard.services.ecr import ecr
    from dockyard.services.ecs import ecs

    session = botocore.session.get_session()
    protocols = []
    for name, registry in (("ecs", ecs), ("ecr", ecr)):
        model = session.get_service_model(name)
        # Accept/reject decided by validators compiled from the model (same decisions as botocore's
        # ParamValidator, ~10x faster); ParamValidator still words the error on reject.
        validator = Validator(model, compiled=compiled_validators(model))
        protocols.append(JsonProtocol(model, registry, store, validator))
    return App(store, protocols)


async def listen(host: str, port: int, wait: float = BIND_WAIT_SECONDS) -> socket.socket:
    """The server's listening socket, for its API workers to accept on.

    Not SO_REUSEPORT: a worker of a server that was just killed still holds the old socket for
    a moment (it exits when it sees its server gone), and a new server sharing the port with it
    would have connections land on a process that is leaving. So the bind waits for the port.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        try:
            return socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or asyncio.get_running_loop().time() > deadline:
                raise
        await asyncio.sleep(0.05)


def read_credentials(data_dir: Path) -> tuple[str, str] | None:
    path = data_dir / "credentials"
    if not path.exists():
        return None
    kv: dict[str, str] = {}
    for line in path.read_text().splitlines():
        k, sep, v = line.partition("=")
        if sep:
            kv[k.strip()] = v.strip()
    if "aws_access_key_id" in kv and "aws_secret_access_key" in kv:
        return kv["aws_access_key_id"], kv["aws_secret_access_key"]
    return None


def banner(cfg: ServerConfig) -> str:
    endpoint = f"http://{'127.0.0.1' if cfg.host in ('0.0.0.0', '') else cfg.host}:{cfg.port}"
    creds = read_credentials(cfg.data_dir)
    lines = [f"Dockyard is serving the ECS and ECR APIs and its image registry on {endpoint}", "",
             "Point the aws CLI at it:"]
    if creds:
        lines += [f"  export AWS_ACCESS_KEY_ID={creds[0]}", f"  export AWS_SECRET_ACCESS_KEY={creds[1]}"]
    else:
        lines += [f"  (root key not found in {cfg.data_dir / 'credentials'}; create one with "
                  "`dockyard keys create`)"]
    lines += ["  export AWS_DEFAULT_REGION=us-east-1",
              f"  aws ecs list-clusters --endpoint-url {endpoint}",
              f"  aws ecr get-login-password --endpoint-url {endpoint} | docker login --username AWS "
              f"--password-stdin {endpoint.removeprefix('http://')}", ""]
    return "\n".join(lines)


async def serve(cfg: ServerConfig, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None,
                quiet: bool = False) -> None:
    """Serve until SIGINT/SIGTERM, or, when ``stop`` is given, until it is set (no signal handlers then)."""
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    from dockyard.services.ecr import config as ecr_config

    ecr_config.set_registry_host(cfg.host, cfg.port)
    store = Store(cfg.url)
    store.migrate()
    keys.ensure_root(store, cfg.data_dir)
    # No agent is connected to a process that has just started.
    AgentHub.reset(store)
    store.start(asyncio.get_running_loop())
    app = build_app(store)
    # One blob store for the /v2/ registry and the ECR API's layer uploads.
    blobs = BlobStore(cfg.data_dir / "registry")
    set_blob_port(BlobStorePort(blobs))
    app.registry = RegistryHttp(store, blobs,
                                create_on_push=os.environ.get("DOCKYARD_REGISTRY_CREATE_ON_PUSH") == "1")
    agents = AgentHub(store, app.verifier)
    app.agents = agents
    agents.attach(store)
    # Everything built so far (botocore's models, compiled validators) lives as long as the
    # process; a full collection walking it stalled requests for tens of ms (p99).
    gc.collect()
    gc.freeze()
    loop = asyncio.get_running_loop()
    if cfg.api_workers is None:
        cfg.api_workers = default_api_workers()
    # With API workers the server process binds the port but does not accept: the workers do,
    # and hand it the connections that are not AWS calls (api/workers.py).
    listener = await listen(cfg.host, cfg.port) if cfg.api_workers else None
    server = HttpServer(app, cfg.host, cfg.port if listener is None else None, backlog=LISTEN_BACKLOG)
    await server.start()
    if cfg.port == 0:  # the port the system chose, for the banner and the registry's host name
        cfg.port = (listener.getsockname() if listener is not None else server.bound())[1]
        ecr_config.set_registry_host(cfg.host, cfg.port)
    workers = ApiWorkers(store, {prefix: p.registry.operations for prefix, p in app.by_prefix.items()},
                         server, cfg.url, listener) if listener is not None else None

    stopped = False

    def shutdown() -> None:
        nonlocal stopped
        stopped = True
        agents.shutdown()
        server.stop()
        if workers is not None:
            workers.stop()

    # Before the workers start: from the moment one answers, a Ctrl-C (to the process group,
    # the workers ignore it) must stop this process in order, or the workers it leaves look
    # like crashed ones and are started again on the way out.
    waiter: asyncio.Task[None] | None = None
    if stop is None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, shutdown)
    else:
        async def wait_stop() -> None:
            await stop.wait()
            shutdown()

        waiter = loop.create_task(wait_stop())
    if workers is not None:
        try:
            await workers.start(cfg.api_workers)
        except BaseException:
            workers.stop()
            await workers.wait()
            workers.listener.close()
            store.stop()
            raise

    from dockyard.controllers import ecr_lifecycle, ecr_scan, registry_gc, task_expiry
    from dockyard.controllers import services as service_controller

    # The server's background controllers, on its loop: each waits on store events or a timer.
    controllers = [loop.create_task(task_expiry.run(store)), loop.create_task(service_controller.run(store)),
                   loop.create_task(ecr_scan.run(store, blobs)), loop.create_task(ecr_lifecycle.run(store)),
                   loop.create_task(registry_gc.run(store, blobs))]
    if not quiet and not stopped:
        print(banner(cfg), flush=True)
    if ready is not None:
        ready.set()
    try:
        await server.serve()
        await server.wait_closed()
    finally:
        for c in controllers:
            c.cancel()
        if waiter is not None:
            waiter.cancel()
        if workers is not None:
            await workers.wait()
        if listener is not None:
            listener.close()
        # Every write already answered is committed; the writer drains what is queued.
        store.stop()
        set_blob_port(None)
        blobs.close()
        log.info("stopped")


def run(cfg: ServerConfig) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    # The store's commit thread and the event loop share the GIL; the default 5 ms switch
    # interval lets one hold the other off for whole milliseconds, which shows in p99.
    sys.setswitchinterval(0.0005)
    try:
        # uvloop: the HTTP server (api/http1.py) is an asyncio protocol on this loop.
        uvloop.run(serve(cfg))
    except KeyboardInterrupt:
        pass
    return 0
