"""Accept/reject functions compiled from botocore shapes.

``compiled_validators(model)`` returns ``{operation name: fn}`` where ``fn(params)``
is True exactly when ``botocore.validate.ParamValidator().validate(params,
input_shape)`` reports no errors, for JSON-decoded input (dict, list, str, int,
float, bool, None). It only decides; on reject the server runs ParamValidator to
word the error (``dockyard.api.validation.Validator``).

Rules mirrored from botocore 1.44's ``botocore/validate.py`` (read it before
changing anything here):

- structure: ``isinstance(dict)``; tagged union (``union``): exactly one key
  present (counted over every key, known or not); every ``required`` member
  present; no unknown key; each present member checked, even when its value is
  None (None fails every type but documents).
- string: ``isinstance(str)``; ``len < min`` rejects. There is no max, enum or
  pattern check. A ``hostLabel`` member without ``min`` has an implicit min of 1.
- integer/long: ``isinstance(int)``, so True/False pass (bool subclasses int);
  ``value < min`` rejects.
- double/float: ``isinstance((float, Decimal, int))`` (bools pass too); ``value <
  min`` rejects (written ``not (v < min)`` so NaN behaves as in botocore).
- boolean: ``isinstance(bool)``.
- list: ``isinstance((list, tuple))``; ``len < min`` rejects. If the member type
  is a scalar (string/integer/long/float/double/boolean) whose metadata has none
  of required/min/document/union, items get only the type check (botocore's
  fast path: no hostLabel or jsonvalue handling there either).
- map: ``isinstance(dict)``; every key checked against the key shape (so a key
  shorter than its ``min`` rejects) and every value against the value shape.
- blob: ``isinstance((bytes, bytearray, str))`` or has a ``read`` attribute.
- timestamp: ``botocore.utils.parse_to_aware_datetime`` must succeed (True is
  epoch 1 s; "0" and ISO strings pass; 1e20 makes botocore raise RuntimeError).
- document (structure with ``document``): None, str, int, bool, float, and dicts
  / lists of those, to any depth; keys are not checked.
- jsonvalue header strings: ``json.dumps`` must succeed.

Where ParamValidator itself raises instead of reporting (a timestamp it cannot
convert, e.g. 1e20, raises RuntimeError; a document nested ~1000 deep raises
RecursionError) the compiled function never raises: it rejects the timestamp
(so the caller goes on to ParamValidator, which raises again; Validator.explain
turns that into a 400) and accepts the deep document (it
checks documents with an explicit stack).

Design: one Python function per distinct (shape, validation-relevant traits),
generated as source and compiled with one ``exec`` per service; shapes whose
generated code is identical (a dozen "list of string" shapes...) share one
function, and functions call each other by global name, so recursive shapes
work. Two kinds of structure:

- up to ``_UNROLL`` members: one ``p.get(member, _MISSING)`` per member with its
  check inline, counting the members found; ``count != len(p)`` means an
  unknown key (a None value that is not valid fails its check, so it cannot
  hide there).
- larger ones walk the keys that are present (cost follows the input, not the
  model's 40-odd ContainerDefinition members): ``K[key]`` gives a small code;
  the few scalar kinds of that structure (plain string, integer, bool, string
  min 1...) are checked inline in an if/elif chain, every nested
  structure/list/map is a call through a tuple indexed by the code, and an
  unknown key has no code. Required members are ``in`` tests before the walk.

Measured on this project's 2-vCPU VM (Python 3.11.7, botocore 1.44.5) with
``python -m dockyard.api.compiled_validator`` (``_bench``: ``timeit``, 7 rounds
interleaved compiled / ParamValidator, 3 runs, while another engineer's wrk
benchmark was running, so absolute numbers are ~20% high; compare the ratios).
The RegisterTaskDefinition input is the reference's 2-container web + FireLens
task definition (``REGISTER_TASK_DEFINITION_INPUT`` below):

================================================  =====================  =====================
input (µs per call, min / median of rounds)       compiled               ParamValidator
================================================  =====================  =====================
RegisterTaskDefinition (2 containers, ~1.5 KB)    8.3-8.8 / 8.7-9.1      94-97 / 97-103  (11x)
DescribeTaskDefinition {taskDefinition, include}  0.26-0.27 / 0.28-0.29  3.6-3.8 / 4.0-4.5 (13x)
================================================  =====================  =====================

Build, all 88 ECS operations (shape walk + source generation + one ``compile``
of ~125 KB; ``compile`` is about two thirds of it): 50-75 ms for the first build
in a process (botocore resolving the shapes for the first time), 28-50 ms after
that. ``compiled_validators`` builds once per process per service model. Loading
the ECS model itself costs about as much again.
"""

