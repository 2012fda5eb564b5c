"""The service controller steps what is dirty in chunks, so API writes are never queued behind all of it."""

from __future__ import annotations

import asyncio
from typing import Any

from dockyard.controllers import services as controller
from dockyard.services.ecs.service_scheduler import Settings


class _Store:
    """Just enough of Store: reads return every live service; writes count how many wait at once."""

    def __init__(self, live: list[str]) -> None:
        self.live = live
        self.in_flight = 0
        self.most = 0
        self.stepped: list[str] = []

    def read(self, fn: Any, *args: Any) -> list[str]:
        return list(self.live)

    async def write(self, fn: Any, arn: str, *args: Any) -> None:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        await asyncio.sleep(0)
        self.stepped.append(arn)
        self.in_flight -= 1


def test_a_resync_of_many_services_queues_one_chunk_of_steps_at_a_time() -> None:
    live = [f"arn:aws:ecs:us-east-1:123456789012:service/c/s{i:05d}" for i in range(1000)]
    store = _Store(live)
    c = controller.ServiceController(store, Settings.from_env(), resync=300)  # type: ignore[arg-type]

    async def main() -> None:
        c.dirty.update(store.read(None))
        await c._round(next_resync=float("inf"))

    asyncio.run(main())
    assert sorted(store.stepped) == live
    assert store.most == controller.STEP_CHUNK
