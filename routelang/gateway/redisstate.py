"""Gateway state shared through Redis: `serve --state redis://HOST:PORT/DB`.

Every process pointed at one Redis shares the breakers, the statistics
least_latency / lowest_cost / hybrid rank by, the round-robin turns, target
health (probed by one process of the fleet per interval) and drains.

The request path never waits on Redis. It reads this process's snapshot (the
in-process state it extends) and queues what it changes; one task sends the
queue in a pipeline, atomically per item (Lua on the server's clock, `TIME`),
and every change is published on one channel, so the others apply it within
milliseconds; a poll every POLL_S re-reads everything, in case a message was
lost. docs/gateway.md gives the failure policy: Redis slow or gone (a call
over TIMEOUT_S, a refused connection) takes the link down, this process goes
on with its own state (degraded: /health/ready, /routing and the metric
routelang_state_backend_up say so), a PING every RETRY_S looks for Redis, and
when it answers, the snapshot is read again and sharing resumes.

Keys: `routelang:v1:{ROUTER}:...` (breakers, statistics, turns of one router)
and `routelang:v1:{targets}:...` (health, drains and probe leases, which are the
upstream's, whatever router uses it). `v1` is the layout's version: a layout
that changes gets a new one, so old and new replicas run side by side during a
rolling deploy without reading each other's keys. The braces are Redis
Cluster hash tags: one router's keys live in one slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import orjson

from routelang.runtime.targetstate import (
    CLOSED,
    HALF_OPEN,
    LATENCY_SMOOTHING,
    OPEN,
    CircuitBreaker,
    TargetStats,
    smoothed,
)

from . import plan
from .state import InProcessState, RouterTargets

PREFIX = "routelang:v1"
CHANNEL = f"{PREFIX}:events"
TIMEOUT_S = 0.25    # a Redis call slower than this takes the link down
RETRY_S = 0.5       # while down, a PING this often
POLL_S = 0.2        # the whole snapshot re-read this often (pub/sub's fallback)
FLUSH_S = 0.05      # statistics sent this often (aggregated per target)
TTL_MS = 86_400_000  # keys nobody writes for a day go away
CLOSE_S = 2.0      # what stopping waits for the background tasks and the connections, at most
MAX_QUEUED = 10_000  # writes waiting for Redis beyond this are dropped (counted)

# One breaker: its state, consecutive failures, half-open successes, when it opened and when
# the fleet's half-open probe was claimed (ms, server clock), and a version that orders snapshots.
# ARGV: op ("ok", "fail", "claim", "read"), failure_threshold, cooldown_ms, success_threshold.
# Answers {state, failures, successes, ms of cooldown left, ms of the probe's claim left, version, claimed}.
BREAKER_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = redis.call('HMGET', KEYS[1], 'state', 'failures', 'successes', 'opened', 'probe', 'v')
local state = h[1] or 'closed'
local failures, successes = tonumber(h[2] or '0'), tonumber(h[3] or '0')
local opened, probe, v = tonumber(h[4] or '0'), tonumber(h[5] or '0'), tonumber(h[6] or '0')
local op, threshold, cooldown, needed = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if state == 'open' and now - opened >= cooldown then
  state, successes, probe = 'half_open', 0, 0
end
local claimed = 0
if op == 'ok' then
  failures = 0
  if state == 'half_open' then
    successes, probe = successes + 1, 0
    if successes >= needed then state = 'closed' end
  end
elseif op == 'fail' then
  failures = failures + 1
  if state == 'half_open' or failures >= threshold then state, opened, probe = 'open', now, 0 end
elseif op == 'claim' then
  if state == 'half_open' and (probe == 0 or now - probe >= cooldown) then probe, claimed = now, 1 end
end
local open_left = 0
if state == 'open' then open_left = math.max(0, opened + cooldown - now) end
local probe_left = 0
if state == 'half_open' and probe > 0 then probe_left = math.max(0, probe + cooldown - now) end
if op ~= 'read' then
  v = v + 1
  redis.call('HSET', KEYS[1], 'state', state, 'failures', failures, 'successes', successes,
             'opened', opened, 'probe', probe, 'v', v)
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
local reply = {state, failures, successes, open_left, probe_left, v, claimed}
if op ~= 'read' then
  redis.call('PUBLISH', ARGV[6], cjson.encode({'b', KEYS[1], reply}))
end
return reply
"""

