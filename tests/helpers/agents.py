"""Agents in the test process: ``run_agent`` on an asyncio loop in a background thread.

    pool = AgentPool()                       # one loop thread; many agents may share it
    key, secret = create_agent_key(server)   # `dockyard keys create --user agent`
    agent = pool.start(server, "my-cluster", key, secret, driver=FakeDriver(...))
    agent.instance_arn                       # registered and connected to the server
    agent.call(lambda: agent.running.engine.states())   # run code on the agents' loop
    agent.stop()                             # containers stay on the (fake) host
    agent = pool.start(..., data_dir=agent.data_dir, driver=agent.driver)   # restart: re-adopts
    pool.close()
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from dockyard.agent.main import AgentConfig, EngineFactory, RunningAgent, run_agent

T = TypeVar("T")


def create_agent_key(server: Any, account_id: str | None = None, user: str = "agent") -> tuple[str, str]:
    """A new access key on ``server`` (the root key's account unless ``account_id``)."""
    cmd = [sys.executable, "-m", "dockyard.cli.main", "keys", "--data-dir", str(server.data_dir), "create",
           "--user", user]
    if account_id:
        cmd += ["--account-id", account_id]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    kv = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines() if "=" in line)
    return kv["AWS_ACCESS_KEY_ID"], kv["AWS_SECRET_ACCESS_KEY"]


class Agent:
    """One agent running on the pool's loop."""

    def __init__(self, pool: AgentPool, config: AgentConfig, driver: Any) -> None:
        self.pool = pool
        self.config = config
        self.driver = driver
        self.running: RunningAgent | None = None
        self.stop_event: asyncio.Event | None = None
        self.future: Future[None] | None = None
        self._started = threading.Event()

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir

    @property
    def instance_arn(self) -> str:
        assert self.running is not None
        return self.running.instance_arn

    @property
    def session(self) -> Any:
        assert self.running is not None
        return self.running.session

    @property
    def engine(self) -> Any:
        assert self.running is not None
        return self.running.engine

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``fn()`` on the agents' loop (where the engine and session live) and return its result."""
        return self.pool.call(fn, timeout)

    def wait_connected(self, timeout: float = 10.0, connects: int = 1) -> None:
        """Until the session's hello was answered (``connects`` times in all)."""
        self.pool.wait_for(lambda: self.running is not None and self.session.connected
                           and self.session.connects >= connects, timeout, "the agent did not connect")

    def stop(self, timeout: float = 20.0) -> None:
        if self.future is None or self.future.done():
            return
        assert self.stop_event is not None
        self.pool.loop.call_soon_threadsafe(self.stop_event.set)
        self.future.result(timeout)

    def failed(self) -> BaseException | None:
        if self.future is not None and self.future.done():
            return self.future.exception()
        return None


class AgentPool:
    """An asyncio loop in a daemon thread, for agents (and anything else async a test needs)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-agents", daemon=True)
        self._thread.start()
        self._tmp = tempfile.TemporaryDirectory(prefix="dockyard-agents-")
        self._n = 0
        self.agents: list[Agent] = []

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def run(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def wait_for(self, cond: Callable[[], bool], timeout: float, what: str) -> None:
        import time

        deadline = time.monotonic() + timeout
        while True:
            if self.call(cond):
                return
            if time.monotonic() > deadline:
                raise AssertionError(what)
            time.sleep(0.02)

    def config(self, server: Any, cluster: str, key: str, secret: str, **kw: Any) -> AgentConfig:
        if "data_dir" not in kw:
            self._n += 1
            kw["data_dir"] = Path(self._tmp.name) / f"agent-{self._n}"
        return AgentConfig(server=server.endpoint, cluster=cluster, access_key=key, secret_key=secret,
                           driver="fake", **kw)

    def start(self, server: Any, cluster: str, key: str, secret: str, *, driver: Any,
              engine_factory: EngineFactory | None = None, wait: bool = True, timeout: float = 20.0,
              **kw: Any) -> Agent:
        """Start ``run_agent`` for a new (or, with the same ``data_dir``, the same) instance."""
        agent = Agent(self, self.config(server, cluster, key, secret, **kw), driver)

        def on_start(running: RunningAgent) -> None:
            agent.running = running

        async def main() -> None:
            agent.stop_event = asyncio.Event()
            await run_agent(agent.config, driver=driver, stop_event=agent.stop_event,
                            engine_factory=engine_factory, on_start=on_start)

        agent.future = asyncio.run_coroutine_threadsafe(main(), self.loop)
        self.agents.append(agent)
        if wait:
            import time

            deadline = time.monotonic() + timeout
            while not (agent.running is not None and self.call(lambda: agent.session.connected)):
                if agent.future.done():
                    agent.future.result()  # raises what stopped it
                    raise AssertionError("the agent stopped before connecting")
                if time.monotonic() > deadline:
                    raise AssertionError("the agent did not connect")
                time.sleep(0.02)
        return agent

    def close(self) -> None:
        for a in self.agents:
            try:
                a.stop()
            except Exception:
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self._tmp.cleanup()
