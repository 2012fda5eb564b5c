"""Usage sampling: the engine turns the driver's cumulative CPU time into CPU units per task."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from dockyard.agent.session import AgentSession
from tests.unit.test_agent_engine import Host, cdef, payload, run_async


@run_async
async def test_usage_reports_cpu_units_and_memory_of_running_tasks(tmp_path: Path) -> None:
    host = Host(tmp_path)
    host.start()
    busy = payload(cdef("a", env={"FAKE_CPU": 512, "FAKE_MEMORY": 20}),
                   cdef("b", env={"FAKE_CPU": 256, "FAKE_MEMORY": 5}))
    idle = payload(cdef("c"))
    host.engine.apply([busy, idle], full=False)
    for p in (busy, idle):
        await host.wait(p["taskArn"], lambda s: s["lastStatus"] == "RUNNING")
    first = await host.engine.usage()
    # The first sample has no earlier one to take CPU from: memory only.
    assert first[busy["taskArn"]] == {"memory": 25.0}
    await asyncio.sleep(0.2)
    second = await host.engine.usage()
    u = second[busy["taskArn"]]
    assert u["memory"] == 25.0
    assert abs(u["cpu"] - 768) < 80, u  # 512 + 256 units, from CPU time over wall time
    assert second[idle["taskArn"]]["memory"] == 0.0 and second[idle["taskArn"]]["cpu"] < 1
    host.engine.apply([{**busy, "desiredStatus": "STOPPED"}], full=False)
    await host.wait(busy["taskArn"], lambda s: s["lastStatus"] == "STOPPED")
    assert busy["taskArn"] not in await host.engine.usage()
    await host.close()


@run_async
async def test_heartbeat_carries_the_usage(tmp_path: Path) -> None:
    host = Host(tmp_path)
    host.start()
    p = payload(cdef("a", env={"FAKE_CPU": 100, "FAKE_MEMORY": 7}))
    host.engine.apply([p], full=False)
    await host.wait(p["taskArn"], lambda s: s["lastStatus"] == "RUNNING")
    session = AgentSession.__new__(AgentSession)  # only what _heartbeat_frame reads
    session.engine = host.engine
    session.heartbeat = 1.0
    frame = orjson.loads(await session._heartbeat_frame())
    assert frame == {"type": "heartbeat", "stats": {p["taskArn"]: {"memory": 7.0}}}
    await host.close()
