"""Fuzz every ECS operation of botocore's model through signed HTTP against a live server.

For each operation hypothesis generates request bodies from the input shape:
valid ones, the same with mistakes (wrong types, missing required / unknown
members, numbers under their min, too-short strings, bad enums, nested
mistakes: see tests/unit/test_compiled_validator.py), and valid ones whose
strings are replaced by long strings, bad ARNs and other nasty text. Each body
is signed with botocore's SigV4Auth and POSTed to 127.0.0.1. Every answer must:

- not be a 5xx;
- carry an ``x-amzn-RequestId`` header;
- be JSON, with ``__type`` on errors, and never contain a Python traceback;
- when ParamValidator rejects the body (as the server decodes it), be a 400
  InvalidParameterException (or UnknownOperationException for operations not
  written yet), and leave the database exactly as it was.

"Exactly as it was": the test keeps a read-only connection to the server's
SQLite file. ``PRAGMA data_version`` on it changes whenever another connection
commits; if it did not change across the request, nothing was written. If it
did, every table is dumped and compared with the dump taken before the request
(dumps are refreshed only when something committed since the last one).

Runs its own server (its own data directory), so other tests' state does not
interfere and the tables stay small.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.model import Shape
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.server import REGION, ServerProcess
from tests.unit.test_compiled_validator import _sites, ecs_model, pv_accepts, request_values, valid_values

TARGET_PREFIX = "AmazonEC2ContainerServiceV20141113"
# CI runs a fixed, derandomized set. For a longer hunt with fresh random inputs:
#   DOCKYARD_FUZZ_EXAMPLES=500 DOCKYARD_FUZZ_RANDOM=1 pytest tests/integration/test_fuzz.py
EXAMPLES_PER_OP = int(os.environ.get("DOCKYARD_FUZZ_EXAMPLES", "50"))
DERANDOMIZE = not os.environ.get("DOCKYARD_FUZZ_RANDOM")

# Operations known to answer 5xx to some input, with why (empty: every one the fuzzer found
# -- enums, timestamps ParamValidator accepts but cannot convert -- is fixed in api/constraints.py).
KNOWN_5XX: dict[str, str] = {}

# Strings a careless handler might choke on: ARNs of every kind and shape, long strings,
# separators, control characters, SQL/format/path tricks, non-ASCII.
NASTY = [
    "arn:aws:ecs:us-east-1:123456789012:cluster/fuzz",
    "arn:aws:ecs:us-east-1:123456789012:cluster/",
    "arn:aws:ecs:us-east-1:123456789012:task-definition/fuzz:1",
    "arn:aws:ecs:us-east-1:123456789012:task-definition/fuzz:0",
    "arn:aws:ecs:us-east-1:123456789012:task-definition/fuzz:99999999999999999999",
    "arn:aws:ecs:us-east-1:123456789012:task-definition/fuzz:-1",
    "arn:aws:ecs:us-east-1:123456789012:task-definition/:1",
    "arn:aws:ecs:us-east-1:123456789012:service/fuzz/svc",
    "arn:aws:ecs:us-east-1:123456789012:service/svc",
    "arn:aws:ecs:us-east-1:123456789012:service/a/b/c/d",
    "arn:aws:ecs:us-east-1:123456789012:task/fuzz/0123456789abcdef0123456789abcdef",
    "arn:aws:ecs:us-east-1:123456789012:task/0123456789abcdef",
    "arn:aws:ecs:us-east-1:123456789012:container-instance/fuzz/abc",
    "arn:aws:ecs:us-east-1:123456789012:capacity-provider/cp",
    "arn:aws:ecs:eu-west-1:999999999999:cluster/other-account",
    "arn:aws:ecs:us-east-1:123456789012:unknown-type/x",
    "arn:aws:iam::123456789012:role/r",
    "arn:aws:ecs:::", "arn:", "arn:aws", "arn:aws:ecs:us-east-1:abc:cluster/x", ":::::",
    "fuzz", "fuzz:1", "fuzz:", ":1", "fuzz:abc", "default", "", " ", "/", "//", "a/b", "*", "%", "_",
    "a" * 256, "b" * 2049, "c" * 70000, "fuzz:" + "9" * 40,
    "\x00", "nul\x00in", "\n", "tab\there", "\u202e", "\u4f60\u597d", "\U0001f600", "\ud800", "\udfff",
    "' OR 1=1 --", "\"; DROP TABLE clusters; --", "%s%n%x", "{0}", "../../etc/passwd", "NaN", "-1", "1e400",
]


# ---- a live server, signed requests ---------------------------------------------------------------

class Fuzzer:
    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.creds = Credentials(*server.credentials())
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        db = Path(server.data_dir) / "dockyard.db"
        self.db = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None,
                                  check_same_thread=False)
        self._dump_version: int | None = None
        self._dump: str | None = None
        self.names: dict[str, list[str]] = {}

    def close(self) -> None:
        self.conn.close()
        self.db.close()

    def send(self, op: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        req = AWSRequest(method="POST", url=f"{self.server.endpoint}/", data=body, headers={
            "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"{TARGET_PREFIX}.{op}"})
        SigV4Auth(self.creds, "ecs", REGION).add_auth(req)
        headers = dict(req.headers.items())
        for attempt in (1, 2):
            try:
                self.conn.request("POST", "/", body=body, headers=headers)
                r = self.conn.getresponse()
                return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
            except (http.client.HTTPException, ConnectionError):
                # keep-alive connection dropped: reconnect once (a crash shows up on the second try)
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    # The database, as the server's other readers would see it.
    def data_version(self) -> int:
        return int(self.db.execute("PRAGMA data_version").fetchone()[0])

    def dump(self) -> str:
        """A digest of every row of every table, taken in one read transaction."""
        h = hashlib.sha256()
        self.db.execute("BEGIN")
        try:
            tables = [r[0] for r in self.db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
            for t in tables:
                rows = self.db.execute(f'SELECT * FROM "{t}"').fetchall()
                h.update(t.encode())
                for row in sorted(repr(r) for r in rows):
                    h.update(row.encode())
        finally:
            self.db.execute("COMMIT")
        return h.hexdigest()

    def snapshot(self) -> tuple[int, str]:
        dv = self.data_version()
        if dv != self._dump_version or self._dump is None:
            self._dump, self._dump_version = self.dump(), dv
        return dv, self._dump


@pytest.fixture(scope="module")
def fuzzer() -> Iterator[Fuzzer]:
    server = ServerProcess().start()
    f = Fuzzer(server)
    try:
        f.names = _seed(server)
        yield f
    finally:
        f.close()
        log = server.log_path.read_text(errors="replace") if server.log_path.exists() else ""
        server.cleanup()
        _check_log(log)


def _check_log(log: str) -> None:
    """No traceback in the server's log, except the 500s of KNOWN_5XX (one record per line that
    starts with a date)."""
    records: list[str] = []
    for line in log.splitlines():
        if line[:2] == "20" or not records:
            records.append(line)
        else:
            records[-1] += "\n" + line
    bad = [r for r in records if "Traceback" in r
           and not any(f"internal error in {TARGET_PREFIX}.{op} " in r for op in KNOWN_5XX)]
    assert not bad, "tracebacks in the server log:\n" + "\n".join(bad)[-6000:]


def _seed(server: ServerProcess) -> dict[str, list[str]]:
    """A few real resources, so generated requests that name them reach deeper code paths.

    Returns member name -> values naming a seeded resource (see ``_aimed``).
    """
    ecs = server.client("ecs")
    for call in (
        lambda: ecs.create_cluster(clusterName="fuzz"),
        lambda: ecs.create_cluster(clusterName="default"),  # what an omitted "cluster" means
        lambda: ecs.register_task_definition(family="fuzz", containerDefinitions=[
            {"name": "web", "image": "nginx", "memory": 128, "essential": True}]),
        lambda: ecs.create_service(cluster="fuzz", serviceName="svc", taskDefinition="fuzz:1", desiredCount=0),
    ):
        with contextlib.suppress(Exception):  # an operation not written yet: seed what we can
            call()
    account = "000000000000"
    with contextlib.suppress(Exception):
        account = ecs.describe_clusters(clusters=["fuzz"])["clusters"][0]["clusterArn"].split(":")[4]
    arn = f"arn:aws:ecs:{REGION}:{account}"
    clusters = ["fuzz", f"{arn}:cluster/fuzz"]
    services = ["svc", f"{arn}:service/fuzz/svc"]
    taskdefs = ["fuzz", "fuzz:1", f"{arn}:task-definition/fuzz:1"]
    return {
        "cluster": clusters, "clusters": clusters, "service": services, "services": services,
        "serviceName": services[:1], "taskDefinition": taskdefs, "family": taskdefs[:1],
        "familyPrefix": taskdefs[:1], "taskDefinitions": taskdefs,
        "resourceArn": [clusters[1], services[1], taskdefs[2]],
        "capacityProvider": ["FARGATE", "FARGATE_SPOT"], "capacityProviders": ["FARGATE", "FARGATE_SPOT"],
    }


# ---- strategies ---------------------------------------------------------------------------------

def _poisoned(shape: Shape) -> st.SearchStrategy[Any]:
    """A generated value with one to three of its strings replaced by NASTY ones (and names of
    seeded resources), which ParamValidator still accepts when the rest was valid."""
    @st.composite
    def build(draw: Any) -> Any:
        value = draw(request_values(shape))
        strings = [path for path, s, node in _sites(value, shape) if s.type_name == "string" and path]
        for _ in range(min(len(strings), draw(st.integers(1, 3)))):
            _put(value, draw(st.sampled_from(strings)), draw(st.sampled_from(NASTY)))
        return value
    return build()


def _aimed(shape: Shape, names: dict[str, list[str]]) -> st.SearchStrategy[Any]:
    """A valid value whose resource-naming members (cluster, service, taskDefinition...) often
    name the seeded resources, so the request gets past "not found" into the operation."""
    @st.composite
    def build(draw: Any) -> Any:
        value = draw(valid_values(shape))
        for path, s, _node in list(_sites(value, shape)):
            if s.type_name != "string" or not path:
                continue
            key = next((p for p in reversed(path) if isinstance(p, str)), None)
            if key in names and draw(st.integers(0, 3)) > 0:
                _put(value, path, draw(st.sampled_from(names[key])))
        return value
    return build()


def _put(root: Any, path: tuple[Any, ...], value: Any) -> None:
    node = root
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value


def _body(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(value).encode()  # ints over 64 bits: the server parses them as floats


def _check_response(op: str, body: bytes, status: int, headers: dict[str, str], raw: bytes) -> dict[str, Any]:
    where = f"{op} {body[:2000]!r} -> {status} {raw[:2000]!r}"
    assert status < 500, f"5xx: {where}"
    assert headers.get("x-amzn-requestid"), f"no x-amzn-RequestId: {where}"
    assert b"Traceback" not in raw and b'File "' not in raw, f"traceback in body: {where}"
    try:
        out = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise AssertionError(f"body is not JSON: {where}") from None
    assert isinstance(out, dict), where
    if status >= 400:
        assert isinstance(out.get("__type"), str) and out["__type"], f"error without __type: {where}"
    return out


def _exercise(f: Fuzzer, op: str, shape: Shape, value: Any) -> None:
    body = _body(value)
    try:
        seen = orjson.loads(body)  # what the server validates
    except orjson.JSONDecodeError:  # e.g. a lone surrogate, which json.dumps escapes and orjson refuses
        seen = None
    # None: ParamValidator raises instead of reporting (a timestamp it cannot convert, e.g. 1e20);
    # the server must still answer 400 (Validator.explain), so that counts as invalid here.
    valid = isinstance(seen, dict) and pv_accepts(seen, shape) is True
    before = None if valid else f.snapshot()
    status, headers, raw = f.send(op, body)
    out = _check_response(op, body, status, headers, raw)
    if valid:
        return
    where = f"{op} {body[:2000]!r} -> {status} {raw[:2000]!r}"
    assert status == 400 and out["__type"] in ("InvalidParameterException", "UnknownOperationException",
                                                "SerializationException"), f"invalid input accepted: {where}"
    assert before is not None
    if f.data_version() != before[0]:
        assert f.dump() == before[1], f"invalid request changed the database: {where}"


SETTINGS = settings(max_examples=EXAMPLES_PER_OP, derandomize=DERANDOMIZE, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much,
                                           HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("op", [
    pytest.param(op, marks=pytest.mark.xfail(reason=KNOWN_5XX[op], strict=False)) if op in KNOWN_5XX else op
    for op in ecs_model().operation_names])
def test_fuzz_operation(fuzzer: Fuzzer, op: str) -> None:
    shape = ecs_model().operation_model(op).input_shape
    _seed(fuzzer.server)  # again: an earlier operation's fuzzing may have deleted them

    @SETTINGS
    @given(request_values(shape) | _poisoned(shape) | _aimed(shape, fuzzer.names))
    def prop(value: Any) -> None:
        _exercise(fuzzer, op, shape, value)

    prop()


RAW_BODIES = [b"", b"   ", b"null", b"[]", b"[{}]", b"1", b'"x"', b"{", b"}", b'{"a":', b"\xff\xfe", b"{}{}",
              b"[" * 2000 + b"]" * 2000, b"1e400", b'{"cluster": "\\ud800"}', b'{"cluster": 1e400}',
              b'{"cluster": "fuzz", "cluster": 1}', b"\x00", b'{"include": [' + b'"TAGS",' * 5000 + b'"TAGS"]}',
              b'{"a": ' * 600 + b"1" + b"}" * 600]


@pytest.mark.parametrize("op", ["CreateCluster", "DescribeClusters", "RegisterTaskDefinition",
                                "DescribeTaskDefinition", "ListClusters", "CreateService", "RunTask",
                                "ListServiceDeployments", "NoSuchOperation"])
@pytest.mark.parametrize("body", RAW_BODIES, ids=[f"raw{i}" for i in range(len(RAW_BODIES))])
def test_raw_bodies(fuzzer: Fuzzer, op: str, body: bytes) -> None:
    before = fuzzer.snapshot()
    status, headers, raw = fuzzer.send(op, body)
    _check_response(op, body, status, headers, raw)
    try:
        seen = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError:
        seen = None
    shape = ecs_model().operation_model(op).input_shape if op in ecs_model().operation_names else None
    if shape is None or not isinstance(seen, dict) or pv_accepts(seen, shape) is not True:
        assert status == 400, (op, body[:200], status, raw[:500])
        if fuzzer.data_version() != before[0]:
            assert fuzzer.dump() == before[1], f"invalid body changed the database: {op} {body[:200]!r}"


def test_unconvertible_timestamp_is_a_400(fuzzer: Fuzzer) -> None:
    body = b'{"service": "svc", "createdAt": {"before": 1e20}}'
    status, headers, raw = fuzzer.send("ListServiceDeployments", body)
    _check_response("ListServiceDeployments", body, status, headers, raw)
    assert status == 400


def test_database_watch_sees_a_write(fuzzer: Fuzzer) -> None:
    """The "changes nothing" check is not vacuous: a valid write moves data_version and the dump."""
    dv, digest = fuzzer.snapshot()
    body = orjson.dumps({"clusterName": f"fuzz-watch-{dv}"})
    status, _, raw = fuzzer.send("CreateCluster", body)
    assert status == 200, raw
    assert fuzzer.data_version() != dv
    assert fuzzer.dump() != digest
