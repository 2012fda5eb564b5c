"""Model constraints that botocore's ParamValidator leaves to the server.

ParamValidator checks types, required members and ``min``; AWS also rejects
values outside an enum and past a ``max`` (length or value). This pass runs
after validation, from a walker compiled per operation that visits only the
members that carry such a constraint (most inputs have few or none), and it
turns timestamp members into epoch seconds so operations see one form (the
JSON protocol allows epoch numbers or ISO-8601 strings).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

from botocore.model import ServiceModel, Shape
from botocore.utils import parse_timestamp

from dockyard.api.errors import InvalidParameterException

Check = Callable[[Any, str], Any]  # (value, path) -> value to keep (timestamps converted)


def _fail(path: str, value: Any, constraint: str) -> InvalidParameterException:
    shown = value if isinstance(value, (int, float)) else (
        f"'{value}'" if len(str(value)) <= 100 else f"'{str(value)[:100]}...'")
    return InvalidParameterException(
        f"1 validation error detected: Value {shown} at '{path}' failed to satisfy constraint: {constraint}")


def _timestamp(value: Any, path: str) -> float:
    if isinstance(value, bool):
        raise _fail(path, value, "Member must be a timestamp")
    if isinstance(value, (int, float)):
        if not -62135596800 <= value <= 253402300799:  # years 1..9999
            raise _fail(path, value, "Member must be a valid timestamp")
        return float(value)
    try:
        parsed = parse_timestamp(value)
    except (ValueError, TypeError, RuntimeError, OverflowError):
        raise _fail(path, value, "Member must be a valid timestamp") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


class _Builder:
    def __init__(self) -> None:
        self._memo: dict[str, Check | None] = {}

    def build(self, shape: Shape) -> Check | None:
        """A checker for values of ``shape``, or None when nothing inside it is constrained."""
        key = shape.name
        if key in self._memo:
            return self._memo[key]
        self._memo[key] = None  # recursion guard: a cycle adds no constraint of its own
        check = self._make(shape)
        self._memo[key] = check
        return check

    def _make(self, shape: Shape) -> Check | None:
        t = shape.type_name
        hi = shape.metadata.get("max")
        if t == "string":
            enum = shape.enum
            if not enum and hi is None:
                return None
            allowed = frozenset(enum) if enum else None
            listing = "[" + ", ".join(enum) + "]" if enum else ""

            def check_string(v: Any, path: str) -> Any:
                if allowed is not None and v not in allowed:
                    raise _fail(path, v, f"Member must satisfy enum value set: {listing}")
                if hi is not None and len(v) > hi:
                    raise _fail(path, v, f"Member must have length less than or equal to {hi}")
                return v
            return check_string
        if t in ("integer", "long", "float", "double"):
            if hi is None:
                return None

            def check_number(v: Any, path: str) -> Any:
                if v > hi:
                    raise _fail(path, v, f"Member must have value less than or equal to {hi}")
                return v
            return check_number
        if t == "timestamp":
            return _timestamp
        if t == "list":
            inner = self.build(shape.member)
            if inner is None and hi is None:
                return None

            def check_list(v: Any, path: str) -> Any:
                if hi is not None and len(v) > hi:
                    raise _fail(path, f"[{len(v)} items]", f"Member must have length less than or equal to {hi}")
                if inner is not None:
                    for i, item in enumerate(v):
                        if item is not None:
                            v[i] = inner(item, f"{path}.{i + 1}.member")
                return v
            return check_list
        if t == "map":
            kc = self.build(shape.key)
            vc = self.build(shape.value)
            if kc is None and vc is None and hi is None:
                return None

            def check_map(v: Any, path: str) -> Any:
                if hi is not None and len(v) > hi:
                    raise _fail(path, f"[{len(v)} entries]", f"Member must have length less than or equal to {hi}")
                for k in list(v):
                    if kc is not None:
                        kc(k, f"{path}.key")
                    if vc is not None and v[k] is not None:
                        v[k] = vc(v[k], f"{path}.{k}")
                return v
            return check_map
        if t == "structure":
            members = []
            for name, member in shape.members.items():
                c = self.build(member)
                if c is not None:
                    members.append((name, c))
            if not members:
                return None

            def check_structure(v: Any, path: str) -> Any:
                for name, c in members:
                    item = v.get(name)
                    if item is not None:
                        v[name] = c(item, f"{path}.{name}" if path else name)
                return v
            return check_structure
        return None


def compile_constraints(model: ServiceModel) -> dict[str, Callable[[dict[str, Any]], None]]:
    """Operation name -> function that checks (and normalises) a validated input in place."""
    builder = _Builder()
    out: dict[str, Callable[[dict[str, Any]], None]] = {}
    for name in model.operation_names:
        shape = model.operation_model(name).input_shape
        if shape is None:
            continue
        check = builder.build(shape)
        if check is not None:
            def run(params: dict[str, Any], _c: Check = check) -> None:
                _c(params, "")
            out[name] = run
    return out
