"""Quality requirements judged on the fleet's attempts: `serve --state redis://...`
with tenant keys (docs/tenants.md, "Quality across the fleet").

Each process keeps its own window of each target's last QUALITY_WINDOW attempts
(tenants.py's `Quality`) and, every SYNC_S off the request path, sends the
summaries of the windows that changed (the latencies of its successful and of
its failed attempts) to one hash per target, a field per process, and reads
back the hashes of the targets it judges, in one pipeline. `breaks` and `score`
then judge a target on the union of this process's window and the other live
processes' summaries (success = sum of successes / sum of attempts, a latency
percentile exact over the merged latencies), a snapshot at most about a second
old. A summary is stamped with Redis's clock when written; one older than
MAX_AGE_MS is a process that stopped, and is ignored (and deleted by the next
write). While the link is down, or before the first read, each process judges on
its own window.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

import orjson

from routelang import ir

from . import plan
from .redisstate import CLOSE_S, PREFIX, Op, RedisState
from .tenants import Quality, _Window

QUALITY_KEYS = f"{PREFIX}:{{quality}}"   # + ":" + target name: a hash, a field per process
SYNC_S = 0.5          # summaries sent and the fleet's read this often
REFRESH_S = 1.0       # an unchanged summary is written again this often (its process is alive)
MAX_AGE_MS = 3_000    # a summary older than this is a stopped process's: ignored
TTL_MS = 60_000       # a target's hash that nobody writes for this long goes away

# One target's summaries. ARGV: op ("write", "read"), the age limit (ms); to write, the owner, its
# summary and the key's time to live (ms). Stamps each summary with the server's clock (`TIME`), so
# replicas' clocks do not matter. "read" answers the live owners and summaries, flat; a field without
# a stamp is not a summary (skipped; a write deletes it, as it does the stale ones).
QUALITY_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local max_age = tonumber(ARGV[2])
local fields = redis.call('HGETALL', KEYS[1])
local live = {}
for i = 1, #fields, 2 do
  local space = string.find(fields[i + 1], ' ', 1, true)
  local at = space and tonumber(string.sub(fields[i + 1], 1, space - 1))
  if at and now - at <= max_age then
    table.insert(live, fields[i])
    table.insert(live, string.sub(fields[i + 1], space + 1))
  elseif ARGV[1] == 'write' then
    redis.call('HDEL', KEYS[1], fields[i])
  end
end
if ARGV[1] == 'write' then
  redis.call('HSET', KEYS[1], ARGV[3], string.format('%d', now) .. ' ' .. ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  return 1
end
return live
"""


def quality_key(name: str) -> str:
    return f"{QUALITY_KEYS}:{name}"


def summary(window: _Window) -> bytes:
    """A window as the fleet reads it: the latencies of its successful and of its failed attempts."""
    return orjson.dumps({"ok": window.ok_latencies, "failed": [ms for ok, ms in window.attempts if not ok]})


def merged(own: _Window | None, others: list[dict]) -> _Window:
    """One window of this process's attempts and the other processes' summaries."""
    attempts = list(own.attempts) if own is not None else []
    for other in others:
        attempts += [(True, ms) for ms in other["ok"]]
        attempts += [(False, ms) for ms in other["failed"]]
    window = _Window()
    window.attempts = deque(attempts)
    window.ok_latencies = sorted(ms for ok, ms in attempts if ok)
    window.ok = len(window.ok_latencies)
    return window


def others_summaries(reply: list, mine: bytes) -> list[dict]:
    """The summaries of a read's reply (owner, summary, ...) but this process's; one that is not a
    summary (written by something else) is left out."""
    summaries = []
    for owner, value in zip(reply[::2], reply[1::2]):
        if owner == mine:
            continue
        try:
            parsed = orjson.loads(value)
            if all(isinstance(ms, (int, float)) for ms in (*parsed["ok"], *parsed["failed"])):
                summaries.append(parsed)
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue
    return summaries


def required_targets(loaded: plan.Loaded) -> list[str]:
    """The names of a router version's targets when it has a `require` (those its requests are judged on)."""
    if not any(policy.get("requirements") for policy in loaded.router.plan.policies):
        return []
    return [plan.target_name(target) for target in loaded.targets.values()]


class SharedQuality(Quality):
    """`Quality` judged on the fleet's windows (see the module's docstring)."""

    def __init__(self, state: RedisState):
        super().__init__()
        self.state = state
        self.state.link.scripts["quality"] = QUALITY_LUA   # (loaded before the first call that needs it)
        # The targets this process judged, besides those of the routers served that have a `require`:
        # their hashes are read (so a process judges on the fleet's attempts from its first request).
        self.followed: set[str] = set()
        self.changed: set[str] = set()      # the windows that changed since they were last sent
        self._sent: dict[str, float] = {}   # target name -> when its summary was last written (monotonic)
        self._task: asyncio.Task | None = None

    def observe(self, attempts: list[dict]) -> None:
        super().observe(attempts)
        self.changed.update(attempt["target"] for attempt in attempts if "ms" in attempt)

    def breaks(self, target: plan.Target, req: ir.Requirements) -> str | None:
        self.followed.add(plan.target_name(target))
        return super().breaks(target, req)

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._sync_forever())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=CLOSE_S)
            self._task = None

    async def _sync_forever(self) -> None:
        try:
            while True:
                await asyncio.sleep(SYNC_S)
                await self.sync()
        finally:   # stopped (or a bug): never judge on a fleet snapshot that no longer ages
            self.judged = self.windows

    async def sync(self) -> None:
        """Send this process's changed (or due) summaries and read the fleet's of the targets it
        judges, in one pipeline; while the link is down, judge on this process's windows alone."""
        if not self.state.link.up:
            self.judged = self.windows
            return
        now = time.monotonic()
        due = [name for name in self.windows if name in self.changed or now - self._sent.get(name, 0) >= REFRESH_S]
        self.changed.difference_update(due)
        owner = self.state.owner
        mine = owner.encode()
        writes = [Op("quality", [quality_key(name)], ["write", MAX_AGE_MS, owner, summary(self.windows[name]), TTL_MS])
                  for name in due]
        followed = sorted(self.followed.union(*(required_targets(loaded) for loaded in self.state.routers.values())))
        reads = [Op("quality", [quality_key(name)], ["read", MAX_AGE_MS]) for name in followed]
        replies = await self.state.link.run(writes + reads)
        if replies is None:   # the link went down: its watch brings it back
            self.changed.update(due)
            self.judged = self.windows
            return
        for name in due:
            self._sent[name] = now
        judged = dict(self.windows)
        for name, reply in zip(followed, replies[len(writes):]):
            if isinstance(reply, Exception):
                continue
            others = others_summaries(reply, mine)
            if others:
                judged[name] = merged(self.windows.get(name), others)
        self.judged = judged