# One target's statistics, plus a batch of outcomes: ARGV requests, failures, tokens, the
# number of latency samples k, their weighted sum S (the average after them is (1-a)^k * old + S),
# the batch's own average (when there is no old one), a; ARGV[1] "read" only reads.
# Answers {requests, failures, tokens, latency}.
STATS_LUA = """
local h = redis.call('HMGET', KEYS[1], 'requests', 'failures', 'tokens', 'latency')
if ARGV[1] == 'read' then
  return {tostring(h[1] or '0'), tostring(h[2] or '0'), tostring(h[3] or '0'), h[4] or ''}
end
local requests = tonumber(h[1] or '0') + tonumber(ARGV[1])
local failures = tonumber(h[2] or '0') + tonumber(ARGV[2])
local tokens = tonumber(h[3] or '0') + tonumber(ARGV[3])
local latency = h[4]
local k = tonumber(ARGV[4])
if k > 0 then
  if latency == false or latency == '' then latency = ARGV[6]
  else latency = tostring((1 - tonumber(ARGV[7])) ^ k * tonumber(latency) + tonumber(ARGV[5])) end
end
latency = latency or ''
redis.call('HSET', KEYS[1], 'requests', requests, 'failures', failures, 'tokens', tokens, 'latency', latency)
redis.call('PEXPIRE', KEYS[1], ARGV[8])
local reply = {tostring(requests), tostring(failures), tostring(tokens), latency}
redis.call('PUBLISH', ARGV[9], cjson.encode({'s', KEYS[1], reply}))
return reply
"""

# Health or a drain of one target: ARGV kind ("health", "drained"), the field (the target's
# digest), the value (JSON; "" removes it).
TARGET_LUA = """
if ARGV[3] == '' then redis.call('HDEL', KEYS[1], ARGV[2])
else redis.call('HSET', KEYS[1], ARGV[2], ARGV[3]) end
redis.call('PUBLISH', ARGV[4], cjson.encode({ARGV[1], ARGV[2], ARGV[3]}))
return 1
"""

# The lease of a target's health probe: taken when free, kept by its holder. ARGV owner, ms.
LEASE_LUA = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

SCRIPTS = {"breaker": BREAKER_LUA, "stats": STATS_LUA, "target": TARGET_LUA, "lease": LEASE_LUA}


def digest(key: tuple) -> str:
    """A target key (provider, model, endpoint) as a short key part."""
    return hashlib.sha1(orjson.dumps(list(key))).hexdigest()[:16]


def router_prefix(router: str) -> str:
    return f"{PREFIX}:{{{router}}}"


TARGETS = f"{PREFIX}:{{targets}}"
HEALTH_KEY = f"{TARGETS}:health"
DRAINED_KEY = f"{TARGETS}:drained"


