"""The compiled validator accepts exactly what botocore's ParamValidator accepts.

For every ECS operation, hypothesis generates inputs from the botocore input
shape (valid ones, then the same with one or two mistakes: wrong types, missing
required members, unknown members, numbers under their min, too-short strings
and lists, bad enum values, unions with 0 or 2 members, odd timestamps...) and
checks ``compiled[op](x) == not ParamValidator().validate(x, shape).has_errors()``.
A synthetic model covers what ECS does not use (hostLabel, jsonvalue headers,
blobs, recursion, map keys with a min, constrained list members...).

The strategies (``request_values``) are also used by tests/integration/test_fuzz.py.
"""

from __future__ import annotations

import copy
import decimal
from collections import Counter
from collections.abc import Iterator
from functools import cache
from typing import Any

import botocore.session
import orjson
import pytest
from botocore.model import ServiceModel, Shape
from botocore.validate import ParamValidator
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from dockyard.api.compiled_validator import (
    DESCRIBE_TASK_DEFINITION_INPUT,
    REGISTER_TASK_DEFINITION_INPUT,
    compile_service,
    compiled_validators,
    generated_source,
)

PV = ParamValidator()


@cache
def ecs_model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("ecs")


def pv_accepts(params: Any, shape: Shape) -> bool | None:
    """ParamValidator's decision; None when it raises instead of reporting (e.g. timestamp 1e20)."""
    try:
        return not PV.validate(params, shape).has_errors()
    except Exception:  # botocore raises on some timestamps (1e20); the caller checks for None
        return None


# ---- strategies: values generated from botocore shapes -------------------------------------------

MAX_DEPTH = 6
WRONG = [1.5, "x", 1, True, [], {}, ["x"], [1], {"k": "v"}, [{}], [None], -1, False, -0.5, "", "0", 0, None]
NAMES = st.text(alphabet="abcXYZ019-_:/ ", max_size=8)


def _min(shape: Shape) -> Any:
    md = shape.metadata
    if "min" in md:
        return md["min"]
    if shape.serialization.get("hostLabel"):
        return 1
    return None


def _timestamps() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.integers(0, 4_000_000_000), st.floats(0, 4e9),
        st.sampled_from(["2024-01-02T03:04:05Z", "2024-01-02", "0", "1700000000", "Tue, 02 Jan 2024 03:04:05 GMT"]))


