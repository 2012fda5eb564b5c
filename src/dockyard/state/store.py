"""The store: SQLite (default) or PostgreSQL behind one small interface.

Statements are SQLAlchemy Core constructs, compiled once per dialect and run
on a DBAPI connection (see ``Prepared``): the measured cost of a primary-key
read through a Core ``Connection`` is ~18 µs against ~5 µs for the compiled
string on the driver, and reads are the API's hot path.

Writes go through one writer thread that commits in groups: every write
function queued while the previous commit was flushing runs in the next
transaction, each inside its own SAVEPOINT, so an error in one rolls back only
that one, and a single fsync makes the whole group durable before any of them
is answered. An accepted write is therefore on disk before its 2xx.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import operator
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import create_engine
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

log = logging.getLogger(__name__)
T = TypeVar("T")
# A write's outcome, given on the event loop: (True, its value) or (False, its exception).
Done = Callable[[bool, Any], None]


def _by_operation(batch: list[Any]) -> list[Any]:
    """A group's writes with the concurrent ones (``Store.submit``) side by side by operation,
    after the others, which keep their order. The same code run back to back stays in the CPU's
    caches: A/B on bench/api_mix.py's writes (RegisterTaskDefinition, CreateService and RunTask
    interleaved), CPU per write 521 -> 474 and 525 -> 455 µs."""
    rank: dict[Any, int] = {}
    return sorted(batch, key=lambda item: rank.setdefault(item[0], len(rank) + 1) if item[3] else 0)


def _settle(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if fut.done():  # the caller gave up (cancelled): the write happened all the same
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)

_GROUP_MAX = 512
# A group's COMMIT (the WAL write and its fsync) runs on the event loop when nothing else wants
# the loop: handing it to a thread costs a wake-up and two GIL hand-offs per group, 10-20% of
# durable write throughput here (bench/api_mix.py, writes only). But while it runs the loop
# serves nothing, which cost 15% on the mixed workload, so a commit goes to the commit thread
# when any read ran since the previous group. A slow disk would hold every request behind its
# fsync, so while inline commits average more than INLINE_COMMIT_MAX_SECONDS they go to the
# thread too, and every INLINE_PROBE_EVERY-th group is committed inline to see whether the disk
# got faster.
INLINE_COMMIT_MAX_SECONDS = 0.002
INLINE_PROBE_EVERY = 64

# Called when a group commit fails and everything in it is rolled back: in-process caches keyed
# by row versions (which a rollback can hand out again for different content) clear themselves.
ROLLBACK_HOOKS: list[Callable[[], None]] = []
# Called on the event loop with a group's events once it is committed, before the subscribers:
# in-process caches that may only learn what a write did once it is durable.
COMMIT_HOOKS: list[Callable[[list[tuple[str, str]]], None]] = []
# The checkpointer copies WAL frames into the database file this long after a commit. Every
# pass ends in an fsync of the database file, and a group's WAL fsync waits behind it on the
# disk: passes every 0.5 s flushed ~8 MB each and the commits beside them took 7-10 ms, the
# writes' p99 (bench/api_mix.py, writes: p99 18-20 ms at 0.5 s, 10-12 ms at 0.1 s; the mix
# 16-17 ms at 0.5 s, 8-9 ms at 0.03 s). An idle store is not woken: a pass waits for a commit.
CHECKPOINT_SECONDS = 0.03
# SQLite starts the WAL over only when a writer begins while every frame is checkpointed; under
# a steady stream of group commits that moment never comes, and the WAL grew past 200 MB in a
# minute of bench/api_mix.py writes, slowing every commit and every page lookup (writes fell
# from ~1,700 to ~1,150/s). Past this many frames (4 KiB pages) the checkpointer asks the writer
# for a RESTART checkpoint, which it runs between two groups on its own connection (in the
# commit thread; reads go on): it copies what PASSIVE left and the next group starts the log
# over. Run by the writer, it never waits on the write lock, where SQLite's busy handler sleeps
# in steps of 1-100 ms. The file is then cut back to WAL_SIZE_LIMIT.
WAL_RESTART_FRAMES = 4096
BUSY_TIMEOUT_MS = 30000
WAL_SIZE_LIMIT = 32 * 1024 * 1024


class Prepared:
    """A Core statement compiled once per dialect (and per set of insert keys)."""

    __slots__ = ("_cache", "stmt")

    def __init__(self, stmt: ClauseElement) -> None:
        self.stmt = stmt
        self._cache: dict[tuple[str, tuple[str, ...]], _Compiled] = {}

    def compiled(self, dialect: Dialect, keys: tuple[str, ...]) -> _Compiled:
        ck = (dialect.name, keys)
        hit = self._cache.get(ck)
        if hit is None:
            c = cast(SQLCompiler, self.stmt.compile(dialect=dialect, column_keys=list(keys) if keys else None))
            # Literals in the statement (``status == "ACTIVE"``, ``limit(1)``) become binds
            # with values of their own; callers pass only the named bindparams.
            defaults = {name: b.value for name, b in c.binds.items()
                        if not b.required and b.value is not None and b.callable is None}
            order = tuple(c.positiontup) if dialect.positional and c.positiontup is not None else None
            hit = self._cache[ck] = _Compiled(c.string, order, defaults)
        return hit


def _positional(order: tuple[str, ...]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """The parameters' values in ``order`` (itemgetter: a generator over the names cost ~1 µs
    more per statement, and every request runs several)."""
    if len(order) > 1:
        return operator.itemgetter(*order)
    if order:
        name = order[0]
        return lambda given: (given[name],)
    return lambda given: ()


class _Compiled:
    __slots__ = ("_get", "defaults", "order", "sql")

    def __init__(self, sql: str, order: tuple[str, ...] | None, defaults: dict[str, Any]) -> None:
        self.sql = sql
        self.order = order
        self.defaults = defaults
        self._get = _positional(order) if order is not None else None

    def params(self, given: dict[str, Any]) -> Any:
        if self.defaults:
            given = {**self.defaults, **given}
        if self._get is not None:
            return self._get(given)
        return given


def prepare(stmt: ClauseElement) -> Prepared:
    return Prepared(stmt)


class Tx:
    """Runs statements on one connection inside the caller's transaction."""

    __slots__ = ("_conn", "_dialect", "events")

    def __init__(self, conn: Any, dialect: Dialect) -> None:
        self._conn = conn
        self._dialect = dialect
        # (topic, key) pairs published to subscribers after the commit.
        self.events: list[tuple[str, str]] = []

    def _exec(self, stmt: Prepared | ClauseElement, params: dict[str, Any], insert_keys: bool) -> Any:
        p = stmt if isinstance(stmt, Prepared) else Prepared(stmt)
        keys = tuple(params) if insert_keys else ()
        c = p.compiled(self._dialect, keys)
        cur = self._conn.cursor()
        cur.execute(c.sql, c.params(params))
        return cur

    # Both drivers return rows as plain tuples (sqlite3 and psycopg without a row factory): no copy.
    def one(self, stmt: Prepared | ClauseElement, **params: Any) -> tuple[Any, ...] | None:
        return self._exec(stmt, params, False).fetchone()  # type: ignore[no-any-return]

    def all(self, stmt: Prepared | ClauseElement, **params: Any) -> list[tuple[Any, ...]]:
        return self._exec(stmt, params, False).fetchall()  # type: ignore[no-any-return]

    def run(self, stmt: Prepared | ClauseElement, **params: Any) -> int:
        """Run an UPDATE/DELETE; returns the number of rows it touched."""
        return int(self._exec(stmt, params, False).rowcount)

    def insert(self, stmt: Prepared | ClauseElement, **values: Any) -> None:
        """Run an INSERT whose values are exactly ``values`` (column name -> value)."""
        self._exec(stmt, values, True)

    def notify(self, topic: str, key: str) -> None:
        self.events.append((topic, key))

    def attempt(self, fn: Callable[..., T], *args: Any) -> tuple[bool, T | Exception]:
        """``fn(self, *args)`` in a nested savepoint: (True, its value), or (False, the exception)
        with its writes and its events undone and the enclosing transaction left as it was."""
        mark = len(self.events)
        self._conn.execute("SAVEPOINT nested")
        try:
            value = fn(self, *args)
        except Exception as exc:  # noqa: BLE001  (the caller decides what a failure means)
            self._conn.execute("ROLLBACK TO SAVEPOINT nested")
            self._conn.execute("RELEASE SAVEPOINT nested")
            del self.events[mark:]
            return False, exc
        self._conn.execute("RELEASE SAVEPOINT nested")
        return True, value


