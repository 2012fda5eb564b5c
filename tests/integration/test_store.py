"""The store on both backends: SQLite (default) and PostgreSQL (private server per session)."""

from __future__ import annotations

import asyncio
import functools
import itertools
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import bindparam, delete, func, insert, inspect, select, update

from dockyard.state import schema
from dockyard.state import store as store_module
from dockyard.state.migrate import config
from dockyard.state.store import Store, Tx, prepare
from tests.helpers.postgres import PostgresServer
from tests.helpers.server import ServerProcess

tags = schema.tags

INSERT_TAG = prepare(insert(tags))
TAG_VALUE = prepare(select(tags.c.value).where(tags.c.resource_arn == bindparam("a"), tags.c.key == bindparam("k")))
TAGS_OF = prepare(select(tags.c.key, tags.c.value).where(tags.c.resource_arn == bindparam("a"))
                  .order_by(tags.c.key))
# Literals inside a prepared statement ("keep", LIMIT 2) are bound by the store, not the caller.
FIRST_TWO_NOT_KEEP = prepare(select(tags.c.key).where(tags.c.resource_arn == bindparam("a"), tags.c.value != "keep")
                             .order_by(tags.c.key).limit(2))
SET_VALUE = prepare(update(tags).where(tags.c.resource_arn == bindparam("a")).values(value=bindparam("v")))
DELETE_KEY = prepare(delete(tags).where(tags.c.resource_arn == bindparam("a"), tags.c.key == bindparam("k")))
COUNT_OF = prepare(select(func.count()).select_from(tags).where(tags.c.resource_arn == bindparam("a")))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'dockyard.db'}"
    return request.getfixturevalue("pg").create_database()


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    s = Store(url)
    s.migrate()
    yield s
    s.stop()
    if s._read_conn is not None:
        s._read_conn.close()
    s.engine.dispose()


