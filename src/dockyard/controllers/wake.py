"""The wait every event-driven controller makes between rounds."""

from __future__ import annotations

import asyncio


async def sleep_until_woken(wake: asyncio.Event, timeout: float) -> None:
    """Wait until ``wake`` is set (a store event the controller cares about) or ``timeout``
    seconds pass (its next timer or sweep); the event is cleared first. The caller checks for
    pending work before calling, with no await in between, so a wake-up is never lost."""
    if timeout <= 0:
        return
    wake.clear()
    try:
        await asyncio.wait_for(wake.wait(), timeout)
    except TimeoutError:
        pass