from __future__ import annotations

import decimal
import json
import threading
from collections.abc import Callable
from typing import Any

from botocore.model import ServiceModel, Shape
from botocore.utils import is_json_value_header, parse_to_aware_datetime
from botocore.validate import ParamValidator

__all__ = ["compile_service", "compiled_validators"]

Check = Callable[[Any], bool]

# botocore.validate.ParamValidator.SCALAR_TYPES / VALIDATED_METADATA_ATTRS
_SCALAR_TYPES: dict[str, tuple[type, ...]] = {
    "float": (float, decimal.Decimal, int),
    "double": (float, decimal.Decimal, int),
    "integer": (int,),
    "long": (int,),
    "boolean": (bool,),
    "string": (str,),
}
_VALIDATED_METADATA_ATTRS = frozenset({"required", "min", "document", "union"})
# Structures with at most this many members are checked with one dict.get per member
# (faster than walking the input's keys when most members are usually present).
_UNROLL = 4
_TYPE_NAMES = {"float": "_NUM", "double": "_NUM", "integer": "int", "long": "int", "boolean": "bool",
               "string": "str"}


# ---- helpers the generated code calls -------------------------------------------------------------

def _ts(v: Any) -> bool:
    try:
        parse_to_aware_datetime(v)
    # TypeError/ValueError/AttributeError: botocore reports an error; anything else: it raises
    except Exception:  # noqa: BLE001
        return False
    return True


def _doc(p: Any) -> bool:
    stack = [p]
    pop = stack.pop
    while stack:
        x = pop()
        if x is None:
            continue
        if isinstance(x, dict):
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
        elif not isinstance(x, (str, int, bool, float)):
            return False
    return True


def _jsonvalue(v: Any) -> bool:
    try:
        json.dumps(v)
    except (ValueError, TypeError):
        return False
    return True


def _blob(v: Any) -> bool:
    return isinstance(v, (bytes, bytearray, str)) or hasattr(v, "read")


def _fallback(shape: Shape) -> Check:
    """For a shape type this module does not know: ask ParamValidator (exact, slow)."""
    pv = ParamValidator()

    def check(v: Any) -> bool:
        return not pv.validate(v, shape).has_errors()
    return check


# ---- code generation -----------------------------------------------------------------------------

def _min_of(shape: Shape) -> Any:
    """The lower bound botocore's range_check applies, or None."""
    md = shape.metadata
    if "min" in md:
        return md["min"]
    if shape.serialization.get("hostLabel"):
        return 1
    return None


