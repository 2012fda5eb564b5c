"""The agent end of the agent channel (the wire is ``agent/protocol.py``).

One ``AgentSession`` per container instance. It keeps one websocket to the server
open, reconnecting with exponential backoff and jitter, and moves:

- desired state down: ``tasks`` frames go to ``engine.apply(payloads, full)`` and
  are acked;
- task states up: the engine's ``report(state)`` callback coalesces states per task
  ARN and a flush scheduled with ``call_soon`` sends them as one ``state`` frame on
  the next loop turn (prompt, not a timed batch). States stay in ``_unacked`` until
  the server acks the frame that carried them (then ``engine.acknowledged`` is
  called); after a reconnect the ``hello`` carries the engine's current states plus
  anything still unacknowledged, and the server's full ``tasks`` answer acks those.

Nothing here is global: many sessions (the benchmark runs 200) share one loop.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections import deque
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp
import orjson
import yarl
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

import dockyard
from dockyard.agent import protocol
from dockyard.agent.protocol import TaskState

if TYPE_CHECKING:
    from dockyard.agent.engine import TaskEngine

log = logging.getLogger("dockyard.agent.session")

BACKOFF_START = 0.1
BACKOFF_MAX = 30.0
# A connection that lived this long resets the backoff.
STABLE_SECONDS = 5.0
PRESIGN_EXPIRES = 60
_HEARTBEAT = orjson.dumps({"type": "heartbeat"})
_Sent = tuple[str, int, str]  # (task ARN, report number, lastStatus) of one state sent


class HandshakeRefused(Exception):
    """The server answered the upgrade with an HTTP error (403: signature, account or instance)."""


def presigned_url(server: str, instance_arn: str, region: str, access_key: str, secret_key: str,
                  expires: int = PRESIGN_EXPIRES) -> str:
    """ws(s)://host:port/ws/agent?containerInstance=...&X-Amz-...: the query presigned with botocore."""
    base = server.rstrip("/")
    if base.startswith("ws://"):
        base = "http://" + base[5:]
    elif base.startswith("wss://"):
        base = "https://" + base[6:]
    req = AWSRequest(method="GET", url=f"{base}{protocol.PATH}?containerInstance={quote(instance_arn, safe='')}",
                     headers={})
    SigV4QueryAuth(Credentials(access_key, secret_key), "ecs", region, expires=expires).add_auth(req)
    url: str = req.prepare().url
    if url.startswith("https://"):
        return "wss://" + url[8:]
    if url.startswith("http://"):
        return "ws://" + url[7:]
    return url


