"""The server end of the agent channel: one websocket per connected container instance.

The wire is ``agent/protocol.py``; the store side is ``services/ecs/agent_sync.py``.

- **Upgrade.** ``App`` hands every RSGI websocket here. The presigned SigV4 query is
  verified (service ``ecs``, method GET, empty body) and the instance must belong to
  the key's account and region and not be INACTIVE; anything else is refused with
  HTTP 403 before the upgrade. (Before ``accept()`` the server turns ``close(status)``
  into an HTTP response, so only HTTP status codes may be given there.)
- **Sessions.** ``instance ARN -> _Session``. A second connection replaces the first,
  which gets a ``close`` frame with 4000 (the websocket close itself
  carries 1000). The session's writes of ``agentConnected`` are queued in order, so
  the last one is the session that is current.
- **Reports in.** A ``state`` frame is one ``store.write`` (it joins the next group
  commit) and is answered with ``ack`` once durable. Frames are read without waiting
  for earlier writes: writes enter the store's queue in arrival order.
- **Desired state out, no polling.** ``on_events`` is a ``store.subscribe`` callback:
  after each commit it reads the committed tasks named by ``task-desired`` events (a
  task created, or its desiredStatus changed; plain ``task`` events, such as an agent's
  RUNNING report, need no push and cost no read) in one read snapshot and, for each on
  an instance with a synced session whose desiredStatus differs from what that session
  was last sent, adds its payload to that session's one ``tasks`` frame for the commit.
  A task the agent itself reported stopping (or stopped) is recorded as sent STOPPED
  when its frame arrives, so the echo of its own report is not pushed back.
- **Full sync.** ``hello`` applies the agent's states, then the session reads every
  task on the instance that is not STOPPED and sends them with ``full: true``;
  pushes for the session start from that read.
- **Liveness.** Any frame counts. A timer per session (re-armed lazily, no polling
  of other sessions) closes a session silent for ``3 * heartbeat``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any
from urllib.parse import unquote

import orjson

from dockyard.agent import protocol
from dockyard.api.errors import AwsError
from dockyard.api.sigv4 import SigV4Verifier
from dockyard.services.ecs import agent_sync, tasks
from dockyard.services.ecs import container_instances as ci
from dockyard.state import arns
from dockyard.state.store import Store, Tx

log = logging.getLogger("dockyard.agents")

_WS_CLOSE = 0  # api/http1.WsMessage.kind of a close
_HEARTBEAT = orjson.dumps({"type": "heartbeat"}).decode()
# Acked frames are forgotten; this many unacked ones per session are kept for the log.
_MAX_UNACKED = 1024


def _query_param(query: str, name: str) -> str | None:
    prefix = name + "="
    for part in query.split("&"):
        if part.startswith(prefix):
            return unquote(part[len(prefix):])
    return None


class _Session:
    __slots__ = ("_out", "_sending", "account_id", "closing", "finished", "hub", "instance_arn", "last_seen",
                 "proto", "sent", "seq", "synced", "timer", "transport", "unacked", "writes")

    def __init__(self, hub: AgentHub, instance_arn: str, account_id: str, proto: Any, transport: Any) -> None:
        self.hub = hub
        self.instance_arn = instance_arn
        self.account_id = account_id
        self.proto = proto
        self.transport = transport
        self.sent: dict[str, str] = {}  # task ARN -> desiredStatus this agent was last sent
        self.synced = False  # the answer to hello was built; pushes may go out
        self.seq = 0
        self.unacked: dict[int, int] = {}  # our tasks frames not yet acked: seq -> task count
        self.last_seen = hub.loop.time()
        self.timer: asyncio.TimerHandle | None = None
        self.finished = False
        self.closing = False
        self.writes: set[asyncio.Task[Any]] = set()
        self._out: deque[str | None] = deque()  # None: close the socket once what is before it is sent
        self._sending = False

    # -- sending: one writer per session keeps frames in order ----------------------------------
    def send(self, text: str) -> None:
        if self.closing:
            return
        self._out.append(text)
        if not self._sending:
            self._sending = True
            self.hub.loop.create_task(self._drain())

    def send_frame(self, frame: dict[str, Any]) -> None:
        self.send(orjson.dumps(frame).decode())

    def push(self, payloads: list[protocol.TaskPayload], full: bool) -> None:
        self.seq += 1
        if len(self.unacked) >= _MAX_UNACKED:
            self.unacked.pop(next(iter(self.unacked)))
        self.unacked[self.seq] = len(payloads)
        self.send_frame({"type": "tasks", "seq": self.seq, "full": full, "tasks": payloads})

    def close_with(self, code: int, reason: str) -> None:
        """Send a ``close`` frame, then close the socket (after everything queued before it)."""
        if self.closing:
            return
        self.send_frame({"type": "close", "code": code, "reason": reason})
        self.closing = True
        self._out.append(None)
        if not self._sending:
            self._sending = True
            self.hub.loop.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._out:
                text = self._out.popleft()
                if text is None:
                    self._close_socket()
                    return
                try:
                    await self.transport.send_str(text)
                except Exception as exc:  # noqa: BLE001  (the peer went away; the reader sees it too)
                    log.debug("send to %s failed: %s", self.instance_arn, exc)
                    self._out.clear()
                    self.hub.finish(self, "send failed")
                    self._close_socket()
                    return
        finally:
            self._sending = False

    def _close_socket(self) -> None:
        try:
            self.proto.close(1000)
        except Exception:
            log.debug("close of %s failed", self.instance_arn, exc_info=True)
        # The reader is left to end by itself: closing the connection ends its pending receive().

    # -- liveness -------------------------------------------------------------------------------
    def arm(self) -> None:
        self.timer = self.hub.loop.call_later(self.hub.silence, self._check)

    def _check(self) -> None:
        self.timer = None
        if self.finished:
            return
        idle = self.hub.loop.time() - self.last_seen
        if idle >= self.hub.silence:
            log.warning("agent of %s silent for %.1f s: disconnected", self.instance_arn, idle)
            self.hub.finish(self, "heartbeat silence")
            self.close_with(protocol.CLOSE_GOING_AWAY, "no heartbeat")
            return
        self.timer = self.hub.loop.call_later(self.hub.silence - idle, self._check)


class AgentHub:
    """Every live agent session of this server, and the push path from the store to them."""

    def __init__(self, store: Store, verifier: SigV4Verifier, heartbeat: float | None = None) -> None:
        self.store = store
        self.verifier = verifier
        self.heartbeat = heartbeat if heartbeat is not None else protocol.heartbeat_seconds()
        self.silence = 3 * self.heartbeat
        self.sessions: dict[str, _Session] = {}
        # Task ARN -> latest reported usage {"cpu": units, "memory": MiB, "at": epoch s} (heartbeat stats).
        self.usage: dict[str, dict[str, float]] = {}
        self.stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    # -- start-up / shutdown --------------------------------------------------------------------
    @staticmethod
    def reset(store: Store) -> int:
        """Server start-up: no agent is connected to a fresh process."""
        with store.transaction() as tx:
            return agent_sync.mark_all_disconnected(tx, time.time())

    def attach(self, store: Store) -> None:
        store.subscribe(self.on_events)

    def shutdown(self) -> None:
        """The server is stopping: tell every agent, write nothing more (start-up resets the flags)."""
        self.stopping = True
        for s in list(self.sessions.values()):
            self.finish(s, "server shutdown")
            s.close_with(protocol.CLOSE_GOING_AWAY, "server shutting down")

    # -- the RSGI websocket handler -------------------------------------------------------------
    async def handle(self, scope: Any, proto: Any) -> None:
        if self.stopping or scope.path != protocol.PATH:
            proto.close(404 if scope.path != protocol.PATH else 503)
            return
        try:
            instance_arn, account_id = self._authorise(scope)
        except _Refused as e:
            log.info("agent connection refused: %s", e)
            proto.close(403)
            return
        except Exception:
            log.exception("agent connection failed")
            proto.close(500)
            return
        try:
            transport = await proto.accept()
        except Exception as exc:  # noqa: BLE001  (the client went away during the upgrade)
            log.info("agent websocket upgrade failed for %s: %s", instance_arn, exc)
            return
        session = _Session(self, instance_arn, account_id, proto, transport)
        old = self.sessions.get(instance_arn)
        if old is not None:
            log.info("agent of %s reconnected: the older connection is replaced", instance_arn)
            self.finish(old, "replaced", write=False)
            old.close_with(protocol.CLOSE_REPLACED, "replaced by a newer connection")
        self.sessions[instance_arn] = session
        self._write_connected(session, True)
        session.arm()
        log.info("agent connected: %s", instance_arn)
        try:
            await self._read(session)
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # noqa: BLE001  (the connection dropped)
            log.debug("agent session %s ended: %s", instance_arn, exc)
        finally:
            if not session.finished:
                self.finish(session, "closed")
            try:
                proto.close(1000)
            except Exception:  # already closed
                log.debug("close of %s failed", instance_arn, exc_info=True)

    def _authorise(self, scope: Any) -> tuple[str, str]:
        query = scope.query_string
        try:
            ident = self.verifier.verify("GET", scope.path, query, scope.headers, b"", "ecs")
        except AwsError as e:
            raise _Refused(f"{e.code}: {e.message}") from None
        instance_arn = _query_param(query, "containerInstance")
        if not instance_arn:
            raise _Refused("no containerInstance in the query")
        a = arns.parse(instance_arn)
        if a is None or a.kind != "container-instance":
            raise _Refused(f"not a container instance ARN: {instance_arn}")
        if a.account_id != ident.account_id or a.region != ident.region:
            raise _Refused(f"{instance_arn} is not in the account and region of key {ident.access_key_id}")
        row = self.store.read(ci.get, instance_arn, snapshot=False)
        if row is None or row.status == "INACTIVE":
            raise _Refused(f"{instance_arn} is {'INACTIVE' if row else 'not registered'}")
        return instance_arn, ident.account_id

    async def _read(self, session: _Session) -> None:
        transport = session.transport
        loop = self.loop
        while not session.finished:
            msg = await transport.receive()
            if msg.kind == _WS_CLOSE:
                return
            session.last_seen = loop.time()
            try:
                frame = orjson.loads(msg.data)
                kind = frame.get("type")
            except (orjson.JSONDecodeError, AttributeError):
                log.warning("agent of %s sent a frame that is not a JSON object", session.instance_arn)
                continue
            if kind == "state":
                self._on_state(session, frame)
            elif kind == "heartbeat":
                session.send(_HEARTBEAT)
                self._on_stats(session, frame.get("stats"))
            elif kind == "ack":
                if session.unacked.pop(frame.get("seq"), None) is None:
                    log.debug("agent of %s acked unknown seq %r", session.instance_arn, frame.get("seq"))
            elif kind == "hello":
                await self._on_hello(session, frame)
            else:
                log.warning("agent of %s sent an unknown frame type %r", session.instance_arn, kind)

    # -- frames in ------------------------------------------------------------------------------
    def _on_stats(self, session: _Session, stats: Any) -> None:
        """Keep each task's latest usage (CPU units, memory MiB) for the metrics and scaling to come."""
        if not isinstance(stats, dict):
            return
        now = time.time()
        for arn, u in stats.items():
            if isinstance(arn, str) and isinstance(u, dict) and arn in session.sent:
                self.usage[arn] = {k: float(u[k]) for k in ("cpu", "memory")
                                   if isinstance(u.get(k), int | float)} | {"at": now}


    @staticmethod
    def _states(session: _Session, frame: dict[str, Any]) -> list[Any]:
        states = frame.get("tasks")
        if not isinstance(states, list):
            return []
        for st in states:
            # The agent stops these itself: what it says is what it knows, no need to push it back.
            if isinstance(st, dict) and (st.get("desiredStatus") == "STOPPED" or st.get("lastStatus") == "STOPPED"):
                arn = st.get("taskArn")
                if isinstance(arn, str) and arn in session.sent:
                    session.sent[arn] = "STOPPED"
        return states

    def _on_state(self, session: _Session, frame: dict[str, Any]) -> None:
        states = self._states(session, frame)
        t = self.loop.create_task(self._apply(session, frame.get("seq"), states))
        session.writes.add(t)
        t.add_done_callback(session.writes.discard)

    async def _record(self, session: _Session, states: list[Any], what: str) -> bool:
        """Commit an agent's reported states; on failure close the session (False).

        Unacknowledged, the states stay with the agent, which resends them in its next hello.
        """
        if not states:
            return True
        try:
            await self.store.write(agent_sync.apply_reports, session.instance_arn, states, time.time())
        except Exception:
            log.exception("applying %s of %s failed; closing the session", what, session.instance_arn)
            self.finish(session, "write failed")
            session.close_with(protocol.CLOSE_GOING_AWAY, "could not record the state")
            return False
        return True

    async def _apply(self, session: _Session, seq: Any, states: list[Any]) -> None:
        if await self._record(session, states, "reports") and not session.finished:
            session.send_frame({"type": "ack", "seq": seq})

    async def _on_hello(self, session: _Session, frame: dict[str, Any]) -> None:
        # The connection (and any report before this hello) is committed before the agent hears
        # anything: a client that has seen the agent's first frame sees agentConnected true. A hello
        # without tasks writes nothing itself, so the answer could otherwise overtake that commit.
        if session.writes:
            await asyncio.wait(list(session.writes))
        if not await self._record(session, self._states(session, frame), "the hello") or session.finished:
            return
        # Synchronously from this read on: later commits reach on_events, which compares with it.
        payloads = self.store.read(agent_sync.desired_for_instance, session.instance_arn)
        session.sent = {p["taskArn"]: p["desiredStatus"] for p in payloads}
        session.synced = True
        session.push(payloads, True)

    # -- sessions end ---------------------------------------------------------------------------
    def finish(self, session: _Session, why: str, write: bool = True) -> None:
        """The session is over (idempotent): forget it, and record the disconnect if it was current."""
        if session.finished:
            return
        session.finished = True
        if session.timer is not None:
            session.timer.cancel()
            session.timer = None
        if self.sessions.get(session.instance_arn) is session:
            del self.sessions[session.instance_arn]
            if write and not self.stopping:
                self._write_connected(session, False)
        if session.unacked:
            log.info("agent of %s disconnected (%s) with %d unacknowledged tasks frames; the next hello "
                     "resyncs", session.instance_arn, why, len(session.unacked))
        else:
            log.info("agent disconnected: %s (%s)", session.instance_arn, why)

    def _write_connected(self, session: _Session, connected: bool) -> None:
        async def write() -> None:
            try:
                await self.store.write(agent_sync.connect, session.instance_arn, connected, time.time())
            except Exception:
                log.exception("recording agentConnected=%s for %s failed", connected, session.instance_arn)

        # store.write queues synchronously when the task starts; tasks start in creation order.
        t = self.loop.create_task(write())
        session.writes.add(t)
        t.add_done_callback(session.writes.discard)

    # -- desired state out ----------------------------------------------------------------------
    def on_events(self, events: list[tuple[str, str]]) -> None:
        """store.subscribe callback (on the loop, after a commit): push what changed."""
        if not self.sessions:
            return
        task_arns: dict[str, None] = {}
        instances: list[str] = []
        for topic, key in events:
            if topic == "task-desired":
                # New, or desiredStatus changed: the only task changes an agent has to hear of.
                task_arns[key] = None
            elif topic == "task-stopped":
                # Final; a reconnect's full sync no longer lists it either.
                for s in self.sessions.values():
                    s.sent.pop(key, None)
                self.usage.pop(key, None)
            elif topic == "container-instance" and key in self.sessions:
                instances.append(key)
        if task_arns:
            for session, payloads in self.store.read(self._collect, task_arns).items():
                session.push(payloads, False)
        if instances:
            for row in self.store.read(self._instances, instances):
                gone = self.sessions.get(row.arn) if row.status == "INACTIVE" else None
                if gone is not None:
                    self.finish(gone, "deregistered", write=False)
                    gone.close_with(protocol.CLOSE_POLICY, "the container instance was deregistered")

    def _collect(self, tx: Tx, task_arns: dict[str, None]) -> dict[_Session, list[protocol.TaskPayload]]:
        out: dict[_Session, list[protocol.TaskPayload]] = {}
        sessions = self.sessions
        for arn in task_arns:
            row = tasks.get(tx, arn)
            if row is None or row.instance_arn is None:
                continue
            session = sessions.get(row.instance_arn)
            if session is None or not session.synced:
                continue
            if row.last == "STOPPED":
                continue  # stopped in the same commit (forced deregistration): nothing to send
            if session.sent.get(arn) == row.desired:
                continue
            session.sent[arn] = row.desired
            out.setdefault(session, []).append(agent_sync.payload(tx, row))
        return out

    @staticmethod
    def _instances(tx: Tx, arns_: list[str]) -> list[ci.InstanceRow]:
        rows = [ci.get(tx, a) for a in arns_]
        return [r for r in rows if r is not None]


class _Refused(Exception):
    pass