class _Gen:
    def __init__(self) -> None:
        self.src: list[str] = []
        self.ns: dict[str, Any] = {
            "_NUM": (float, decimal.Decimal, int), "_LIST": (list, tuple),
            "_MISSING": object(), "_ts": _ts, "_doc": _doc, "_jsonvalue": _jsonvalue, "_blob": _blob,
        }
        self.fn_for: dict[Any, str] = {}
        self.post: list[str] = []
        self.consts: dict[str, str] = {}
        self.by_text: dict[str, str] = {}  # generated text (own name blanked) -> function name
        self.open: set[str] = set()  # functions being generated
        self.self_referenced: set[str] = set()  # ... that a nested shape referred to (recursion)
        self.n = 0

    def _name(self, prefix: str, shape: Shape) -> str:
        self.n += 1
        clean = "".join(c if c.isalnum() else "_" for c in shape.name)
        return f"{prefix}{self.n}_{clean}"

    @staticmethod
    def _key(shape: Shape) -> Any:
        md = shape.metadata
        return (shape.name, shape.type_name,
                repr([(k, md[k]) for k in sorted(_VALIDATED_METADATA_ATTRS) if k in md]),
                bool(shape.serialization.get("hostLabel")), is_json_value_header(shape))

    def const(self, value: Any, prefix: str = "C") -> str:
        """A module-level name bound to ``value``; equal dict constants share one name."""
        ck = prefix + repr(value) if isinstance(value, dict) else None
        if ck is not None and ck in self.consts:
            return self.consts[ck]
        self.n += 1
        name = f"_{prefix}{self.n}"
        self.ns[name] = value
        if ck is not None:
            self.consts[ck] = name
        return name

    def expr(self, shape: Shape, v: str) -> tuple[str, bool]:
        """A boolean expression that is True when value ``v`` is valid for ``shape``.

        Returns (expression, inline) where inline is False for calls to generated functions.
        """
        if is_json_value_header(shape):
            return f"_jsonvalue({v})", False
        t = shape.type_name
        if t == "structure" and shape.is_document_type:
            return f"_doc({v})", False
        if t in ("string", "integer", "long", "float", "double"):
            e = f"isinstance({v}, {_TYPE_NAMES[t]})"
            lo = _min_of(shape)
            if lo is not None:
                if t == "string":
                    if not (isinstance(lo, (int, float)) and lo <= 0):  # len() >= 0 always
                        e += f" and not (len({v}) < {lo!r})"
                else:
                    e += f" and not ({v} < {lo!r})"
            return e, True
        if t == "boolean":
            return f"isinstance({v}, bool)", True
        if t == "blob":
            return f"_blob({v})", False
        if t == "timestamp":
            return f"_ts({v})", False
        if t in ("structure", "list", "map"):
            return f"{self.function(shape)}({v})", False
        return f"{self.const(_fallback(shape), 'F')}({v})", False

    def function(self, shape: Shape) -> str:
        key = self._key(shape)
        name = self.fn_for.get(key)
        if name is not None:
            if name in self.open:
                self.self_referenced.add(name)
            return name
        name = self._name("v", shape)
        self.fn_for[key] = name  # before the body: recursive shapes refer to themselves by name
        self.open.add(name)
        text, post = getattr(self, f"_gen_{shape.type_name}")(name, shape)
        self.open.discard(name)
        if name not in self.self_referenced:
            # Many shapes check alike (StringList, a dozen "list of string" shapes...): one function.
            same = text.replace(name, "@") + "\n" + post.replace(name, "@")
            first = self.by_text.get(same)
            if first is not None:
                self.fn_for[key] = first
                return first
            self.by_text[same] = name
        self.src.append(text)
        if post:
            self.post.append(post)
        return name

    def _unrollable(self, shape: Shape) -> bool:
        return (shape.type_name == "structure" and not shape.is_document_type
                and not is_json_value_header(shape) and 0 < len(shape.members) <= _UNROLL
                and set(shape.metadata.get("required", [])) <= set(shape.members))

    def _small_struct_lines(self, shape: Shape, p: str, ind: str) -> list[str]:
        """Statements that ``return False`` unless ``p`` is valid for the small structure ``shape``.

        One ``get`` per member; "no unknown key" is then a count of the members found.
        """
        required = shape.metadata.get("required", [])
        lines = [f"{ind}if not isinstance({p}, dict):", f"{ind}    return False"]
        if shape.is_tagged_union:
            lines += [f"{ind}if len({p}) != 1:", f"{ind}    return False"]
        lines += [f"{ind}n = 0"]
        for m, ms in shape.members.items():
            e, _ = self.expr(ms, "v")
            lines += [f"{ind}v = {p}.get({m!r}, _MISSING)"]
            if m in required:
                lines += [f"{ind}if v is _MISSING:", f"{ind}    return False",
                          f"{ind}if not ({e}):", f"{ind}    return False", f"{ind}n += 1"]
            else:
                lines += [f"{ind}if v is not _MISSING:", f"{ind}    if not ({e}):",
                          f"{ind}        return False", f"{ind}    n += 1"]
        lines += [f"{ind}if n != len({p}):", f"{ind}    return False"]
        return lines

    def _gen_structure(self, name: str, shape: Shape) -> tuple[str, str]:
        members = shape.members
        if self._unrollable(shape):
            lines = [f"def {name}(p):", *self._small_struct_lines(shape, "p", "    "), "    return True"]
            return "\n".join(lines), ""
        lines = [f"def {name}(p):", "    if not isinstance(p, dict):", "        return False"]
        if shape.is_tagged_union:
            lines += ["    if len(p) != 1:", "        return False"]
        required = shape.metadata.get("required", [])
        if not members:
            if required:  # cannot be satisfied: a required name is never a member
                lines += ["    return False"]
            else:
                lines += ["    return not p"]
            return "\n".join(lines), ""
        if required:
            cond = " or ".join(f"{r!r} not in p" for r in required)
            lines += [f"    if {cond}:", "        return False"]
        # group members by their check; inline groups (scalar checks) first, most members first
        groups: dict[str, list[str]] = {}
        inline: dict[str, bool] = {}
        for m, ms in members.items():
            e, il = self.expr(ms, "v")
            groups.setdefault(e, []).append(m)
            inline[e] = il
        order = sorted(groups, key=lambda e: (not inline[e], -len(groups[e])))
        codes: dict[str, int] = {}
        body: list[str] = []
        post = ""
        n_inline = 0
        for i, e in enumerate(order):
            for m in groups[e]:
                codes[m] = i
            if inline[e]:
                n_inline += 1
                kw = "if" if i == 0 else "elif"
                body += [f"        {kw} c == {i}:", f"            if not ({e}):",
                         "                return False"]
        n_calls = len(order) - n_inline
        if n_calls == 1 and n_inline == 0:
            body += [f"        if not ({order[0]}):", "            return False"]
        elif n_calls:
            # the remaining groups are function calls: one tuple index instead of a longer chain
            fns = "(" + ", ".join(["None"] * n_inline + [order[i].split("(", 1)[0]
                                                        for i in range(n_inline, len(order))]) + ",)"
            tup = f"_T_{name}"
            post = f"{tup} = {fns}"
            if n_inline:
                body += ["        elif not " + tup + "[c](v):", "            return False"]
            else:
                body += ["        if not " + tup + "[c](v):", "            return False"]
        kname = self.const(codes, "K")
        lines += [f"    g = {kname}.get", "    for k, v in p.items():", "        c = g(k)",
                  "        if c is None:", "            return False"]
        lines += body
        lines += ["    return True"]
        return "\n".join(lines), post

    def _gen_list(self, name: str, shape: Shape) -> tuple[str, str]:
        member = shape.member
        lines = [f"def {name}(p):", "    if not isinstance(p, _LIST):", "        return False"]
        lo = _min_of(shape)
        if lo is not None and not (isinstance(lo, (int, float)) and lo <= 0):
            lines += [f"    if len(p) < {lo!r}:", "        return False"]
        mt = member.type_name
        if mt in _SCALAR_TYPES and not (_VALIDATED_METADATA_ATTRS & set(member.metadata)):
            e = f"isinstance(x, {_TYPE_NAMES[mt]})"
        else:
            e, _ = self.expr(member, "x")
        lines += ["    for x in p:", f"        if not ({e}):", "            return False", "    return True"]
        return "\n".join(lines), ""

    def _gen_map(self, name: str, shape: Shape) -> tuple[str, str]:
        ke, _ = self.expr(shape.key, "k")
        ve, _ = self.expr(shape.value, "v")
        lines = [f"def {name}(p):", "    if not isinstance(p, dict):", "        return False",
                 "    for k, v in p.items():", f"        if not ({ke}) or not ({ve}):",
                 "            return False", "    return True"]
        return "\n".join(lines), ""

    def build(self, shapes: dict[str, Shape]) -> tuple[dict[str, Check], str]:
        tops = {op: self.function(s) for op, s in shapes.items()}
        source = "\n\n".join(self.src + self.post) + "\n"
        code = compile(source, "<dockyard compiled validators>", "exec")
        exec(code, self.ns)
        return {op: self.ns[fn] for op, fn in tops.items()}, source