def describe(url: str) -> str:
    """The URL without a password (for /routing and logs)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":   # (its query may hold the password)
        return f"unix://{parts.path}"
    host = parts.hostname or "localhost"
    return f"{parts.scheme}://{host}:{parts.port or 6379}{parts.path or '/0'}"


class Op:
    """One queued Redis call: a script, its keys and arguments, and what to do with the answer;
    or the call already packed (`packed`: see `evalsha_head` and `bulk`), which is then sent as is."""

    __slots__ = ("args", "done", "keys", "packed", "script")

    def __init__(self, script: str, keys: list[str], args: list[Any], done: Callable[[Any], None] | None = None,
                 packed: bytes | None = None):
        self.script, self.keys, self.args, self.done, self.packed = script, keys, args, done, packed


def evalsha_head(source: str, keys: list[bytes], argc: int) -> bytes:
    """The start of an EVALSHA of the script `source` on the wire (RESP), up to its arguments: `argc`
    of them must follow, each made by `bulk`. (A script's SHA is the SHA-1 of its source.)"""
    sha = hashlib.sha1(source.encode()).hexdigest().encode()
    return b"*%d\r\n" % (3 + len(keys) + argc) + bulk(b"EVALSHA", sha, len(keys), *keys)


def bulk(*args: bytes | str | int) -> bytes:
    """Arguments of a command on the wire (RESP bulk strings)."""
    out = []
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


LOST = object()   # what a pipelined call's future holds when its connection closed before the reply


class Pipe(asyncio.Protocol):
    """The link's own connection for scripts (the request path's, and the background's). A command
    is written at once when the connection is idle, else with the others of its event-loop tick in
    one write; the replies, read in order with hiredis, answer the calls in order. A caller that stops
    waiting leaves its reply to be read and dropped here, so the connection never gets out of step.
    One timer, not one per call, bounds them: a reply TIMEOUT_S late closes the connection, which
    answers every waiting call LOST (and `lost` is called). This saves redis-py's per-call work (a
    pool checkout, encoding, a stream read per reply, a timeout context): about 90 us of CPU a call."""

    def __init__(self, loop: asyncio.AbstractEventLoop, lost: Callable[[], None]):
        import hiredis
        from redis.exceptions import ResponseError

        self.loop = loop
        self.lost = lost
        self.reader = hiredis.Reader(replyError=ResponseError)
        self.protocol_error = hiredis.ProtocolError   # (imported once: data_received runs per reply)
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[tuple[asyncio.Future, float]] = deque()   # (its reply, when it was sent)
        self.out: list[bytes] = []
        self.closed = False
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    async def open(cls, url: str, lost: Callable[[], None]) -> Pipe:
        """Connect to `url` (redis://, rediss:// or unix://), then AUTH and SELECT as it says."""
        import ssl

        import hiredis
        from redis.asyncio.connection import parse_url

        options = parse_url(url)
        loop = asyncio.get_running_loop()
        if "path" in options:
            _, pipe = await loop.create_unix_connection(lambda: cls(loop, lost), options["path"])
        else:
            secure = None
            if url.lower().startswith("rediss://"):   # (the URL's ssl_ca_certs and ssl_cert_reqs=none, as redis-py's)
                secure = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
                if options.get("ssl_cert_reqs") in ("none", ssl.CERT_NONE):
                    secure.check_hostname, secure.verify_mode = False, ssl.CERT_NONE
            _, pipe = await loop.create_connection(lambda: cls(loop, lost), options.get("host", "localhost"),
                                                   options.get("port", 6379), ssl=secure)
        setup = []
        if options.get("password") is not None:
            user = options.get("username")
            setup.append(("AUTH", options["password"]) if user is None else ("AUTH", user, options["password"]))
        if options.get("db"):
            setup.append(("SELECT", options["db"]))
        for command in setup:
            reply = await pipe.send(hiredis.pack_command(command))
            if reply is LOST or isinstance(reply, Exception):
                pipe.close()
                raise ConnectionError(f"Redis refused {command[0]}: {'closed' if reply is LOST else reply}")
        return pipe

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            self.reader.feed(data)
            while (reply := self.reader.gets()) is not False:
                future = self.waiting.popleft()[0]
                if not future.done():   # (its caller stopped waiting: the reply is dropped)
                    future.set_result(reply)
        except (self.protocol_error, IndexError):   # not Redis, or a reply nobody asked for
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        while self.waiting:
            future = self.waiting.popleft()[0]
            if not future.done():
                future.set_result(LOST)
        self.lost()

    def send(self, packed: bytes) -> asyncio.Future:
        """The future of one packed command's reply (LOST if the connection closes first)."""
        future = self.loop.create_future()
        if self.closed:
            future.set_result(LOST)
            return future
        now = self.loop.time()
        if not self.waiting:   # idle: written now (one request at a time pays no extra loop turn)
            self.transport.write(packed)
            if self._timer is None:
                self._timer = self.loop.call_at(now + TIMEOUT_S, self._overdue)
        else:
            if not self.out:
                self.loop.call_soon(self._flush)
            self.out.append(packed)
        self.waiting.append((future, now))
        return future

    def _flush(self) -> None:
        out, self.out = self.out, []
        if not self.closed:
            self.transport.write(b"".join(out))

    def _overdue(self) -> None:
        """The oldest call's reply is due: close the connection if it is late, else look again when the next one is."""
        self._timer = None
        if not self.waiting or self.closed:
            return
        sent = self.waiting[0][1]
        if self.loop.time() - sent >= TIMEOUT_S:
            self.close()
        else:
            self._timer = self.loop.call_at(sent + TIMEOUT_S, self._overdue)

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True       # (no more writes: connection_lost answers the waiting calls LOST)
            self.transport.abort()


class Link:
    """The connection to Redis, with a breaker around it: `up` while Redis answers in time.
    Scripts run on the link's `Pipe`; other commands (and the background's reads) on the redis-py
    client. Calls are hard-bounded by TIMEOUT_S; a call that times out takes the link down and
    closes its connection (a new one is opened when Redis answers again), never out of step."""

    def __init__(self, url: str, on_change: Callable[[bool], None]):
        self.url = url
        self.up = False
        self.since = time.time()
        self.dropped = 0          # writes dropped while the queue was full
        self.client: Any = None
        self.pipe: Pipe | None = None
        self._shas: dict[str, bytes] = {}
        self.scripts = dict(SCRIPTS)  # name -> Lua source, loaded on connect (the tenants' ledger adds its own)
        self._on_change = on_change   # called with `up` when Redis starts or stops answering

    def open(self) -> None:
        import hiredis
        import redis.asyncio as redis  # imported only when a redis:// URL asks for it
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        # No retries inside the client: a failed call takes the link down at once.
        self.client = redis.Redis.from_url(self.url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S,
                                           retry=Retry(NoBackoff(), 0), health_check_interval=0)
        self._pack = hiredis.pack_command

    async def close(self) -> None:
        pipe, self.pipe = self.pipe, None
        if pipe is not None:
            pipe.close()
        if self.client is not None:
            await self.client.aclose()

    def mark(self, up: bool) -> None:
        if up == self.up:
            return
        self.up, self.since = up, time.time()
        self._on_change(up)

    async def connect(self) -> bool:
        """PING, load the scripts and open the pipe; up when all answer in time."""
        try:
            async with asyncio.timeout(TIMEOUT_S * 2):
                await self.client.ping()
                for name, source in self.scripts.items():
                    self._shas[name] = (await self.client.script_load(source)).encode()
                if self.pipe is None or self.pipe.closed:
                    pipe = await Pipe.open(self.url, self._pipe_lost)
                    if self.pipe is None or self.pipe.closed:
                        self.pipe = pipe
                    else:   # (another caller opened one meanwhile)
                        pipe.close()
        except (OSError, TimeoutError, self.errors()):
            self.mark(False)
            return False
        self.mark(True)
        return True

    def _pipe_lost(self) -> None:
        if self.pipe is not None and self.pipe.closed:   # (not an old pipe, nor one closed by close())
            self.mark(False)

    @staticmethod
    def errors() -> type[Exception]:
        from redis.exceptions import RedisError

        return RedisError

    def send(self, packed: bytes) -> asyncio.Future | None:
        """Send a script call packed whole (`evalsha_head`) on the pipe now: the future of its reply (for
        `checked` unless it is a list), or None when the pipe is not open (then `call`, which opens it)."""
        pipe = self.pipe
        if pipe is None or pipe.closed:
            return None
        return pipe.send(packed)

    async def call(self, op: Op) -> Any:
        """One script call: its answer (an exception when the script failed), or None when Redis
        did not answer in time. A caller cancelled meanwhile leaves the call to run in Redis."""
        future = self.send(op.packed or self._packed(op)) if op.script in self._shas else None
        if future is None:
            replies = await self.run([op])
            return None if replies is None else replies[0]
        return await self.checked(op, await future)

    async def checked(self, op: Op, reply: Any) -> Any:
        """The answer of `op` given the reply to its `send`: None when the connection closed first (the
        link is down then); sent again through `run` when Redis restarted between two calls (its
        scripts are gone)."""
        if reply is LOST:
            self.mark(False)
            return None
        if _no_script(reply):
            replies = await self.run([op])
            return None if replies is None else replies[0]
        return reply

    def _packed(self, op: Op) -> bytes:
        return self._pack(("EVALSHA", self._shas[op.script], len(op.keys), *op.keys, *op.args))

    async def run(self, ops: list[Op]) -> list[Any] | None:
        """Send `ops` pipelined (with whatever else this tick sends); their answers (an exception for
        one that failed), or None when Redis did not answer in time (the link is down then)."""
        for attempt in (1, 2):
            if (self.pipe is None or self.pipe.closed or any(op.script not in self._shas for op in ops)) \
                    and not await self.connect():
                return None   # (a script added after the link connected is loaded first)
            pipe = self.pipe
            futures = [pipe.send(op.packed or self._packed(op)) for op in ops]
            replies = [await future for future in futures]
            if any(reply is LOST for reply in replies):
                self.mark(False)
                return None
            if attempt == 1 and any(_no_script(reply) for reply in replies):
                if not await self.connect():  # Redis restarted between two calls: its scripts are gone
                    return None
                continue
            return replies
        return None


def _no_script(reply: Any) -> bool:
    return isinstance(reply, Exception) and str(reply).startswith("NOSCRIPT")


class SharedBreaker(CircuitBreaker):
    """A circuit breaker whose state is the fleet's while the link is up: outcomes are applied
    here at once (the answer the request path needs) and sent to Redis, whose state then
    replaces this copy. Half-open, only the process that claimed the probe in Redis sends it.
    While the link is down it is a plain in-process breaker."""

    def __init__(self, shared: RedisState, rkey: str, settings: dict[str, Any], clock: Callable[[], float]):
        super().__init__(clock=clock, **settings)
        self.shared = shared
        self.rkey = rkey
        self.args = [self.failure_threshold, int(self.cooldown_s * 1000), self.success_threshold, TTL_MS, CHANNEL]
        self.version = -1
        self._probe_mine_until = 0.0   # this process holds the fleet's half-open probe until then
        self._claiming = False

    def admits(self) -> bool:
        if not self.shared.link.up:
            return super().admits()
        with self._lock:
            state = self._current()
            if state != HALF_OPEN:
                return state == CLOSED
            now = self._clock()
            if self._probe_mine_until > now:
                return True
            if not self._claiming and (self._probe_at is None or now - self._probe_at >= self.cooldown_s):
                self._claiming = True
                self.shared.queue(Op("breaker", [self.rkey], ["claim", *self.args], self._claimed))
            return False  # until Redis says the probe is this process's

    def dispatched(self) -> None:
        if not self.shared.link.up:
            super().dispatched()
            return
        with self._lock:
            if self._current() == HALF_OPEN and self._probe_mine_until > 0:
                self._probe_mine_until = 0.0
                self._probe_at = self._clock()

    def record(self, ok: bool) -> str:
        # Read without the lock, as `closed` is: only this event loop records outcomes here.
        quiet = self._state == CLOSED and self._failures == 0
        state = super().record(ok)
        if self.shared.link.up and not (ok and quiet):  # a success on a quiet breaker changes nothing
            self.shared.queue(Op("breaker", [self.rkey], ["ok" if ok else "fail", *self.args], self.apply))
        return state

    def _claimed(self, reply: list) -> None:
        self._claiming = False
        self.apply(reply)
        if int(reply[6]):
            with self._lock:
                self._probe_mine_until = self._clock() + self.cooldown_s

    def apply(self, reply: list, force: bool = False) -> None:
        """Take the fleet's state (a Lua answer or a published change) unless this copy has a newer one."""
        state, failures, successes, open_left, probe_left, version = (
            _text(reply[0]), int(reply[1]), int(reply[2]), int(reply[3]), int(reply[4]), int(reply[5]))
        with self._lock:
            if version < self.version and not force:
                return
            self.version = version
            now = self._clock()
            self._state, self._failures, self._successes = state, failures, successes
            if state == OPEN:
                self._opened_at = now - (self.cooldown_s - open_left / 1000)
            self._probe_at = now - (self.cooldown_s - probe_left / 1000) if probe_left else None
            if state != HALF_OPEN:
                self._probe_mine_until = 0.0

    def lost_link(self) -> None:
        with self._lock:
            self._claiming = False


class SharedTargets(RouterTargets):
    """One router's target state on Redis: breakers are SharedBreakers; statistics are kept
    here, aggregated per target and sent every FLUSH_S, and replaced by the fleet's."""

    def __init__(self, shared: RedisState, router: str):
        super().__init__(shared, router)
        self.shared = shared
        self.prefix = router_prefix(router)
        # key -> [requests, failures, tokens, latency samples, their weighted sum, the batch's average]
        self.pending: dict[tuple, list] = {}
        self.stats_keys: dict[str, tuple] = {}

    def new_breaker(self, key: tuple, settings: dict[str, Any]) -> SharedBreaker:
        identity = digest(key) + ":" + hashlib.sha1(orjson.dumps(sorted(settings.items()))).hexdigest()[:8]
        breaker = SharedBreaker(self.shared, f"{self.prefix}:breaker:{identity}", settings, self.clock)
        self.shared.breakers[breaker.rkey] = breaker
        return breaker

    def stats_key(self, key: tuple) -> str:
        rkey = f"{self.prefix}:stats:{digest(key)}"
        if rkey not in self.stats_keys:
            self.stats_keys[rkey] = key
            self.shared.stats[rkey] = (self, key)
        return rkey

    def observe(self, key: tuple, latency_ms: float | None, ok: bool, tokens: int | None) -> None:
        self.metrics.observe(key, latency_ms, ok, tokens)
        batch = self.pending.get(key)
        if batch is None:
            batch = self.pending[key] = [0, 0, 0, 0, 0.0, None]
        batch[0] += 1
        batch[1] += 0 if ok else 1
        batch[2] += tokens or 0
        if latency_ms is not None:
            batch[3] += 1
            batch[4] = (1 - LATENCY_SMOOTHING) * batch[4] + LATENCY_SMOOTHING * latency_ms
            batch[5] = smoothed(batch[5], latency_ms)

    def flush(self) -> list[Op]:
        ops = []
        for key, (requests, failures, tokens, samples, weighted, average) in self.pending.items():
            rkey = self.stats_key(key)
            ops.append(Op("stats", [rkey], [requests, failures, tokens, samples, repr(weighted),
                                            "" if average is None else repr(average), LATENCY_SMOOTHING, TTL_MS,
                                            CHANNEL], lambda reply, key=key: self.apply_stats(key, reply)))
        self.pending = {}
        return ops

    def apply_stats(self, key: tuple, reply: list) -> None:
        latency = _text(reply[3])
        self.metrics.put(key, TargetStats(requests=int(reply[0]), failures=int(reply[1]), tokens=int(reply[2]),
                                          latency_ms=float(latency) if latency else None))


class RedisState(InProcessState):
    """The gateway's State on Redis (see the module's docstring)."""

    def __init__(self, url: str):
        super().__init__()
        self.link = Link(url, self._link_changed)
        self._watchers: list[Callable[[bool], None]] = []
        self.owner = f"{os.uname().nodename}:{os.getpid()}:{id(self):x}"
        self.breakers: dict[str, SharedBreaker] = {}            # Redis key -> breaker
        self.stats: dict[str, tuple[SharedTargets, tuple]] = {}  # Redis key -> (router state, target key)
        self.digests: dict[str, tuple] = {}                     # digest -> target key
        self._ops: deque[Op] = deque()
        self._wake = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        # Round-robin turns: one turn reserved ahead per node (taken from Redis after each use).
        self._reserved: dict[tuple, int] = {}
        self._last: dict[tuple, int] = {}
        self._refilling: set[tuple] = set()
        self._turn_keys: set[tuple] = set()

    # ---- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (Redis unreachable: start degraded, and keep trying)."""
        self._wake = asyncio.Event()
        self._subscribed = asyncio.Event()
        self.link.open()
        await self.link.connect()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(job()) for job in (self._writer, self._watch, self._flusher,
                                                           self._listener)]
        if self.link.up:  # serve with the subscription on and the snapshot read
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TIMEOUT_S * 2):
                    await self._subscribed.wait()
            await self.poll(force=True)

    async def close(self) -> None:
        """Bounded: a task or a connection that does not end in time is left behind, so a gateway
        asked to stop always stops."""
        for task in self._tasks:
            task.cancel()
        closing = asyncio.get_running_loop().create_task(self.link.close())
        await asyncio.wait([*self._tasks, closing], timeout=CLOSE_S)
        self._tasks = []

    def status(self) -> dict[str, Any]:
        return {"backend": "redis", "url": describe(self.link.url), "up": self.link.up,
                "degraded": not self.link.up, "since": self.link.since, "dropped_writes": self.link.dropped}

    # ---- the request path: local reads, queued writes ---------------------------------

    def queue(self, op: Op) -> None:
        if len(self._ops) >= MAX_QUEUED:
            self.link.dropped += 1
            return
        self._ops.append(op)
        self._wake.set()

    def target_state(self, loaded: plan.Loaded) -> SharedTargets:
        return SharedTargets(self, loaded.name)

    def bind(self, loaded: plan.Loaded, previous: plan.Loaded | None) -> None:
        super().bind(loaded, previous)
        targets: SharedTargets = self.targets[loaded.name]
        for key in loaded.targets:
            self.digests[digest(key)] = key
            targets.stats_key(key)   # read the fleet's statistics of every target, not only those seen here
        for key in loaded.router.turn_keys():
            self._turn_keys.add((loaded.name, *key))
            if self.link.up:
                self._refill((loaded.name, *key))

    def take_turn(self, key: tuple) -> int:
        if not self.link.up:
            return super().take_turn(key)
        turn = self._reserved.pop(key, None)
        if turn is None:  # the next one is still on its way: count on from the last one
            turn = self._last.get(key, -1) + 1
        self._last[key] = turn
        self._refill(key)
        return turn

    def _refill(self, key: tuple) -> None:
        if key in self._refilling or key in self._reserved:
            return
        self._refilling.add(key)
        router, *node = key
        rkey = f"{router_prefix(router)}:turn:" + orjson.dumps(node).decode()

        def done(reply: Any, key: tuple = key) -> None:
            self._refilling.discard(key)
            self._reserved[key] = int(reply) - 1

        self.queue(Op("turn", [rkey], [TTL_MS], done))

    def set_health(self, key: tuple, healthy: bool, detail: str | None, pushed: bool = False) -> None:
        super().set_health(key, healthy, detail, pushed)
        self._publish_target("health", HEALTH_KEY, key, orjson.dumps([healthy, detail, pushed]).decode())

    def set_drained(self, key: tuple, drained: bool) -> None:
        super().set_drained(key, drained)
        self._publish_target("drained", DRAINED_KEY, key, "1" if drained else "")

    def _publish_target(self, kind: str, rkey: str, key: tuple, value: str) -> None:
        self.digests[digest(key)] = key
        if self.link.up:
            self.queue(Op("target", [rkey], [kind, digest(key), value, CHANNEL]))

    async def probe_lease(self, key: tuple, interval_s: float) -> bool:
        if not self.link.up:
            return True  # degraded: every process probes for itself
        lease = Op("lease", [f"{TARGETS}:probe:{digest(key)}"], [self.owner, int(interval_s * 1500)])
        replies = await self.link.run([lease])
        if replies is None or isinstance(replies[0], Exception):
            return True
        return bool(replies[0])

    # ---- background: the writer, the watch, the statistics, pub/sub --------------------

    async def _writer(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._ops:
                continue
            batch = list(self._ops)
            self._ops.clear()
            if not self.link.up:
                self._lost()
                continue
            turns = [op for op in batch if op.script == "turn"]
            batch = [op for op in batch if op.script != "turn"]
            replies = await self._send(batch, turns)
            if replies is None:
                self._lost()
                continue
            for op, reply in zip(batch + turns, replies):
                if op.done is not None and not isinstance(reply, Exception):
                    op.done(reply)

    async def _send(self, scripted: list[Op], turns: list[Op]) -> list[Any] | None:
        if not turns:
            return await self.link.run(scripted) if scripted else []
        # Turns are INCR and PEXPIRE, no script: sent with the others in one pipeline.
        replies = await self.link.run(scripted) if scripted else []
        if replies is None:
            return None
        try:
            async with asyncio.timeout(TIMEOUT_S):
                pipe = self.link.client.pipeline(transaction=False)
                for op in turns:
                    pipe.incr(op.keys[0])
                    pipe.pexpire(op.keys[0], op.args[0])
                answers = await pipe.execute(raise_on_error=False)
        except (OSError, TimeoutError, self.link.errors()):
            self.link.mark(False)
            return None
        return [*replies, *answers[::2]]

    def _lost(self) -> None:
        """The link went down: what was queued is dropped; local state carries on."""
        self._ops.clear()
        self._refilling.clear()
        self._reserved.clear()
        for breaker in self.breakers.values():
            breaker.lost_link()

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            if self.link.up:
                for targets in self.targets.values():
                    for op in targets.flush():
                        self.queue(op)

    async def _watch(self) -> None:
        """While up, re-read the snapshot every POLL_S (which also notices Redis going away);
        while down, PING every RETRY_S."""
        while True:
            if self.link.up:
                await asyncio.sleep(POLL_S)
                await self.poll()
            else:
                await asyncio.sleep(RETRY_S)
                if await self.link.connect():
                    await self.poll(force=True)

    def watch(self, callback: Callable[[bool], None]) -> None:
        self._watchers.append(callback)
        callback(self.link.up)

    def _link_changed(self, up: bool) -> None:
        if up:  # take turns from the fleet's counters again
            for key in self._turn_keys:
                self._refill(key)
        for callback in self._watchers:
            callback(up)

    async def poll(self, force: bool = False) -> None:
        """Read every breaker, every statistic, health and drains from Redis."""
        breakers = list(self.breakers.values())
        stats = list(self.stats.items())
        ops = [Op("breaker", [b.rkey], ["read", *b.args]) for b in breakers]
        ops += [Op("stats", [rkey], ["read"]) for rkey, _ in stats]
        replies = await self.link.run(ops) if ops else []
        if replies is None:
            self._lost()
            return
        try:
            async with asyncio.timeout(TIMEOUT_S):
                health, drained = await asyncio.gather(self.link.client.hgetall(HEALTH_KEY),
                                                       self.link.client.hgetall(DRAINED_KEY))
        except (OSError, TimeoutError, self.link.errors()):
            self.link.mark(False)
            self._lost()
            return
        for breaker, reply in zip(breakers, replies):
            if not isinstance(reply, Exception) and (force or int(reply[5]) > 0):
                breaker.apply(reply, force=force)
        for (_rkey, (targets, key)), reply in zip(stats, replies[len(breakers):]):
            if not isinstance(reply, Exception):
                targets.apply_stats(key, reply)
        for field, value in health.items():
            key = self.digests.get(_text(field))
            if key is not None:
                healthy, detail, pushed = orjson.loads(value)
                InProcessState.set_health(self, key, healthy, detail, pushed)
        now_drained = {self.digests[_text(f)] for f in drained if _text(f) in self.digests}
        for key in self._drained - now_drained:
            InProcessState.set_drained(self, key, False)
        for key in now_drained - self._drained:
            InProcessState.set_drained(self, key, True)

    async def _listener(self) -> None:
        """Apply what other processes publish; (re)subscribe whenever the link is up."""
        import redis.asyncio as redis

        while True:
            if not self.link.up:
                await asyncio.sleep(RETRY_S / 5)
                continue
            client = redis.Redis.from_url(self.link.url, socket_connect_timeout=TIMEOUT_S)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                async with asyncio.timeout(TIMEOUT_S * 2):
                    await pubsub.subscribe(CHANNEL)
                self._subscribed.set()
                while self.link.up:
                    message = await pubsub.get_message(timeout=POLL_S)
                    if message is not None:
                        self._apply_event(orjson.loads(message["data"]))
            except (OSError, TimeoutError, self.link.errors()):
                await asyncio.sleep(RETRY_S / 2)  # the watch notices Redis going away; try again after
            finally:
                with contextlib.suppress(OSError, TimeoutError, self.link.errors()):
                    async with asyncio.timeout(TIMEOUT_S):
                        await pubsub.aclose()
                        await client.aclose()

    def _apply_event(self, event: list) -> None:
        kind, where, value = event
        if kind == "b":
            breaker = self.breakers.get(where)
            if breaker is not None:
                breaker.apply(value)
        elif kind == "s":
            owner = self.stats.get(where)
            if owner is not None:
                owner[0].apply_stats(owner[1], value)
        elif kind == "health":
            key = self.digests.get(where)
            if key is not None and value:
                healthy, detail, pushed = orjson.loads(value)
                InProcessState.set_health(self, key, healthy, detail, pushed)
        elif kind == "drained":
            key = self.digests.get(where)
            if key is not None:
                InProcessState.set_drained(self, key, bool(value))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value
