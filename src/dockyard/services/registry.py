"""Operation tables: AWS operation name -> plain function over the store.

An operation is ``fn(tx, ctx, request) -> response`` where ``request`` is the
validated input (wire shape) and the response is a dict in the output shape,
or ``bytes`` already serialised. ``write=True`` operations run in the store's
group-commit writer, read operations in a read snapshot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dockyard.services.context import Ctx
from dockyard.state.store import Tx

Handler = Callable[[Tx, Ctx, dict[str, Any]], "dict[str, Any] | bytes"]


@dataclass(frozen=True, slots=True)
class Operation:
    name: str
    fn: Handler
    write: bool
    # False for reads that are one SQL statement: they are atomic without BEGIN/COMMIT.
    snapshot: bool = True


class Registry:
    def __init__(self, service: str) -> None:
        self.service = service
        self.operations: dict[str, Operation] = {}

    def op(self, name: str, *, write: bool, snapshot: bool = True) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            if name in self.operations:
                raise RuntimeError(f"{self.service}.{name} registered twice")
            self.operations[name] = Operation(name, fn, write, snapshot)
            return fn
        return deco