def compile_service(model: ServiceModel) -> dict[str, Check]:
    """Build one accept/reject function per operation that has an input shape."""
    shapes: dict[str, Shape] = {}
    for op in model.operation_names:
        shape = model.operation_model(op).input_shape
        if shape is not None:
            shapes[op] = shape
    fns, _ = _Gen().build(shapes)
    return fns


def generated_source(model: ServiceModel) -> str:
    """The Python source ``compile_service`` runs (for reading and debugging)."""
    shapes = {op: s for op in model.operation_names
              if (s := model.operation_model(op).input_shape) is not None}
    return _Gen().build(shapes)[1]


_cache: dict[tuple[str, str, int], tuple[object, dict[str, Check]]] = {}
_cache_lock = threading.Lock()


def compiled_validators(model: ServiceModel) -> dict[str, Check]:
    """``compile_service`` once per process per service model.

    Keyed by the model's description dict, which botocore's loader caches, so every
    ``session.get_service_model("ecs")`` of a process shares one build. The entry keeps that
    dict alive, so its id cannot be reused by another model.
    """
    desc = getattr(model, "_service_description", model)
    key = (model.service_name, model.api_version, id(desc))
    with _cache_lock:
        hit = _cache.get(key)
        if hit is None:
            hit = _cache[key] = (desc, compile_service(model))
    return hit[1]


# ---- measurement ---------------------------------------------------------------------------------

