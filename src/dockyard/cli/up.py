"""``dockyard up``: the server and one agent on the local Docker engine, in one process.

1. Make sure the Docker engine is installed and answering (``cli/docker_setup.py``).
2. Start the server (same flags as ``dockyard server``) and wait until it serves.
3. Give the local agent an access key of its own (created once, kept in
   ``<data-dir>/agent/credentials``) and start it on cluster ``default``
   (created if absent, as the ECS agent does when no cluster is named).
4. Ctrl-C (or SIGTERM) stops the agent, then the server. Task containers keep
   running; the next ``dockyard up`` re-adopts them.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

import uvloop

from dockyard.api.server import ServerConfig, banner, read_credentials, serve
from dockyard.cli.docker_setup import ensure_engine
from dockyard.state import keys
from dockyard.state.store import Store

log = logging.getLogger("dockyard.up")

AGENT_USER = "dockyard-local-agent"


def agent_credentials(cfg: ServerConfig) -> tuple[str, str]:
    """The local agent's own key (not the root key): created on first use, then reused."""
    path = cfg.data_dir / "agent" / "credentials"
    found = read_credentials(path.parent)
    if found is not None:
        store = Store(cfg.url)
        with store.transaction() as tx:
            if keys.lookup(tx, found[0]) is not None:
                return found
    store = Store(cfg.url)
    store.migrate()
    with store.transaction() as tx:
        key = keys.create(tx, AGENT_USER)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"[default]\naws_access_key_id = {key.access_key_id}\n"
                    f"aws_secret_access_key = {key.secret_access_key}\n")
    path.chmod(0o600)
    return key.access_key_id, key.secret_access_key


async def _up(cfg: ServerConfig, agent_options: dict[str, object]) -> None:
    from dockyard.agent.main import AgentConfig, run_agent

    loop = asyncio.get_running_loop()
    ready = asyncio.Event()
    stop = asyncio.Event()
    server = asyncio.create_task(serve(cfg, ready, stop=stop, quiet=True))
    await ready.wait()
    key, secret = agent_credentials(cfg)
    endpoint = f"http://127.0.0.1:{cfg.port}"
    agent_stop = asyncio.Event()
    agent_cfg = AgentConfig(server=endpoint, cluster="default", data_dir=cfg.data_dir / "agent",
                            access_key=key, secret_key=secret, driver="docker", **agent_options)  # type: ignore[arg-type]
    agent = asyncio.create_task(run_agent(agent_cfg, stop_event=agent_stop))

    def shutdown() -> None:
        agent_stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, shutdown)
    print(banner(cfg), flush=True)
    print("A local agent runs tasks on this machine's Docker engine (cluster `default`):\n"
          f"  aws ecs describe-clusters --clusters default --endpoint-url {endpoint}\n", flush=True)
    try:
        await asyncio.wait({agent, server}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        agent_stop.set()
        try:
            await agent
        except Exception:
            log.exception("agent stopped with an error")
        stop.set()
        await server
    print("Dockyard stopped. Task containers are still running and will be re-adopted by the next "
          "`dockyard up`; to stop them now:\n"
          "  docker ps -q --filter label=io.dockyard.container-instance | xargs -r docker stop",
          flush=True)


def run(cfg: ServerConfig, agent_options: dict[str, object]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    ensure_engine(Path(cfg.data_dir))
    sys.setswitchinterval(0.0005)
    uvloop.run(_up(cfg, agent_options))
    return 0