def valid_values(shape: Shape, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values botocore accepts for ``shape`` (mostly: a few edge cases are left to mutation)."""
    t = shape.type_name
    md = shape.metadata
    lo = _min(shape)
    if t == "structure" and shape.is_document_type:
        return st.recursive(st.none() | st.booleans() | st.integers(-5, 5) | NAMES,
                            lambda c: st.lists(c, max_size=3) | st.dictionaries(NAMES, c, max_size=3),
                            max_leaves=6)
    if t == "string":
        n = max(int(lo or 0), 0)
        enum = md.get("enum")
        text = st.text(alphabet="abcdefXYZ0129-_:/.*@ ", min_size=n, max_size=n + 12)
        return st.sampled_from(enum) | text if enum else text
    if t in ("integer", "long"):
        base = int(lo) if lo is not None else -(2 ** 31)
        return st.integers(base, base + 2 ** 32) | (st.just(base) if lo is not None else st.nothing())
    if t in ("float", "double"):
        base = float(lo) if lo is not None else -1e9
        return st.floats(base, base + 1e9, allow_nan=False) | st.integers(int(base) + 1, int(base) + 1000)
    if t == "boolean":
        return st.booleans()
    if t == "timestamp":
        return _timestamps()
    if t == "blob":
        return NAMES
    if t == "list":
        n = max(int(lo or 0), 0)
        return st.lists(valid_values(shape.member, depth + 1), min_size=n, max_size=n + (2 if depth < MAX_DEPTH else 0))
    if t == "map":
        return st.dictionaries(valid_values(shape.key, depth + 1), valid_values(shape.value, depth + 1),
                               max_size=2 if depth < MAX_DEPTH else 0)
    if t == "structure":
        return _structures(shape, depth)
    raise AssertionError(f"no strategy for {t}")


def _structures(shape: Shape, depth: int) -> st.SearchStrategy[dict[str, Any]]:
    members = shape.members
    required = [r for r in shape.metadata.get("required", []) if r in members]
    optional = [m for m in members if m not in required]

    @st.composite
    def build(draw: Any) -> dict[str, Any]:
        if shape.is_tagged_union:
            chosen = [draw(st.sampled_from(list(members)))] if members else []
        else:
            extra: list[str] = []
            if optional and depth < MAX_DEPTH:
                extra = draw(st.lists(st.sampled_from(optional), max_size=4, unique=True))
            chosen = required + extra
        return {m: draw(valid_values(members[m], depth + 1)) for m in chosen}
    return build()


def _sites(value: Any, shape: Shape, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Shape, Any]]:
    """Every node of ``value`` whose shape is known, with its path from the root."""
    yield path, shape, value
    t = shape.type_name
    if t == "structure" and not shape.is_document_type and isinstance(value, dict):
        for k, v in value.items():
            if k in shape.members:
                yield from _sites(v, shape.members[k], path + (k,))
    elif t == "list" and isinstance(value, list):
        for i, v in enumerate(value):
            yield from _sites(v, shape.member, path + (i,))
    elif t == "map" and isinstance(value, dict):
        for k, v in value.items():
            yield from _sites(v, shape.value, path + (k,))


def _mutations(shape: Shape, node: Any) -> list[str]:
    t = shape.type_name
    kinds: list[str] = []
    if t == "structure" and not shape.is_document_type and isinstance(node, dict):
        kinds.append("unknown_member")
        if any(r in node for r in shape.metadata.get("required", [])):
            kinds.append("drop_required")
        if shape.is_tagged_union:
            kinds.append("union_count")
        kinds.append("none_member")
    if t == "string":
        kinds += ["short_string", "bad_enum", "long_string"]
    if t in ("integer", "long", "float", "double"):
        kinds += ["under_min", "bool", "float_for_int", "big_number"]
    if t == "boolean":
        kinds.append("int_for_bool")
    if t == "list" and isinstance(node, (list, tuple)):
        kinds += ["short_list", "bad_item", "tuple"]
    if t == "map" and isinstance(node, dict):
        kinds += ["short_key", "bad_map_value"]
    if t == "timestamp":
        kinds.append("odd_timestamp")
    return kinds + ["wrong_type"]  # last: hypothesis leans to the first choice, and this one is the dullest


def _mutate(draw: Any, shape: Shape, node: Any, kind: str, depth: int) -> Any:
    """The replacement for ``node`` (a mutated copy)."""
    lo = _min(shape)
    if kind == "wrong_type":
        return draw(st.sampled_from(WRONG))
    if kind == "unknown_member":
        return {**node, draw(st.sampled_from(["bogus", "Family", "", "__type"])): draw(st.sampled_from(WRONG))}
    if kind == "drop_required":
        present = [r for r in shape.metadata.get("required", []) if r in node]
        r = draw(st.sampled_from(present))
        return {k: v for k, v in node.items() if k != r}
    if kind == "union_count":
        if node and draw(st.booleans()):
            return {}
        others = [m for m in shape.members if m not in node]
        if not others:
            return {}
        m = draw(st.sampled_from(others))
        return {**node, m: draw(valid_values(shape.members[m], MAX_DEPTH))}
    if kind == "none_member":
        m = draw(st.sampled_from(list(shape.members) or ["bogus"]))
        return {**node, m: None}
    if kind == "short_string":
        n = int(lo) if isinstance(lo, (int, float)) and lo > 0 else 1
        return "x" * (n - 1)
    if kind == "bad_enum":
        return draw(st.sampled_from(["NOT_AN_ENUM", "fargate", "", "EC2 "]))
    if kind == "long_string":
        return "a" * draw(st.sampled_from([256, 2048, 70000]))
    if kind == "under_min":
        base = lo if lo is not None else 0
        return base - draw(st.sampled_from([1, 0.5, 10 ** 9]))
    if kind == "bool":
        return draw(st.booleans())
    if kind == "float_for_int":
        return draw(st.sampled_from([1.0, 0.5, -3.25]))
    if kind == "big_number":
        return draw(st.sampled_from([2 ** 63 - 1, -(2 ** 63), 2 ** 64 - 1, 1e300]))
    if kind == "int_for_bool":
        return draw(st.sampled_from([0, 1, "true"]))
    if kind == "short_list":
        n = int(lo) if isinstance(lo, (int, float)) and lo > 0 else 0
        return list(node[: max(n - 1, 0)])
    if kind == "bad_item":
        return [*node, draw(st.sampled_from(WRONG))]
    if kind == "tuple":
        return tuple(node)
    if kind == "short_key":
        return {**node, "": draw(valid_values(shape.value, MAX_DEPTH))}
    if kind == "bad_map_value":
        return {**node, "k": draw(st.sampled_from(WRONG))}
    if kind == "odd_timestamp":
        return draw(st.sampled_from([1e20, 10 ** 18, -1e15, 253402300800, "not a date", "", True,
                                     "2024-13-45", "1e300", None, [], {}]))
    raise AssertionError(kind)


def _set(root: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    node = root
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return root


@st.composite
def mutated_values(draw: Any, shape: Shape) -> Any:
    """A valid value with one to three mistakes somewhere in it."""
    value = draw(valid_values(shape))
    for _ in range(draw(st.integers(1, 3))):
        sites = list(_sites(value, shape))[::-1]  # the root last (hypothesis leans to the first)
        path, s, node = draw(st.sampled_from(sites))
        kind = draw(st.sampled_from(_mutations(s, node)))
        value = _set(copy.deepcopy(value), path, _mutate(draw, s, node, kind, len(path)))
    return value


def request_values(shape: Shape, json_only: bool = True) -> st.SearchStrategy[Any]:
    """Valid and mutated values for ``shape``; with ``json_only`` each is what orjson would decode."""
    s = valid_values(shape) | mutated_values(shape)
    if json_only:
        s = s.map(_json_roundtrip)
    return s


def _json_roundtrip(v: Any) -> Any:
    try:
        return orjson.loads(orjson.dumps(v))
    except (TypeError, orjson.JSONEncodeError):  # ints over 64 bits: keep the Python value
        return v


# ---- the property, for every ECS operation --------------------------------------------------------

ECS_OPS = ecs_model().operation_names


OUTCOMES: Counter[str] = Counter()


def _check(fn: Any, shape: Shape, x: Any) -> None:
    want = pv_accepts(x, shape)
    got = fn(x)
    assert isinstance(got, bool)
    outcome = "ParamValidator raised" if want is None else "accepted" if want else "rejected"
    OUTCOMES[outcome] += 1
    if currently_in_test_context():
        event(outcome)
    if want is None:
        assert got is False, f"ParamValidator raises on {x!r} but the compiled validator accepts it"
    else:
        assert got == want, (f"compiled={got}, ParamValidator={want} on {x!r}:\n"
                             f"{PV.validate(x, shape).generate_report()}")


@pytest.mark.parametrize("op", ECS_OPS)
def test_same_decisions_as_param_validator(op: str) -> None:
    shape = ecs_model().operation_model(op).input_shape
    fn = compiled_validators(ecs_model())[op]

    @settings(max_examples=40, derandomize=True, database=None, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.filter_too_much])
    @given(request_values(shape, json_only=False))
    def prop(x: Any) -> None:
        _check(fn, shape, x)
        _check(fn, shape, _json_roundtrip(x))

    prop()


def test_every_operation_compiled() -> None:
    fns = compiled_validators(ecs_model())
    assert set(fns) == set(ECS_OPS)
    assert compiled_validators(ecs_model()) is fns  # cached per process


def _register() -> dict[str, Any]:
    return copy.deepcopy(REGISTER_TASK_DEFINITION_INPUT)


REGISTER_CASES: list[tuple[str, Any]] = [
    ("as is", lambda d: d),
    ("bool where integer", lambda d: d["containerDefinitions"][0].update(cpu=True)),
    ("float where integer", lambda d: d["containerDefinitions"][0].update(cpu=1.0)),
    ("int where boolean", lambda d: d["containerDefinitions"][0].update(essential=1)),
    ("None member", lambda d: d["containerDefinitions"][0].update(image=None)),
    ("None in a small structure", lambda d: d["tags"].append({"key": "k", "value": None})),
    ("None required member", lambda d: d["tags"].append({"key": None})),
    ("unknown member", lambda d: d["containerDefinitions"][0].update(imageUri="x")),
    ("missing required", lambda d: d.pop("family")),
    ("missing nested required", lambda d: d["tags"].append({"value": "x"})),
    ("tag key too short", lambda d: d["tags"].append({"key": ""})),
    ("empty tag value is fine", lambda d: d["tags"].append({"key": "k", "value": ""})),
    ("bad enum is not checked", lambda d: d.update(networkMode="nope")),
    ("max is not checked", lambda d: d.update(family="f" * 10000)),
    ("tuple list", lambda d: d.update(requiresCompatibilities=("EC2",))),
    ("string in list of strings", lambda d: d.update(requiresCompatibilities="EC2")),
    ("int in list of strings", lambda d: d.update(requiresCompatibilities=[1])),
    ("map value int", lambda d: d["containerDefinitions"][0]["logConfiguration"]["options"].update(x=1)),
    ("map with empty key", lambda d: d["containerDefinitions"][0]["logConfiguration"]["options"].update({"": "x"})),
    ("port under min", lambda d: d["containerDefinitions"][0]["portMappings"].append({"containerPort": -1})),
    ("union with two members", lambda d: d.update(volumes=[{"name": "v"}])),
    ("Decimal where integer", lambda d: d["containerDefinitions"][0].update(cpu=decimal.Decimal(1))),
    ("list where structure", lambda d: d["containerDefinitions"][0].update(healthCheck=[])),
]


@pytest.mark.parametrize("case", REGISTER_CASES, ids=[c[0] for c in REGISTER_CASES])
def test_register_task_definition_edge_cases(case: tuple[str, Any]) -> None:
    shape = ecs_model().operation_model("RegisterTaskDefinition").input_shape
    fn = compiled_validators(ecs_model())["RegisterTaskDefinition"]
    d = _register()
    case[1](d)
    _check(fn, shape, d)


def test_reference_inputs_accepted() -> None:
    fns = compiled_validators(ecs_model())
    assert fns["RegisterTaskDefinition"](REGISTER_TASK_DEFINITION_INPUT)
    assert fns["DescribeTaskDefinition"](DESCRIBE_TASK_DEFINITION_INPUT)
    assert not fns["DescribeTaskDefinition"]({"include": ["TAGS"]})
    assert not fns["DescribeTaskDefinition"]([])
    assert not fns["DescribeTaskDefinition"](None)


@pytest.mark.parametrize("value", [1e20, 10 ** 18, float("inf"), "1e300", True, 0, "0", "2024-01-02",
                                   "nope", None, -1e15, 253402300800, [], {}])
def test_timestamps(value: Any) -> None:
    shape = ecs_model().operation_model("SubmitTaskStateChange").input_shape
    fn = compiled_validators(ecs_model())["SubmitTaskStateChange"]
    _check(fn, shape, {"pullStartedAt": value})


@pytest.mark.parametrize("value", [None, {}, {"a": [1, 2.5, None, True, {"b": "c"}]}, [[["deep"]]], "s", 3,
                                   (1, 2), {"a": (1,)}, {"a": {1, 2}}, b"x", decimal.Decimal(1)])
def test_documents(value: Any) -> None:
    shape = ecs_model().operation_model("CreateService").input_shape
    fn = compiled_validators(ecs_model())["CreateService"]
    x = {"serviceName": "s", "deploymentConfiguration": {"lifecycleHooks": [{"hookDetails": value}]}}
    _check(fn, shape, x)


# ---- a synthetic model for the rules ECS does not exercise ----------------------------------------

SYNTHETIC = {
    "version": "2.0",
    "metadata": {"apiVersion": "2020-01-01", "endpointPrefix": "synth", "jsonVersion": "1.1",
                 "protocol": "json", "serviceId": "Synth", "signatureVersion": "v4",
                 "targetPrefix": "Synth", "uid": "synth-2020-01-01"},
    "operations": {
        "Everything": {"name": "Everything", "http": {"method": "POST", "requestUri": "/"},
                       "input": {"shape": "EverythingRequest"}},
        "HostLabel": {"name": "HostLabel", "http": {"method": "POST", "requestUri": "/{Name}"},
                      "input": {"shape": "HostLabelRequest"}},
        "Empty": {"name": "Empty", "http": {"method": "POST", "requestUri": "/"},
                  "input": {"shape": "EmptyRequest"}},
    },
    "shapes": {
        "EverythingRequest": {"type": "structure", "required": ["Name"], "members": {
            "Name": {"shape": "Str3"},
            "Blob": {"shape": "Blob"},
            "Long": {"shape": "LongMin"},
            "Float": {"shape": "FloatMin"},
            "Ints": {"shape": "IntMinList"},
            "Strs": {"shape": "Str3List"},
            "Map": {"shape": "KeyMinMap"},
            "Tree": {"shape": "Tree"},
            "Choice": {"shape": "Choice"},
            "Doc": {"shape": "Doc"},
            "Json": {"shape": "Str", "jsonvalue": True, "location": "header", "locationName": "x-json"},
            "Host": {"shape": "Str", "hostLabel": True},
            "HostMin0": {"shape": "Str0", "hostLabel": True},
            "Bools": {"shape": "BoolList"},
            "Stamp": {"shape": "Stamp"},
            "Strict": {"shape": "Strict"},
            "Floats": {"shape": "FloatList"},
        }},
        "HostLabelRequest": {"type": "structure", "required": ["Name"], "members": {
            "Name": {"shape": "Str", "location": "uri", "locationName": "Name", "hostLabel": True},
            "Labels": {"shape": "HostLabelList"}}},
        "EmptyRequest": {"type": "structure", "members": {}},
        "HostLabelList": {"type": "list", "member": {"shape": "Str", "hostLabel": True}},
        "Str": {"type": "string"},
        "Str0": {"type": "string", "min": 0},
        "Str3": {"type": "string", "min": 3, "max": 5, "enum": ["abc", "abcd"]},
        "Str3List": {"type": "list", "member": {"shape": "Str3"}, "min": 2},
        "Blob": {"type": "blob"},
        "LongMin": {"type": "long", "min": -5},
        "FloatMin": {"type": "float", "min": 0.5},
        "IntMin": {"type": "integer", "min": 10},
        "IntMinList": {"type": "list", "member": {"shape": "IntMin"}},
        "BoolList": {"type": "list", "member": {"shape": "Bool"}},
        "FloatList": {"type": "list", "member": {"shape": "Float"}, "min": 1},
        "Float": {"type": "double"},
        "Bool": {"type": "boolean"},
        "KeyMinMap": {"type": "map", "key": {"shape": "Str3"}, "value": {"shape": "Tree"}},
        "Tree": {"type": "structure", "members": {"Value": {"shape": "IntMin"}, "Children": {"shape": "Trees"},
                                                  "Parent": {"shape": "Tree"}}},
        "Trees": {"type": "list", "member": {"shape": "Tree"}},
        "Choice": {"type": "structure", "union": True, "members": {"A": {"shape": "Str"}, "B": {"shape": "IntMin"},
                                                                   "C": {"shape": "Tree"}}},
        "Doc": {"type": "structure", "members": {}, "document": True},
        "Stamp": {"type": "timestamp"},
        "Strict": {"type": "structure", "required": ["A", "B", "C"], "members": {
            "A": {"shape": "Str"}, "B": {"shape": "Bool"}, "C": {"shape": "Float"}, "D": {"shape": "Stamp"},
            "E": {"shape": "Str", "hostLabel": True}}},
    },
}


def synthetic_model() -> ServiceModel:
    return ServiceModel(copy.deepcopy(SYNTHETIC), service_name="synth")


@pytest.mark.parametrize("op", list(SYNTHETIC["operations"]))
def test_synthetic_model_same_decisions(op: str) -> None:
    model = synthetic_model()
    shape = model.operation_model(op).input_shape
    fn = compile_service(model)[op]

    @settings(max_examples=150, derandomize=True, database=None, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.filter_too_much])
    @given(request_values(shape, json_only=False))
    @example({"Name": "abc", "Json": {1, 2}})
    @example({"Name": "abc", "Json": [1, "x"]})
    @example({"Name": "abc", "Blob": b"x"})
    @example({"Name": "abc", "Blob": bytearray(b"x")})
    @example({"Name": "abc", "Host": ""})
    @example({"Name": "abc", "HostMin0": ""})
    @example({"Name": "abc", "Bools": [1]})
    @example({"Name": "abc", "Floats": [True, 1, decimal.Decimal("1.5")]})
    @example({"Name": "abc", "Float": float("nan")})
    @example({"Name": "abc", "Float": decimal.Decimal("0.25")})
    @example({"Name": "abc", "Map": {"ab": {}}})
    @example({"Name": "abc", "Tree": {"Parent": {"Parent": {"Value": 9}}}})
    @example({"Name": "", "Choice": {"A": None}})
    @example({"Name": "", "Choice": {"A": "x", "bogus": 1}})
    @example({"Name": "abc", "Strict": {"A": "", "B": False, "C": 0, "E": ""}})
    @example({"Name": ["x"], "Labels": ["", "x"]})
    @example({"Bogus": 1})
    @example({"Name": "abc", "Strs": ["abc"]})
    @example({"Name": "abc", "Strs": ["abc", "ab"]})
    @example({"Name": "abc", "Floats": []})
    @example({"Name": "abc", "Floats": ()})
    @example({"Name": "abc", "Strict": {"A": "", "B": False, "C": 0, "D": None}})
    def prop(x: Any) -> None:
        _check(fn, shape, x)

    prop()


def test_generated_source_compiles_alone() -> None:
    src = generated_source(ecs_model())
    assert "def " in src and compile(src, "<check>", "exec")