def _sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):])
    return None


class Store:
    """Owns the engine, the writer thread and the read connection."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        path = _sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(url, future=True)
        self.dialect = self.engine.dialect
        self._read_conn: Any = None
        self._read_lock = threading.Lock()
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._committer: ThreadPoolExecutor | None = None
        self._wconn: Any = None
        self._pending: list[Any] = []
        self._flushing = False
        self._checkpointer: threading.Thread | None = None
        self._stopping = threading.Event()
        self._committed = threading.Event()  # a group committed since the checkpointer's last pass
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribers: list[Callable[[list[tuple[str, str]]], None]] = []
        self._commit_avg = 0.0  # moving average of inline COMMIT seconds
        self.inline_commit_max = INLINE_COMMIT_MAX_SECONDS  # below 0: every commit in the thread
        self._groups = 0
        self._restart_wanted = False  # set by the checkpointer: the WAL should start over
        self.reads = 0  # reads served (see _commit_group)
        self._reads_seen = 0

    # -- connections -------------------------------------------------------
    def connect(self) -> Any:
        """A new DBAPI connection in autocommit mode; transactions are explicit."""
        if self.is_sqlite:
            path = _sqlite_path(self.url)
            conn = sqlite3.connect(str(path) if path else ":memory:", check_same_thread=False,
                                   isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: the WAL is fsync'd at every commit, so a 2xx survives kill -9 and power loss.
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            # SQLite's default page cache is 2 MB per connection: past that every read of a row
            # is a copy from the OS page cache through a syscall. 64 MB keeps the working set,
            # and reads of the main file go through a mapping (writes still go through the WAL).
            conn.execute("PRAGMA cache_size=-65536")
            conn.execute("PRAGMA mmap_size=268435456")
            conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            # Every write runs in a savepoint, whose journal of the pages it changes is a temporary
            # file by default: in memory, statements in a write cost ~35% less (CreateService's).
            conn.execute("PRAGMA temp_store=MEMORY")
            return conn
        raw = self.engine.raw_connection()
        dbapi = raw.driver_connection
        assert dbapi is not None
        dbapi.autocommit = True
        raw.detach()  # owned by us for the life of the process, not the pool
        return dbapi

    def _begin(self, conn: Any, write: bool) -> None:
        if self.is_sqlite:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        elif write:
            conn.execute("BEGIN")
        else:
            # READ COMMITTED would let a commit landing between two statements show in the second.
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def migrate(self) -> None:
        from dockyard.state.migrate import upgrade
        upgrade(self)

    # -- reads ---------------------------------------------------------------
    def read(self, fn: Callable[..., T], *args: Any, snapshot: bool = True) -> T:
        """Run ``fn(tx, *args)`` in one read snapshot on the calling thread.

        ``snapshot=False`` is for functions that run a single statement, which is atomic
        on its own (SQLite): it saves the BEGIN/COMMIT round trip on the hottest reads.
        """
        self.reads += 1
        with self._read_lock:
            if self._read_conn is None:
                self._read_conn = self.connect()
            conn = self._read_conn
            if not snapshot and self.is_sqlite:
                return fn(Tx(conn, self.dialect), *args)
            self._begin(conn, False)
            try:
                return fn(Tx(conn, self.dialect), *args)
            finally:
                conn.execute("COMMIT")

    # -- writes --------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """A synchronous write transaction on a connection of its own (CLI, tests, start-up)."""
        conn = self.connect()
        try:
            self._begin(conn, True)
            tx = Tx(conn, self.dialect)
            try:
                yield tx
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        if self.is_sqlite:
            # SQLite: write functions run on the event loop inside the open group transaction
            # and only COMMIT (the fsync, which releases the GIL) goes to a thread. Running them
            # in a writer thread instead made the two threads trade the GIL on every request.
            self._wconn = self.connect()
            # A checkpoint inside a commit (SQLite's default every 1000 WAL pages) stalls that
            # group for tens of ms; a background thread checkpoints instead, beside the writes.
            self._wconn.execute("PRAGMA wal_autocheckpoint=0")
            self._committer = ThreadPoolExecutor(1, thread_name_prefix="store-commit")
            self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="store-checkpoint",
                                                  daemon=True)
            self._checkpointer.start()
        else:
            # Over a network each statement is a round trip: keep them off the event loop.
            self._writer = threading.Thread(target=self._write_loop, name="store-writer", daemon=True)
            self._writer.start()

    def stop(self) -> None:
        if self._writer is not None:
            self._q.put(None)
            self._writer.join(timeout=10)
            self._writer = None
        if self._committer is not None:
            self._committer.shutdown(wait=True)
            self._committer = None
            self._stopping.set()
            self._committed.set()
            if self._checkpointer is not None:
                self._checkpointer.join(timeout=10)
            self._wconn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._wconn.close()

    def _checkpoint_loop(self) -> None:
        conn = self.connect()
        while self._committed.wait() and not self._stopping.wait(CHECKPOINT_SECONDS):
            self._committed.clear()
            try:
                # PASSIVE copies what it can without waiting for readers or the writer.
                _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if frames >= WAL_RESTART_FRAMES:
                    self._restart_wanted = True
            except sqlite3.Error:
                log.warning("WAL checkpoint failed", exc_info=True)
        conn.close()

    def subscribe(self, fn: Callable[[list[tuple[str, str]]], None]) -> None:
        """Call ``fn(events)`` on the event loop after each commit that produced events."""
        self._subscribers.append(fn)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(tx, *args)`` in the next group commit; returns once it is durable."""
        assert self._loop is not None, "store.start() was not called"
        fut: asyncio.Future[T] = self._loop.create_future()
        self.submit(fn, args, functools.partial(_settle, fut))
        return await fut

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...], done: Done, concurrent: bool = False) -> None:
        """``write`` by callback: ``done(True, value)`` or ``done(False, exception)`` is called on
        the event loop once the group holding ``fn(tx, *args)`` has committed (or failed). The
        API's writes answer this way: a coroutine and a Task per request cost more than the
        callback (see docs/design.md).

        ``concurrent``: no other write waits on this one's order (an API call: a connection
        sends its next request only once this one is answered, ``api/http1.py``), so the group
        may run it beside the other writes of its operation (``_by_operation``)."""
        assert self._loop is not None, "store.start() was not called"
        if self._committer is not None:
            self._pending.append((fn, args, done, concurrent))
            if not self._flushing:
                self._flushing = True
                # Writes that arrive in the same loop turn join this group.
                self._loop.call_soon(self._start_flush)
        else:
            self._q.put((fn, args, done, concurrent))

    def _start_flush(self) -> None:
        assert self._loop is not None
        self._loop.create_task(self._flush())

    def _commit_now(self, conn: Any) -> None:
        conn.execute("COMMIT")

    async def _commit_group(self, conn: Any) -> None:
        self._groups += 1
        quiet = self.reads == self._reads_seen
        self._reads_seen = self.reads
        inline = self._commit_avg <= self.inline_commit_max
        # A probe is only for a disk that was slow: a fast one needs no inline commit while reads wait.
        probe = not inline and self.inline_commit_max >= 0 and self._groups % INLINE_PROBE_EVERY == 0
        if (inline and quiet) or probe:
            t0 = time.perf_counter()
            self._commit_now(conn)
            # A probe weighs more: a few fast ones bring the commits back to the loop.
            self._commit_avg += (time.perf_counter() - t0 - self._commit_avg) / (8 if inline else 2)
        else:
            assert self._loop is not None
            await self._loop.run_in_executor(self._committer, self._commit_now, conn)
        self._committed.set()

    def _run_group(self, conn: Any, batch: list[Any]) -> tuple[list[Any], list[tuple[str, str]]]:
        """BEGIN and run each write in a SAVEPOINT of its own; the transaction is left open."""
        results: list[tuple[Done, bool, Any]] = []
        events: list[tuple[str, str]] = []
        self._begin(conn, True)
        for fn, args, done, _ in batch:
            conn.execute("SAVEPOINT w")
            tx = Tx(conn, self.dialect)
            try:
                value = fn(tx, *args)
            except BaseException as exc:  # noqa: BLE001  (the error is the caller's answer)
                conn.execute("ROLLBACK TO SAVEPOINT w")
                conn.execute("RELEASE SAVEPOINT w")
                results.append((done, False, exc))
                continue
            conn.execute("RELEASE SAVEPOINT w")
            results.append((done, True, value))
            events.extend(tx.events)
        return results, events

    @staticmethod
    def _failed(conn: Any, batch: list[Any], exc: Exception) -> list[Any]:
        # The group did not commit: nothing in it is durable, and every caller hears so.
        log.error("group commit failed: %s", exc)
        for hook in ROLLBACK_HOOKS:
            hook()
        try:
            conn.execute("ROLLBACK")
        except Exception:
            log.debug("rollback after a failed group", exc_info=True)
        return [(done, False, exc) for _, _, done, _ in batch]

    async def _flush(self) -> None:
        loop = self._loop
        assert loop is not None
        conn = self._wconn
        try:
            while self._pending:
                batch = self._pending[:_GROUP_MAX]
                del self._pending[:_GROUP_MAX]
                if len(batch) > 2:
                    batch = _by_operation(batch)
                events: list[tuple[str, str]] = []
                try:
                    results, events = self._run_group(conn, batch)
                    await self._commit_group(conn)
                except Exception as exc:  # noqa: BLE001  (every caller of the group gets it)
                    results, events = self._failed(conn, batch, exc), []
                self._deliver(results, events)
                if self._restart_wanted:
                    self._restart_wanted = False
                    await loop.run_in_executor(self._committer, self._restart_wal, conn)
        finally:
            self._flushing = False

    @staticmethod
    def _restart_wal(conn: Any) -> None:
        # Without waiting: under the connection's busy timeout a RESTART that met the checkpointer's
        # PASSIVE pass, or a reader still on the old log, sleeps in SQLite's 1-100 ms steps while
        # every write waits behind it (one mix round's p99 reached 1.4 s). Busy now just means
        # the log starts over later: the checkpointer asks again after its next pass.
        conn.execute("PRAGMA busy_timeout=0")
        try:
            conn.execute("PRAGMA wal_checkpoint(RESTART)")
        except sqlite3.Error:
            log.warning("WAL restart checkpoint failed", exc_info=True)
        finally:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    def _write_loop(self) -> None:
        conn = self.connect()
        loop = self._loop
        assert loop is not None
        while True:
            item = self._q.get()
            if item is None:
                break
            batch = [item]
            stop = False
            while len(batch) < _GROUP_MAX:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            try:
                results, events = self._run_group(conn, batch)
                self._commit_now(conn)
            except Exception as exc:  # noqa: BLE001  (every caller of the group gets it)
                results, events = self._failed(conn, batch, exc), []
            loop.call_soon_threadsafe(self._deliver, results, events)
            if stop:
                break
        conn.close()

    def _deliver(self, results: list[tuple[Done, bool, Any]], events: list[tuple[str, str]]) -> None:
        for done, ok, value in results:
            try:
                done(ok, value)
            except Exception:
                log.exception("store write callback failed")
        if events:
            for hook in COMMIT_HOOKS:
                hook(events)
            for sub in self._subscribers:
                try:
                    sub(events)
                except Exception:
                    log.exception("store subscriber failed")