def run_with_writer(store: Store, body: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``body()`` in a fresh event loop with the store's group-commit writer started."""
    async def main() -> Any:
        store.start(asyncio.get_running_loop())
        try:
            return await body()
        finally:
            store.stop()
    return asyncio.run(main())


def committed_count(url: str, arn: str) -> int:
    """Rows of ``arn`` as a brand-new connection sees them: only what is committed."""
    other = Store(url)
    try:
        with other.transaction() as tx:
            row = tx.one(COUNT_OF, a=arn)
        return int(row[0]) if row else 0
    finally:
        other.engine.dispose()


# -- migrations -----------------------------------------------------------------


def test_migrations_bring_the_schema_to_alembic_head(store: Store) -> None:
    head = ScriptDirectory.from_config(config(store.url)).get_current_head()
    with store.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == head
        assert set(schema.metadata.tables) <= set(inspect(conn).get_table_names())
        # The migrations build exactly what schema.py declares: nothing to autogenerate.
        assert compare_metadata(MigrationContext.configure(conn), schema.metadata) == []


def test_migrate_twice_is_a_no_op(store: Store) -> None:
    with store.transaction() as tx:
        tx.insert(INSERT_TAG, resource_arn="arn:x", key="k", value="v")
    store.migrate()
    with store.transaction() as tx:
        assert tx.one(TAG_VALUE, a="arn:x", k="k") == ("v",)


# -- Tx ------------------------------------------------------------------------


def test_tx_insert_one_all_run_with_prepared_statements(store: Store) -> None:
    with store.transaction() as tx:
        for key, value in [("a", "1"), ("b", "keep"), ("c", "3"), ("d", "4")]:
            tx.insert(INSERT_TAG, resource_arn="arn:r", key=key, value=value)
        tx.insert(INSERT_TAG, resource_arn="arn:other", key="a", value="x")

    with store.transaction() as tx:
        assert tx.one(TAG_VALUE, a="arn:r", k="c") == ("3",)
        assert tx.one(TAG_VALUE, a="arn:r", k="missing") is None
        assert tx.all(TAGS_OF, a="arn:r") == [("a", "1"), ("b", "keep"), ("c", "3"), ("d", "4")]
        assert tx.all(FIRST_TWO_NOT_KEEP, a="arn:r") == [("a",), ("c",)]
        assert tx.run(SET_VALUE, a="arn:other", v="y") == 1
        assert tx.run(DELETE_KEY, a="arn:r", k="d") == 1
        assert tx.run(DELETE_KEY, a="arn:r", k="d") == 0
        # An unprepared Core statement runs too (compiled on the spot).
        assert tx.one(select(tags.c.value).where(tags.c.resource_arn == "arn:other")) == ("y",)

    with store.transaction() as tx:
        assert tx.all(TAGS_OF, a="arn:r") == [("a", "1"), ("b", "keep"), ("c", "3")]


def test_transaction_rolls_back_on_exception(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.insert(INSERT_TAG, resource_arn="arn:rb", key="k", value="v")
        raise RuntimeError("boom")
    assert committed_count(store.url, "arn:rb") == 0


# -- group commit ----------------------------------------------------------------


def _insert(tx: Tx, arn: str, key: str, fail: bool = False) -> str:
    tx.insert(INSERT_TAG, resource_arn=arn, key=key, value="v")
    tx.notify("tag", key)
    if fail:
        raise ValueError(f"refused {key}")
    return key


async def queued_as_one_group(store: Store, writes: list[Awaitable[Any]]) -> list[asyncio.Future[Any]]:
    """Queue ``writes`` while the writer is held in a commit of its own: they share the next group."""
    entered, release = threading.Event(), threading.Event()
    commit = store._commit_now

    def gated_commit(conn: Any) -> None:  # the first commit waits until the others are queued
        if not entered.is_set():
            entered.set()
            assert release.wait(10)
        commit(conn)

    store._commit_now = gated_commit  # type: ignore[method-assign]
    store.inline_commit_max = -1.0  # commits in the commit thread, so the loop queues the others
    first = asyncio.ensure_future(store.write(lambda tx: None))
    assert await asyncio.to_thread(entered.wait, 10)
    futures: list[asyncio.Future[Any]] = [asyncio.ensure_future(w) for w in writes]
    await asyncio.sleep(0.05)  # every write is on the queue
    release.set()
    await first
    return futures


def test_many_concurrent_writes_commit_in_one_group(store: Store) -> None:
    n = 200
    ran: list[str] = []
    events: list[tuple[str, str]] = []
    store.subscribe(events.extend)

    def write(tx: Tx, key: str) -> str:
        ran.append(key)
        return _insert(tx, "arn:g", key)

    async def body() -> tuple[list[str], int]:
        writes = await queued_as_one_group(store, [store.write(write, f"k{i:03d}") for i in range(n)])
        await asyncio.wait(writes, return_when=asyncio.FIRST_COMPLETED)
        ran_when_first_answered = len(ran)
        return list(await asyncio.gather(*writes)), ran_when_first_answered

    results, ran_when_first_answered = run_with_writer(store, body)
    assert results == [f"k{i:03d}" for i in range(n)]
    # No write was answered before every write of its group had run: one commit for all.
    assert ran_when_first_answered == n
    assert committed_count(store.url, "arn:g") == n
    assert sorted(k for _, k in events) == results


def test_a_group_runs_concurrent_writes_side_by_side_by_operation_after_the_others_in_order(tmp_path: Path) -> None:
    # SQLite's group commit only (on PostgreSQL the writer thread takes writes as they come).
    store = Store(f"sqlite:///{tmp_path / 'dockyard.db'}")
    store.migrate()
    ran: list[str] = []

    def op_a(tx: Tx, key: str) -> str:
        ran.append(key)
        return key

    def op_b(tx: Tx, key: str) -> str:
        ran.append(key)
        return key

    async def concurrent(fn: Callable[..., str], key: str) -> str:
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        store.submit(fn, (key,), functools.partial(store_module._settle, fut), concurrent=True)
        return await fut

    async def body() -> list[str]:
        writes = await queued_as_one_group(store, [
            store.write(op_a, "w1"), concurrent(op_b, "c2"), concurrent(op_a, "c3"), store.write(op_b, "w4"),
            concurrent(op_b, "c5"), store.write(op_a, "w6")])
        return list(await asyncio.gather(*writes))

    try:
        answers = run_with_writer(store, body)
    finally:
        store.engine.dispose()
    assert answers == ["w1", "c2", "c3", "w4", "c5", "w6"]  # each caller gets its own answer
    assert ran == ["w1", "w4", "w6", "c2", "c5", "c3"]


def test_a_failing_write_rolls_back_alone_and_only_its_caller_sees_the_error(store: Store) -> None:
    events: list[tuple[str, str]] = []
    store.subscribe(events.extend)

    async def body() -> list[Any]:
        calls: list[Awaitable[Any]] = []
        for i in range(30):
            if i == 10:  # raises in Python after its insert ran
                calls.append(store.write(_insert, "arn:f", f"k{i:02d}", True))
            elif i == 20:  # fails in the database: duplicate primary key of k05
                calls.append(store.write(_insert, "arn:f", "k05"))
            else:
                calls.append(store.write(_insert, "arn:f", f"k{i:02d}"))
        writes = await queued_as_one_group(store, calls)
        results = list(await asyncio.gather(*writes, return_exceptions=True))
        # The writer is still healthy after both failures.
        results.append(await store.write(_insert, "arn:f", "after"))
        return results

    results = run_with_writer(store, body)
    assert isinstance(results[10], ValueError) and str(results[10]) == "refused k10"
    assert isinstance(results[20], Exception) and not isinstance(results[20], ValueError)
    assert "unique" in str(results[20]).lower() or "duplicate" in str(results[20]).lower()
    ok = [r for i, r in enumerate(results) if i not in (10, 20)]
    assert all(isinstance(r, str) for r in ok), ok

    with store.transaction() as tx:
        keys = [k for k, _ in tx.all(TAGS_OF, a="arn:f")]
    assert keys == sorted(ok)
    assert "k10" not in keys
    # Only committed writes publish their events.
    assert sorted(k for _, k in events) == sorted(ok)


def test_read_sees_committed_writes_and_never_uncommitted_ones(store: Store) -> None:
    inserted, release, hold = threading.Event(), threading.Event(), threading.Event()
    commit = store._commit_now

    def held_commit(conn: Any) -> None:  # the write has run; its commit waits for ``release``
        if hold.is_set():
            inserted.set()
            assert release.wait(10)
        commit(conn)

    store._commit_now = held_commit  # type: ignore[method-assign]
    store.inline_commit_max = -1.0  # the held commit must not hold the loop

    def slow_write(tx: Tx) -> None:
        _insert(tx, "arn:s", "slow")
        hold.set()

    def count(tx: Tx) -> int:
        row = tx.one(COUNT_OF, a="arn:s")
        return int(row[0]) if row else 0

    async def body() -> tuple[int, int, int]:
        await store.write(_insert, "arn:s", "first")
        after_first = store.read(count)
        pending = asyncio.ensure_future(store.write(slow_write))
        assert await asyncio.to_thread(inserted.wait, 10)
        while_uncommitted = await asyncio.to_thread(store.read, count)
        release.set()
        await pending
        return after_first, while_uncommitted, store.read(count)

    assert run_with_writer(store, body) == (1, 1, 2)


def test_read_is_one_snapshot_across_its_statements(store: Store) -> None:
    """A commit landing between two statements of one read is not seen by the second."""
    def two_counts(tx: Tx) -> tuple[int, int]:
        before = tx.one(COUNT_OF, a="arn:snap")
        with store.transaction() as wtx:  # another connection commits meanwhile
            wtx.insert(INSERT_TAG, resource_arn="arn:snap", key="new", value="v")
        after = tx.one(COUNT_OF, a="arn:snap")
        return int(before[0]), int(after[0])  # type: ignore[index]

    assert store.read(two_counts) == (0, 0)
    assert store.read(lambda tx: tx.one(COUNT_OF, a="arn:snap")) == (1,)


# -- the API on PostgreSQL -------------------------------------------------------


@pytest.mark.postgres
def test_server_on_postgresql_serves_clusters(pg: PostgresServer) -> None:
    db = pg.create_database()
    server = ServerProcess(database_url=db).start()
    try:
        ecs = server.client("ecs")
        created = ecs.create_cluster(clusterName="on-pg", tags=[{"key": "db", "value": "pg"}])["cluster"]
        assert created["status"] == "ACTIVE"
        got = ecs.describe_clusters(clusters=["on-pg"], include=["TAGS"])["clusters"]
        assert [(c["clusterArn"], c["status"], c["tags"]) for c in got] == \
            [(created["clusterArn"], "ACTIVE", [{"key": "db", "value": "pg"}])]
        assert ecs.list_clusters()["clusterArns"] == [created["clusterArn"]]
        # A restart on the same database (and data directory: its root key) finds it again.
        server.stop()
        server.start()
        assert server.client("ecs").list_clusters()["clusterArns"] == [created["clusterArn"]]
    finally:
        server.cleanup()


def test_commits_leave_the_event_loop_while_the_disk_is_slow(tmp_path: Path) -> None:
    """Fast commits run on the loop; slow ones (a slow disk) go to the commit thread, and come back."""
    from dockyard.state import store as store_mod

    store = Store(f"sqlite:///{tmp_path / 'dockyard.db'}")
    store.migrate()
    # A limit well above what a real commit takes even with both cores busy (2 ms, the default,
    # is not, under a parallel test run): only the slowed commits are slow.
    store.inline_commit_max = 0.02
    where: list[str] = []
    slow = threading.Event()
    commit = store._commit_now

    def observed_commit(conn: Any) -> None:
        where.append(threading.current_thread().name)
        if slow.is_set():
            time.sleep(0.1)  # 5x the inline limit
        commit(conn)

    store._commit_now = observed_commit  # type: ignore[method-assign]

    async def writes(n: int) -> None:
        for i in range(n):
            await store.write(_insert, "arn:d", f"k{len(where)}-{i}")

    async def body() -> tuple[list[str], list[str], list[str]]:
        await writes(5)
        fast = list(where)
        slow.set()
        await writes(20)
        slow_tail = where[-10:]
        slow.clear()
        await writes(store_mod.INLINE_PROBE_EVERY * 3)
        return fast, slow_tail, where[-5:]

    try:
        fast, slow_tail, recovered = run_with_writer(store, body)
    finally:
        store.engine.dispose()
    loop_thread = threading.main_thread().name
    assert fast == [loop_thread] * 5
    assert all(name.startswith("store-commit") for name in slow_tail)
    # Probes found the disk fast again: commits are back on the loop.
    assert recovered == [loop_thread] * 5
    assert committed_count(store.url, "arn:d") == 5 + 20 + store_mod.INLINE_PROBE_EVERY * 3


def test_an_attempt_that_fails_undoes_only_its_own_writes_and_events(store: Store) -> None:
    def nested(tx: Tx, key: str) -> None:
        _insert(tx, "arn:n", key)
        raise ValueError("no")

    def write(tx: Tx) -> tuple[bool, bool]:
        _insert(tx, "arn:n", "outer")
        ok_bad, _ = tx.attempt(nested, "inner")
        ok_good, _ = tx.attempt(_insert, "arn:n", "kept")
        return ok_bad, ok_good

    events: list[tuple[str, str]] = []
    store.subscribe(events.extend)
    assert run_with_writer(store, lambda: store.write(write)) == (False, True)
    with store.transaction() as tx:
        assert [k for k, _ in tx.all(TAGS_OF, a="arn:n")] == ["kept", "outer"]
    assert events == [("tag", "outer"), ("tag", "kept")]


def test_the_wal_starts_over_under_a_steady_stream_of_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without RESTART checkpoints the WAL only grows while writes keep coming."""
    from dockyard.state import store as store_mod

    monkeypatch.setattr(store_mod, "CHECKPOINT_SECONDS", 0.02)
    monkeypatch.setattr(store_mod, "WAL_RESTART_FRAMES", 64)
    monkeypatch.setattr(store_mod, "WAL_SIZE_LIMIT", 128 * 1024)
    path = tmp_path / "dockyard.db"
    store = Store(f"sqlite:///{path}")
    store.migrate()
    wal = path.with_name("dockyard.db-wal")
    sizes: list[int] = []

    async def body() -> None:
        for i in range(150):  # 16 writers at a time, no pause: the checkpointer never catches up
            await asyncio.gather(*(store.write(_insert, "arn:w", f"k{i:04d}-{j:02d}-" + "x" * 1000)
                                   for j in range(16)))
            if i % 10 == 0:
                sizes.append(wal.stat().st_size)

    try:
        run_with_writer(store, body)
    finally:
        store.engine.dispose()
    # Never started over, the file only grows (to ~18 MB here); started over past 64 frames
    # it is cut back to the 128 KiB limit again and again.
    restarts = sum(1 for a, b in itertools.pairwise(sizes) if b < a)
    assert restarts >= 2, sizes
    assert committed_count(store.url, "arn:w") == 2400


def test_the_checkpointer_copies_the_last_commit_into_the_database_file(tmp_path: Path) -> None:
    """The checkpointer waits for a commit, then copies it from the WAL into the database file,
    with no later commit to wake it."""
    import sqlite3

    path = tmp_path / "dockyard.db"
    store = Store(f"sqlite:///{path}")
    store.migrate()

    def in_db_file() -> int:
        # immutable: the database file alone, without the WAL
        conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
        try:
            return int(conn.execute("SELECT count(*) FROM tags WHERE resource_arn = 'arn:c'").fetchone()[0])
        finally:
            conn.close()

    async def body() -> list[int]:
        seen = [in_db_file()]
        await asyncio.gather(*(store.write(_insert, "arn:c", f"k{j}") for j in range(5)))
        for _ in range(200):
            if in_db_file() == 5:
                break
            await asyncio.sleep(0.01)
        return seen + [in_db_file()]

    try:
        assert run_with_writer(store, body) == [0, 5]
    finally:
        store.engine.dispose()


def test_client_tokens_past_their_day_are_purged_oldest_first(store: Store) -> None:
    from dockyard.services.context import Ctx
    from dockyard.services.ecs import idempotency

    now = 1_800_000_000.0
    with store.transaction() as tx:
        for i, age in enumerate([90_000, 86_401, 86_399, 10]):
            ctx = Ctx("123456789012", "us-east-1", "arn:aws:iam::123456789012:root", "r", now - age, "AK")
            idempotency.remember(tx, ctx, "RunTask", idempotency.cluster_key("c", f"t{i}"), "h", b"{}")
    with store.transaction() as tx:
        assert idempotency.purge(tx, now - idempotency.TTL_SECONDS, limit=1) == 1
        assert idempotency.purge(tx, now - idempotency.TTL_SECONDS) == 1
        assert idempotency.purge(tx, now - idempotency.TTL_SECONDS) == 0
        ctx = Ctx("123456789012", "us-east-1", "arn:aws:iam::123456789012:root", "r", now, "AK")
        kept = [idempotency.seen(tx, ctx, "RunTask", idempotency.cluster_key("c", f"t{i}")) for i in range(4)]
    assert kept == [None, None, ("h", b"{}"), ("h", b"{}")]


def test_purge_of_deleted_revisions_runs_on_both_stores(store: Store) -> None:
    # The purge's statements (a partial index, literal status) on SQLite and PostgreSQL alike;
    # what it keeps and drops is tested end to end in test_task_expiry.py.
    from dockyard.services.context import Ctx
    from dockyard.services.ecs import ecs, taskdef_purge

    ctx = Ctx("123456789012", "us-east-1", "arn:aws:iam::123456789012:root", "rid", round(time.time(), 3))

    def call(op: str, **req: Any) -> Any:
        with store.transaction() as tx:
            return ecs.operations[op].fn(tx, ctx, req)

    call("CreateCluster", clusterName="c")
    for _ in range(3):
        call("RegisterTaskDefinition", family="f", containerDefinitions=[{"name": "a", "image": "x", "memory": 8}])
    for rev in (1, 2):
        call("DeregisterTaskDefinition", taskDefinition=f"f:{rev}")
    call("DeleteTaskDefinitions", taskDefinitions=["f:1", "f:2"])
    with store.transaction() as tx:
        assert taskdef_purge.purge(tx, "", limit=1) == (1, "arn:aws:ecs:us-east-1:123456789012:task-definition/f:1")
        assert taskdef_purge.purge(tx, "arn:aws:ecs:us-east-1:123456789012:task-definition/f:1", limit=1) == (
            1, "arn:aws:ecs:us-east-1:123456789012:task-definition/f:2")
        assert taskdef_purge.purge(tx, "") == (0, None)
    assert call("ListTaskDefinitions", familyPrefix="f")["taskDefinitionArns"] == [
        "arn:aws:ecs:us-east-1:123456789012:task-definition/f:3"]
    assert call("ListTaskDefinitionFamilies")["families"] == ["f"]
