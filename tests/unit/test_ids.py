"""Identifier formats, and the order of task and container-instance IDs."""

from __future__ import annotations

import itertools
import re

from dockyard.state import ids


def test_hex32_ids_look_like_ecs_ids_and_sort_in_creation_order() -> None:
    made = [ids.hex32() for _ in range(20_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in made)
    assert len(set(made)) == len(made)
    # Strictly increasing even within one microsecond: new rows go to the end of every index
    # that ends in a task ARN.
    assert made == sorted(made)
    assert all(a < b for a, b in itertools.pairwise(made))


def test_hex32_ids_differ_in_their_random_part() -> None:
    tails = {ids.hex32()[13:] for _ in range(1000)}
    assert len(tails) == 1000