REGISTER_TASK_DEFINITION_INPUT: dict[str, Any] = {
    "family": "web",
    "taskRoleArn": "arn:aws:iam::123456789012:role/web-task",
    "executionRoleArn": "arn:aws:iam::123456789012:role/ecsTaskExecutionRole",
    "networkMode": "awsvpc",
    "requiresCompatibilities": ["FARGATE"],
    "cpu": "512",
    "memory": "1024",
    "containerDefinitions": [
        {
            "name": "web",
            "image": "public.ecr.aws/nginx/nginx:1.27",
            "essential": True,
            "cpu": 256,
            "memory": 512,
            "portMappings": [{"containerPort": 80, "hostPort": 80, "protocol": "tcp", "name": "http"},
                             {"containerPort": 443, "protocol": "tcp"}],
            "environment": [{"name": "STAGE", "value": "prod"}, {"name": "LOG_LEVEL", "value": "info"},
                            {"name": "PORT", "value": "80"}],
            "command": ["nginx", "-g", "daemon off;"],
            "healthCheck": {"command": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"],
                            "interval": 30, "timeout": 5, "retries": 3, "startPeriod": 10},
            "logConfiguration": {"logDriver": "awsfirelens",
                                 "options": {"Name": "cloudwatch", "region": "us-east-1",
                                             "log_group_name": "/ecs/web", "auto_create_group": "true"}},
            "dependsOn": [{"containerName": "log_router", "condition": "START"}],
            "mountPoints": [{"sourceVolume": "data", "containerPath": "/data", "readOnly": False}],
        },
        {
            "name": "log_router",
            "image": "public.ecr.aws/aws-observability/aws-for-fluent-bit:stable",
            "essential": True,
            "memoryReservation": 50,
            "firelensConfiguration": {"type": "fluentbit", "options": {"enable-ecs-log-metadata": "true"}},
            "logConfiguration": {"logDriver": "awslogs",
                                 "options": {"awslogs-group": "/ecs/firelens", "awslogs-region": "us-east-1",
                                             "awslogs-stream-prefix": "firelens"}},
            "user": "0",
        },
    ],
    "volumes": [{"name": "data", "host": {"sourcePath": "/srv/data"}}],
    "tags": [{"key": "team", "value": "platform"}, {"key": "env", "value": "prod"}],
}

DESCRIBE_TASK_DEFINITION_INPUT: dict[str, Any] = {"taskDefinition": "web:1", "include": ["TAGS"]}


def _bench(rounds: int = 7) -> None:  # pragma: no cover - run by hand
    """Print build time and µs per call, compiled vs ParamValidator (rounds interleaved)."""
    import statistics
    import time
    import timeit

    import botocore.session

    t0 = time.perf_counter()
    model = botocore.session.get_session().get_service_model("ecs")
    t1 = time.perf_counter()
    compile_service(model)
    t2 = time.perf_counter()
    builds = []
    for _ in range(rounds):
        t = time.perf_counter()
        compile_service(model)
        builds.append(time.perf_counter() - t)
    print(f"load ecs model {1e3 * (t1 - t0):.1f} ms; build all {len(model.operation_names)} operations: "
          f"first {1e3 * (t2 - t1):.1f} ms, then min {1e3 * min(builds):.1f} / "
          f"median {1e3 * statistics.median(builds):.1f} ms")
    fns = compiled_validators(model)
    pv = ParamValidator()
    for op, inp in (("RegisterTaskDefinition", REGISTER_TASK_DEFINITION_INPUT),
                    ("DescribeTaskDefinition", DESCRIBE_TASK_DEFINITION_INPUT)):
        shape = model.operation_model(op).input_shape
        assert fns[op](inp) and not pv.validate(inp, shape).has_errors()
        fn = fns[op]
        def run_compiled(fn: Check = fn, inp: Any = inp) -> Any:
            return fn(inp)

        def run_pv(inp: Any = inp, shape: Shape = shape) -> Any:
            return pv.validate(inp, shape)

        timers = {"compiled": timeit.Timer(run_compiled), "ParamValidator": timeit.Timer(run_pv)}
        loops = {k: tm.autorange()[0] for k, tm in timers.items()}
        res: dict[str, list[float]] = {k: [] for k in timers}
        for _ in range(rounds):
            for k, tm in timers.items():
                res[k].append(tm.timeit(loops[k]) / loops[k] * 1e6)
        for k, v in res.items():
            print(f"{op:24s} {k:15s} min {min(v):7.2f}  median {statistics.median(v):7.2f} µs")


if __name__ == "__main__":  # pragma: no cover
    _bench()
