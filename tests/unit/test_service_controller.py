"""The service controller steps what is dirty in chunks, so API writes are never queued behind all of it."""

from __future__ import annotations

import asyncio
import itertools
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


def test_a_resync_steps_only_services_not_stepped_for_a_period_paced_over_half_of_it() -> None:
    live = [f"arn:aws:ecs:us-east-1:123456789012:service/c/s{i:05d}" for i in range(640)]
    store = _Store(live)
    now = [1000.0]
    c = controller.ServiceController(store, Settings.from_env(), resync=100)  # type: ignore[arg-type]
    c.clock = lambda: now[0]
    fresh = set(live[:64])
    for arn in live:  # stepped within the last period: the first 64; the rest long ago
        c.stepped_at[arn] = 950.0 if arn in fresh else 500.0
    rounds: list[int] = []

    async def main() -> None:
        next_resync = await c._round(next_resync=1000.0)  # the resync is due now
        rounds.append(len(store.stepped))
        gap = c.backlog_gap
        assert gap == 100 / 2 / 9  # 576 services: 9 chunks over half the period
        c.stepped_at[live[200]] = now[0] + 1  # an event stepped this one meanwhile
        while c.backlog:
            now[0] += gap
            await c._round(next_resync)
            rounds.append(len(store.stepped))

    asyncio.run(main())
    assert rounds[0] == controller.STEP_CHUNK and store.most == controller.STEP_CHUNK
    assert all(b - a <= controller.STEP_CHUNK for a, b in itertools.pairwise(rounds))
    assert set(store.stepped) == set(live) - fresh - {live[200]}
    assert len(store.stepped) == len(set(store.stepped))
    assert now[0] - 1000.0 <= 50.0


def test_a_first_step_inside_create_service_counts_as_a_step_for_the_resync() -> None:
    arn = "arn:aws:ecs:us-east-1:123456789012:service/c/new"
    store = _Store([arn])
    now = [5000.0]
    c = controller.ServiceController(store, Settings.from_env(), resync=100)  # type: ignore[arg-type]
    c.clock = lambda: now[0]
    c.on_events([("service", arn), ("service-stepped", f" {arn}")])
    now[0] += 60

    async def main() -> None:
        await c._round(next_resync=now[0])

    asyncio.run(main())
    assert store.stepped == [] and not c.backlog