class AgentSession:
    def __init__(self, server: str, instance_arn: str, region: str, access_key: str, secret_key: str,
                 heartbeat: float | None = None, engine: TaskEngine | None = None,
                 agent_version: str = dockyard.__version__) -> None:
        self.server = server
        self.instance_arn = instance_arn
        self.region = region
        self._key = (access_key, secret_key)
        self.heartbeat = heartbeat if heartbeat is not None else protocol.heartbeat_seconds()
        self.engine = engine
        self.agent_version = agent_version
        self.connected = False  # the hello was answered: the server and the agent are in sync
        self.connects = 0  # connections that reached the hello (tests and logs)
        self._ws: aiohttp.ClientWebSocketResponse[Any] | None = None
        self._open = False  # a socket is up and the hello was sent: state frames may go
        self._pending: dict[str, TaskState] = {}  # to send on the next flush
        # Latest state per task not yet acknowledged, with the number of the report that gave it
        # (numbers, not identity: the engine may reuse its dicts).
        self._unacked: dict[str, tuple[int, TaskState]] = {}
        self._reports = itertools.count(1)
        self._inflight: dict[int, list[_Sent]] = {}  # our state frames awaiting their ack
        self._hello_sent: list[_Sent] | None = None  # acked by the full tasks frame
        self._acked_stopped: set[str] = set()
        self._seq = 0
        self._flush_scheduled = False
        self._out: deque[bytes] = deque()
        self._out_ready: asyncio.Event | None = None
        self._last_close: tuple[int, str] | None = None

    # -- the engine's callback ------------------------------------------------------------------
    def report(self, state: TaskState) -> None:
        """A task's reportable state changed (called by the engine on the loop)."""
        arn = state["taskArn"]
        self._pending[arn] = state
        self._unacked[arn] = (next(self._reports), state)
        if self._open and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._open or not self._pending:
            return
        states = list(self._pending.values())
        self._pending.clear()
        self._seq += 1
        self._inflight[self._seq] = [(s["taskArn"], self._unacked[s["taskArn"]][0], s["lastStatus"])
                                     for s in states]
        self._send({"type": "state", "seq": self._seq, "tasks": states})

    # -- sending ----------------------------------------------------------------------------------
    def _send(self, frame: dict[str, Any]) -> None:
        self._send_raw(orjson.dumps(frame))

    def _send_raw(self, data: bytes) -> None:
        self._out.append(data)
        if self._out_ready is not None:
            self._out_ready.set()

    async def _writer(self, ws: aiohttp.ClientWebSocketResponse[Any]) -> None:
        ready = self._out_ready
        assert ready is not None
        while True:
            while self._out:
                await ws.send_frame(self._out.popleft(), aiohttp.WSMsgType.TEXT)
            ready.clear()
            await ready.wait()

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            self._send_raw(await self._heartbeat_frame())

    async def _heartbeat_frame(self) -> bytes:
        """A heartbeat with the running tasks' usage; a slow engine never delays the heartbeat."""
        if self.engine is None:
            return _HEARTBEAT
        try:
            stats = await asyncio.wait_for(self.engine.usage(), timeout=self.heartbeat / 2)
        except Exception:  # stats are best effort; liveness is not
            log.debug("usage sample failed", exc_info=True)
            return _HEARTBEAT
        return orjson.dumps({"type": "heartbeat", "stats": stats}) if stats else _HEARTBEAT

    # -- the connection loop ------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Stay connected until ``stop`` is set."""
        assert self.engine is not None, "attach the engine first"
        loop = asyncio.get_running_loop()
        backoff = BACKOFF_START
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while not stop.is_set():
                started = loop.time()
                self._last_close = None
                try:
                    await self._connection(http, stop)
                except HandshakeRefused as e:
                    log.error("the server refused the agent channel for %s: %s", self.instance_arn, e)
                    backoff = max(backoff, 5.0)
                except (TimeoutError, aiohttp.ClientError, OSError) as e:
                    log.warning("agent channel to %s: %s", self.server, e or type(e).__name__)
                except Exception:
                    log.exception("agent channel failed")
                if stop.is_set():
                    break
                if self._last_close is not None and self._last_close[0] in (protocol.CLOSE_REPLACED,
                                                                            protocol.CLOSE_POLICY):
                    backoff = max(backoff, 5.0)
                elif loop.time() - started > STABLE_SECONDS:
                    backoff = BACKOFF_START
                delay = backoff * random.uniform(0.5, 1.0)
                backoff = min(BACKOFF_MAX, backoff * 2)
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except TimeoutError:
                    pass

    async def _connection(self, http: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        url = presigned_url(self.server, self.instance_arn, self.region, *self._key)
        try:
            ws = await http.ws_connect(yarl.URL(url, encoded=True), autoping=True, max_msg_size=0,
                                       decode_text=False)
        except aiohttp.WSServerHandshakeError as e:
            if e.status in (401, 403, 404):
                raise HandshakeRefused(f"HTTP {e.status}") from None
            raise
        self._ws = ws
        self._out = deque()
        self._out_ready = asyncio.Event()
        writer = asyncio.create_task(self._writer(ws))
        beats = asyncio.create_task(self._heartbeats())
        stopper = asyncio.create_task(stop.wait())
        reader = asyncio.create_task(self._read(ws))
        try:
            self._hello()
            done, _ = await asyncio.wait({reader, writer, stopper}, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t is not stopper and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
        finally:
            self._open = False
            self.connected = False
            self._inflight.clear()
            self._hello_sent = None
            for t in (writer, beats, stopper, reader):
                t.cancel()
            await asyncio.gather(writer, beats, stopper, reader, return_exceptions=True)
            self._ws = None
            self._out_ready = None
            await ws.close()

    def _hello(self) -> None:
        engine = self.engine
        assert engine is not None
        current = {s["taskArn"]: s for s in engine.states()}
        self._acked_stopped.intersection_update(current)
        states: dict[str, TaskState] = {}
        for arn, s in current.items():
            if s["lastStatus"] == "STOPPED" and arn in self._acked_stopped and arn not in self._unacked:
                continue  # the server has this one's final state
            states[arn] = s
        for arn, (_, s) in self._unacked.items():
            states.setdefault(arn, s)  # a task the engine no longer lists
        sent: list[_Sent] = []
        for arn, s in states.items():
            n = next(self._reports)
            self._unacked[arn] = (n, s)
            sent.append((arn, n, s["lastStatus"]))
        self._hello_sent = sent
        self._pending.clear()  # the hello carries every current state
        self._send({"type": "hello", "agentVersion": self.agent_version, "tasks": list(states.values())})
        self._open = True

    async def _read(self, ws: aiohttp.ClientWebSocketResponse[Any]) -> None:
        silence = 3 * self.heartbeat
        while True:
            try:
                msg = await ws.receive(timeout=silence)
            except TimeoutError:
                log.warning("no frame from the server for %.1f s; reconnecting", silence)
                return
            if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                try:
                    frame = orjson.loads(msg.data)
                    kind = frame.get("type")
                except (orjson.JSONDecodeError, AttributeError):
                    log.warning("the server sent a frame that is not a JSON object")
                    continue
                if kind == "tasks":
                    self._on_tasks(frame)
                elif kind == "ack":
                    self._on_ack(frame.get("seq"))
                elif kind == "close":
                    self._last_close = (int(frame.get("code") or 0), str(frame.get("reason") or ""))
                    level = logging.INFO if self._last_close[0] == protocol.CLOSE_GOING_AWAY else logging.WARNING
                    log.log(level, "the server closes the agent channel: %s %s", *self._last_close)
                    return  # close from this end: the server's close completes only when we do
                elif kind != "heartbeat":
                    log.debug("unknown frame type %r", kind)
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED,
                              aiohttp.WSMsgType.ERROR):
                return

    # -- frames in ------------------------------------------------------------------------------------
    def _on_tasks(self, frame: dict[str, Any]) -> None:
        engine = self.engine
        assert engine is not None
        payloads = frame.get("tasks") or []
        full = bool(frame.get("full"))
        try:
            engine.apply(payloads, full)
        except Exception:
            log.exception("the engine failed to apply a tasks frame")
            return  # not acked: the next full sync brings it again
        self._send({"type": "ack", "seq": frame.get("seq")})
        if full and self._hello_sent is not None:
            hello, self._hello_sent = self._hello_sent, None
            self._acknowledge(hello)
            self.connected = True
            self.connects += 1
            if self._pending and not self._flush_scheduled:
                self._flush_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)

    def _on_ack(self, seq: Any) -> None:
        sent = self._inflight.pop(seq, None) if isinstance(seq, int) else None
        if sent is not None:
            self._acknowledge(sent)

    def _acknowledge(self, sent: list[_Sent]) -> None:
        engine = self.engine
        assert engine is not None
        for arn, n, last in sent:
            held = self._unacked.get(arn)
            if held is not None and held[0] == n:
                del self._unacked[arn]  # nothing newer was reported since
            if last == "STOPPED":
                self._acked_stopped.add(arn)
            try:
                engine.acknowledged(arn, last)
            except Exception:
                log.exception("engine.acknowledged(%s) failed", arn)

    # -- state for callers ------------------------------------------------------------------------------
    def unacknowledged(self) -> list[TaskState]:
        return [s for _, s in self._unacked.values()]
