"""KSeF limits shared by every process and machine through Redis: one atomic Lua script per admission.

Usage (or pass ``rate_limits="redis://..."`` to `ksef_async.KsefClient`, or set ``KSEF_ASYNC_LIMITS_URL``)::

    store = RedisLimits.from_url("redis://redis.internal:6379/0", egress="nat-gw-1")
    limiter = store.limiter_for(base_url, "Nip:1234567890", API_RATE_LIMITS)
    async with KsefClient(base_url, ..., limiter=limiter) as client: ...

What is shared (needs the ``[redis]`` extra: redis-py's asyncio client, ``redis>=5``):

- **The exact three sliding windows per group.** Each group is one sorted set of admission times (score = time)
  and one hash (pause end, last admission, a sequence for unique members). `RedisBackend.try_admit` runs one Lua
  script: trim entries older than the longest window, find the N-th most recent admission of every limited window
  (the arithmetic of `ksef_async.core.ratelimit.SlidingWindowState`, same safety margin), then either record the
  admission or name the time worth asking again. Redis runs scripts one at a time, so admissions of all processes
  are serialised; no reservation is ever left behind by a cancelled waiter.
- **One clock.** The script reads Redis' ``TIME``: every machine's admissions are on the server's clock, whatever
  the hosts' clocks say. Answers are returned relative to the caller's ``now`` (a refusal says "ask again in
  d seconds"), so any limiter clock works for admissions; `RedisClock` (local monotonic time plus the offset to
  the server's ``TIME``, re-measured on every reply) gives pauses and usage figures the server's time scale, and is
  the clock `RedisLimits.limiter_for` gives its limiters.
- **Pending admissions.** An admission made with ``hold`` (the transport's, see `ksef_async.ratelimit`) is stored
  with the score ``now + hold``, the latest its request can reach KSeF, and `RedisBackend.settle` lowers the score
  to the time its answer came, so every process counts the request as KSeF can have seen it. While such an entry
  decides a window, the script names ``now + window`` (the earliest it can free) and the waiter asks again then.
- **429 pauses.** `RedisBackend.pause` stores the pause end in the group's hash, so every process backs off.
- **Keys** ``<namespace>:{<environment>|<scope>|<group>}:log`` and ``...:meta``: the scope is ``ctx:<type>:<value>``
  for context groups and ``ip:<egress>`` for the per-IP groups (``global``, ``anonymous``), where the egress label
  names the public address the process leaves through (processes behind one NAT share one label). The braces keep
  one group's two keys in one Redis Cluster slot. Every write sets an expiry of the longest window (plus the pause),
  so idle groups vanish.
- **Limits** travel with every call (the `ksef_async.ratelimit.Backend` contract), so ``GET /rate-limits`` read by
  any process applies as soon as that process asks; nothing stale is stored.

When Redis cannot be reached (policy ``fallback_share``, default 0.25): the backend logs one warning and, until
Redis answers again, admits locally with every limit scaled to ``max(1, floor(share * N))``, counting this
process' own admissions of the window before the outage as well. With at most ``1 / share`` processes (4 by
default) sending for one context, windows that lie wholly inside the outage stay within KSeF's limits; a window that
straddles the outage's start can exceed them only by what the processes sent unevenly before it (at most
``P * share * N``), and a 429 then pauses the group locally as usual. Redis is probed again every
``retry_interval`` seconds (never more often, so a dead server costs one connection attempt per interval); when it
answers, the admissions made during the outage are written into the shared log (so the other processes count
them) and one info line is logged. Nothing crashes and nothing is lost: a request is only delayed.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ksef_async._logging import extras, get_logger
from ksef_async.core.extras import require_extra
from ksef_async.core.ratelimit import (
    DEFAULT_MIN_MARGIN,
    DEFAULT_SAFETY_MARGIN,
    GroupUsage,
    WindowLimits,
    WindowUsage,
    insert_in_order,
    remove_latest,
    window_free_time,
)
from ksef_async.core.ratelimit_groups import PER_IP_GROUPS
from ksef_async.errors import ConfigurationError
from ksef_async.ratelimit import RateLimiter

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["DEFAULT_FALLBACK_SHARE", "RedisBackend", "RedisClock", "RedisLimits"]

logger = get_logger("ratelimit.redis")

#: Share of each limit one process may use on its own while Redis is unreachable (safe for up to 4 processes).
DEFAULT_FALLBACK_SHARE = 0.25

# Query parameters of a limits URL that configure `RedisLimits` rather than the Redis connection.
_OWN_PARAMS = frozenset({"namespace", "egress", "fallback_share", "margin"})
# How many admission times `release` can still map to their stored members (per backend, oldest forgotten first).
_RELEASE_MEMORY = 4096
# Longest a script reply may take before the store counts as unreachable (seconds).
_SOCKET_TIMEOUT = 2.0
_CONNECT_TIMEOUT = 1.0

# Every script's first lines: ``now`` (ARGV[1], or the server's TIME when it is ''), and ``f`` to send numbers out
# through '%.17g' (Lua's own tostring keeps 14 digits, too few for epoch microseconds).
_NOW = """
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[1])
end
local function f(x) return string.format('%.17g', x) end
"""

# One admission: trim, count, admit-or-name-the-wait. KEYS: log (sorted set), meta (hash).
# ARGV: now ('' = the server's TIME), record ('1'/'0'), trim horizon (s), ttl (s), hold (s), then (window, limit)
# pairs. A score may lie ahead of now (a pending admission): it frees its window no sooner than now + window.
_ADMIT = (
    _NOW
    + """
local earliest = now
local meta = redis.call('HMGET', KEYS[2], 'paused', 'last')
local paused = tonumber(meta[1])
local last = tonumber(meta[2])
if paused and paused > earliest then earliest = paused end
if last and last > earliest then earliest = last end
local record = ARGV[2] == '1'
if record then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. f(now - tonumber(ARGV[3])))
end
local horizon = now
if last and last > horizon then horizon = last end
local size = redis.call('ZCARD', KEYS[1])
for i = 6, #ARGV, 2 do
  local length = tonumber(ARGV[i])
  local limit = tonumber(ARGV[i + 1])
  if size >= limit then
    local entry = redis.call('ZREVRANGE', KEYS[1], limit - 1, limit - 1, 'WITHSCORES')
    local free = math.min(tonumber(entry[2]), horizon) + length
    if free > earliest then earliest = free end
  end
end
if record and earliest <= now then
  local member = f(now) .. '#' .. redis.call('HINCRBY', KEYS[2], 'seq', 1)
  redis.call('ZADD', KEYS[1], f(now + tonumber(ARGV[5])), member)
  redis.call('HSET', KEYS[2], 'last', f(now))
  local ttl = tonumber(ARGV[4])
  redis.call('EXPIRE', KEYS[1], ttl)
  if redis.call('TTL', KEYS[2]) < ttl then redis.call('EXPIRE', KEYS[2], ttl) end
  return {f(now), f(now), member}
end
return {f(now), f(earliest), ''}
"""
)

# A pause: KEYS meta; ARGV: now ('' = TIME), seconds from now, ttl floor. Never shortens a longer pause.
_PAUSE = (
    _NOW
    + """
local seconds = tonumber(ARGV[2])
local untilv = now + seconds
local old = tonumber(redis.call('HGET', KEYS[1], 'paused'))
if (not old) or untilv > old then
  redis.call('HSET', KEYS[1], 'paused', f(untilv))
end
local ttl = math.ceil(seconds) + tonumber(ARGV[3])
if redis.call('TTL', KEYS[1]) < ttl then redis.call('EXPIRE', KEYS[1], ttl) end
return f(now)
"""
)

# A pending admission's answer came: KEYS log; ARGV: now ('' = TIME), member. Lowers its score to now, never raises.
_SETTLE = (
    _NOW
    + """
local score = redis.call('ZSCORE', KEYS[1], ARGV[2])
if score and tonumber(score) > now then
  redis.call('ZADD', KEYS[1], 'XX', f(now), ARGV[2])
end
return {f(now)}
"""
)

# Usage: KEYS log, meta; ARGV: now ('' = TIME), then (window, limit) pairs. Returns now, paused, counts...
_USAGE = (
    _NOW
    + """
local meta = redis.call('HMGET', KEYS[2], 'paused', 'last')
local out = {f(now), meta[1] or '', meta[2] or ''}
local size = redis.call('ZCARD', KEYS[1])
for i = 2, #ARGV, 2 do
  local length = tonumber(ARGV[i])
  local limit = tonumber(ARGV[i + 1])
  out[#out + 1] = tostring(redis.call('ZCOUNT', KEYS[1], '(' .. f(now - length), '+inf'))
  if size >= limit then
    local entry = redis.call('ZREVRANGE', KEYS[1], limit - 1, limit - 1, 'WITHSCORES')
    out[#out + 1] = entry[2]
  else
    out[#out + 1] = ''
  end
end
return out
"""
)

# Write admissions made locally during an outage into the shared log. KEYS log, meta; ARGV: ttl, then times.
_REPLAY = """
for i = 2, #ARGV do
  local member = ARGV[i] .. '#fb' .. redis.call('HINCRBY', KEYS[2], 'seq', 1)
  redis.call('ZADD', KEYS[1], ARGV[i], member)
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
if redis.call('TTL', KEYS[2]) < tonumber(ARGV[1]) then redis.call('EXPIRE', KEYS[2], tonumber(ARGV[1])) end
return #ARGV - 1
"""


def _unreachable_errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import ConnectionError as RedisConnectionError  # noqa: PLC0415 - optional dependency
    from redis.exceptions import TimeoutError as RedisTimeoutError  # noqa: PLC0415

    return (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError, OSError)


class RedisClock:
    """The limiter clock on Redis' time scale: ``time.monotonic()`` plus the offset to the server's ``TIME``.

    The offset is re-measured from every script reply (the server's time at the reply, taken at the middle of the
    round trip); a sample is kept only when its round trip is no more than twice the fastest seen, so a slow reply
    cannot move the clock by more than its own delay. Before the first reply the clock is the local wall clock.
    """

    def __init__(self) -> None:
        self._offset = time.time() - time.monotonic()
        self._best_rtt = math.inf

    def __repr__(self) -> str:
        return f"RedisClock(offset={self._offset:.6f}, rtt={self._best_rtt:.6f})"

    def now(self) -> float:
        """Return the current time on the server's scale (seconds since the epoch, as Redis ``TIME``)."""
        return time.monotonic() + self._offset

    async def sleep(self, seconds: float) -> None:
        """Sleep on the running loop."""
        await asyncio.sleep(max(0.0, seconds))

    def observe(self, server_now: float, sent: float, received: float) -> None:
        """Take one sample: the server said ``server_now`` between local monotonic ``sent`` and ``received``."""
        rtt = received - sent
        if rtt <= max(2 * self._best_rtt, 0.001):
            self._best_rtt = min(self._best_rtt, rtt)
            self._offset = server_now - (sent + received) / 2


def _text(value: Any) -> str:
    """A script reply item as text (redis-py returns bytes unless the client decodes)."""
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


def _scaled(limits: WindowLimits, share: float) -> WindowLimits:
    """``limits`` with every limited window scaled to ``max(1, floor(share * N))``."""

    def scale(value: int | None) -> int | None:
        return None if value is None else max(1, math.floor(value * share))

    return WindowLimits(scale(limits.per_second), scale(limits.per_minute), scale(limits.per_hour))


class _LocalShare:
    """One group's local log while Redis is unreachable: own recent admissions, a pause, the share's arithmetic."""

    __slots__ = ("during_outage", "last", "log", "paused")

    def __init__(self, maxlen: int) -> None:
        self.log: deque[float] = deque(maxlen=max(1, maxlen))
        self.during_outage: deque[float] = deque(maxlen=max(1, maxlen))
        self.paused = -math.inf
        self.last = -math.inf

    def next_time(self, windows: tuple[tuple[float, int], ...], now: float) -> float:
        free = window_free_time(self.log, windows, max(now, self.last))
        return max(now, self.paused, self.last, free)

    def record(self, now: float, hold: float, *, outage: bool) -> None:
        insert_in_order(self.log, now + hold)
        self.last = max(self.last, now)
        if outage:
            insert_in_order(self.during_outage, now + hold)

    def settle(self, bound: float, at: float) -> None:
        for log in (self.log, self.during_outage):
            if remove_latest(log, bound):
                insert_in_order(log, min(at, bound))

    def release(self, bound: float) -> None:
        for log in (self.log, self.during_outage):
            remove_latest(log, bound)


class RedisBackend:
    """The `ksef_async.ratelimit.Backend` of one scope (a context, or an egress address) kept in Redis.

    Made by `RedisLimits.backend`; see the module docstring for keys, clock and the outage policy.
    """

    def __init__(self, store: RedisLimits, prefix: str) -> None:
        self._store = store
        self._prefix = prefix
        self._members: OrderedDict[tuple[str, float], str] = OrderedDict()
        self._local: dict[str, _LocalShare] = {}

    def __repr__(self) -> str:
        return f"RedisBackend(prefix={self._prefix!r}, store={self._store!r})"

    def keys(self, group: str) -> tuple[str, str]:
        """Return the (log, meta) keys of ``group``."""
        base = f"{self._prefix}|{group}}}"
        return f"{base}:log", f"{base}:meta"

    def _windows(self, limits: WindowLimits) -> tuple[tuple[float, int], ...]:
        store = self._store
        return tuple(
            (length + max(length * store.margin, store.min_margin), limit) for length, limit in limits.windows()
        )

    def _local_for(self, group: str, limits: WindowLimits) -> _LocalShare:
        local = self._local.get(group)
        largest = max((n for _, n in limits.windows()), default=1)
        if local is None or (local.log.maxlen or 0) < largest:
            fresh = _LocalShare(largest)
            if local is not None:
                fresh.log.extend(local.log)
                fresh.during_outage.extend(local.during_outage)
                fresh.paused, fresh.last = local.paused, local.last
            local = self._local[group] = fresh
        return local

    async def _call(self, script: str, keys: tuple[str, ...], args: list[str]) -> Any:
        """Run a script if Redis is deemed reachable; None when it is not (the caller falls back)."""
        store = self._store
        if not store.reachable_now():
            return None
        try:
            redis = store.redis()
            sent = time.monotonic()
            reply = await cast("Awaitable[Any]", redis.eval(script, len(keys), *keys, *args))
            received = time.monotonic()
        except _unreachable_errors() as exc:
            store.mark_down(exc)
            return None
        if store.server_time and isinstance(reply, list) and reply:
            store.clock.observe(float(_text(reply[0])), sent, received)
        if store.mark_up():
            await self._replay_all()
        return reply

    async def _replay_all(self) -> None:
        """Write the admissions made during the outage into the shared logs (once Redis answers again)."""
        store = self._store
        for group, local in self._local.items():
            if not local.during_outage:
                continue
            times = [f"{t:.17g}" for t in local.during_outage]
            log, meta = self.keys(group)
            try:
                await cast("Awaitable[Any]", store.redis().eval(_REPLAY, 2, log, meta, str(store.ttl_floor), *times))
            except _unreachable_errors() as exc:
                store.mark_down(exc)
                return
            local.during_outage.clear()

    def _now_arg(self, now: float) -> str:
        return "" if self._store.server_time else f"{now:.17g}"

    async def _admit(self, group: str, limits: WindowLimits, now: float, *, record: bool, hold: float = 0.0) -> float:
        windows = self._windows(limits)
        local = self._local_for(group, limits)
        log, meta = self.keys(group)
        horizon = max((length for length, _ in windows), default=0.0)
        ttl = math.ceil(horizon + hold) + self._store.ttl_floor
        args = [self._now_arg(now), "1" if record else "0", f"{horizon:.17g}", str(ttl), f"{hold:.17g}"]
        for length, limit in windows:
            args += [f"{length:.17g}", str(limit)]
        reply = await self._call(_ADMIT, (log, meta), args)
        if reply is None:
            # Unreachable: this process' share, counted over its own recent admissions.
            share = self._windows(_scaled(limits, self._store.fallback_share))
            allowed = local.next_time(share, now)
            if allowed <= now and record:
                local.record(now, hold, outage=True)
                return now
            return allowed
        server_now, earliest, member = float(_text(reply[0])), float(_text(reply[1])), _text(reply[2])
        if record and member:
            local.record(now, hold, outage=False)
            self._remember(group, now, member)
            return now
        if earliest <= server_now:
            return now
        return now + (earliest - server_now)

    def _remember(self, group: str, now: float, member: str) -> None:
        members = self._members
        members[(group, now)] = member
        if len(members) > _RELEASE_MEMORY:
            members.popitem(last=False)

    async def try_admit(self, group: str, limits: WindowLimits, now: float, hold: float = 0.0) -> float:
        """Record an admission at ``now`` (pending for ``hold``) if every window of ``group`` allows it (one script).

        Returns:
            ``now`` when admitted; else the earliest time (``> now``, on the caller's clock) worth asking again.
        """
        return await self._admit(group, limits, now, record=True, hold=hold)

    async def settle(self, group: str, admitted_at: float, hold: float, at: float) -> None:
        """Record that the pending admission of ``admitted_at`` had its answer at ``at`` (in every process).

        In server-time mode the stored time is Redis' ``TIME`` when the script runs; ``at`` is used otherwise.
        """
        member = self._members.pop((group, admitted_at), None)
        local = self._local.get(group)
        if local is not None:
            local.settle(admitted_at + hold, at)
        if member is None:
            return
        log_key, _ = self.keys(group)
        await self._call(_SETTLE, (log_key,), [self._now_arg(at), member])

    async def next_admission(self, group: str, limits: WindowLimits, now: float) -> float:
        """Return the earliest time (``>= now``, caller's clock) at which ``try_admit`` would admit; record nothing."""
        return await self._admit(group, limits, now, record=False)

    async def pause(self, group: str, until: float) -> None:
        """Admit nothing in ``group``, in every process, before ``until`` (on `RedisLimits.clock`'s scale)."""
        store = self._store
        seconds = max(0.0, until - store.clock.now()) if store.server_time else None
        local = self._local.get(group) or self._local.setdefault(group, _LocalShare(1))
        local.paused = max(local.paused, until)
        _, meta = self.keys(group)
        if seconds is None:
            # Explicit-time mode (a test's fake clock): ``until`` is on the stored scale already.
            args = ["0", f"{until:.17g}", str(store.ttl_floor)]
        else:
            args = ["", f"{seconds:.17g}", str(store.ttl_floor)]
        await self._call(_PAUSE, (meta,), args)

    async def release(self, group: str, admitted_at: float, hold: float = 0.0) -> None:
        """Remove the admission of ``group`` made at ``admitted_at`` with ``hold`` (its request never reached KSeF)."""
        member = self._members.pop((group, admitted_at), None)
        local = self._local.get(group)
        if local is not None:
            local.release(admitted_at + hold)
        if member is None:
            return
        log_key, _ = self.keys(group)
        store = self._store
        if not store.reachable_now():
            return
        try:
            await store.redis().zrem(log_key, member)
        except _unreachable_errors() as exc:
            store.mark_down(exc)

    async def usage(self, group: str, limits: WindowLimits, now: float) -> GroupUsage:
        """Return what each window of ``group`` has used and has left at ``now``, the next free slot, the pause."""
        windows = self._windows(limits)
        nominal = limits.windows()
        log, meta = self.keys(group)
        args = [self._now_arg(now)]
        for length, limit in windows:
            args += [f"{length:.17g}", str(limit)]
        reply = await self._call(_USAGE, (log, meta), args)
        if reply is None:
            local = self._local_for(group, limits)
            share_limits = _scaled(limits, self._store.fallback_share)
            share = self._windows(share_limits)
            used_local = [sum(1 for t in local.log if t > now - length) for length, _ in share]
            entries = [
                WindowUsage(seconds=s, limit=n, used=u, remaining=max(0, n - u))
                for (s, n), u in zip(share_limits.windows(), used_local, strict=True)
            ]
            paused = local.paused if math.isfinite(local.paused) else 0.0
            return GroupUsage(windows=tuple(entries), next_free=local.next_time(share, now), paused_until=paused)
        server_now = float(_text(reply[0]))
        paused_raw, last_raw = _text(reply[1]), _text(reply[2])
        earliest = server_now
        if paused_raw:
            earliest = max(earliest, float(paused_raw))
        horizon = max(server_now, float(last_raw)) if last_raw else server_now
        earliest = max(earliest, horizon)
        entries = []
        for index, ((length, limit), (seconds, _)) in enumerate(zip(windows, nominal, strict=True)):
            used = int(_text(reply[3 + 2 * index]))
            nth = _text(reply[4 + 2 * index])
            if nth:
                earliest = max(earliest, min(float(nth), horizon) + length)
            entries.append(WindowUsage(seconds=seconds, limit=limit, used=used, remaining=max(0, limit - used)))
        paused_until = float(paused_raw) - server_now + now if paused_raw else 0.0
        return GroupUsage(windows=tuple(entries), next_free=now + (earliest - server_now), paused_until=paused_until)


class RedisLimits:
    """A Redis store of KSeF limit state shared by processes: makes the backends, the clock and the limiters.

    Args:
        url_or_client: A ``redis://`` / ``rediss://`` / ``unix://`` URL (a client is made per event loop, with short
            timeouts so an outage is noticed within seconds) or a ready ``redis.asyncio.Redis`` client.
        namespace: Prefix of every key (default ``"ksef-async"``).
        egress: Label of the public address this process reaches KSeF through; processes with one label share the
            per-IP groups ``global`` and ``anonymous`` (default ``"default"``: every process behind one address).
        margin: Safety margin of every window (`ksef_async.core.ratelimit.DEFAULT_SAFETY_MARGIN`).
        min_margin: Least lengthening of every window in seconds (None: as `SlidingWindowState` decides).
        fallback_share: Share of each limit one process admits on its own while Redis is unreachable (0 < s <= 1).
        retry_interval: Seconds between probes of an unreachable Redis.
        server_time: Use Redis' ``TIME`` as the clock (default True). False stores the callers' ``now`` values
            instead: only for tests with a fake clock shared by every caller.

    Raises:
        ConfigurationError: A value is out of range, or the URL is not a Redis URL.
    """

    def __init__(
        self,
        url_or_client: str | Redis,
        *,
        namespace: str = "ksef-async",
        egress: str = "default",
        margin: float = DEFAULT_SAFETY_MARGIN,
        min_margin: float | None = None,
        fallback_share: float = DEFAULT_FALLBACK_SHARE,
        retry_interval: float = 1.0,
        server_time: bool = True,
    ) -> None:
        if not math.isfinite(margin) or margin < 0:
            raise ConfigurationError(f"RedisLimits margin must be a finite fraction >= 0, got {margin!r}")
        if min_margin is None:
            min_margin = DEFAULT_MIN_MARGIN if margin > 0 else 0.0
        if not math.isfinite(min_margin) or min_margin < 0:
            raise ConfigurationError(f"RedisLimits min_margin must be finite seconds >= 0, got {min_margin!r}")
        if not (isinstance(fallback_share, int | float) and 0 < fallback_share <= 1):
            raise ConfigurationError(f"RedisLimits fallback_share must be in (0, 1], got {fallback_share!r}")
        if not math.isfinite(retry_interval) or retry_interval <= 0:
            raise ConfigurationError(f"RedisLimits retry_interval must be finite seconds > 0, got {retry_interval!r}")
        for name, value in (("namespace", namespace), ("egress", egress)):
            if not value or any(c in value for c in "{}|\r\n"):
                raise ConfigurationError(f"RedisLimits {name} must be non-empty, without braces, '|' or newlines")
        self._url: str | None = None
        self._client: Redis | None = None
        if isinstance(url_or_client, str):
            scheme = urlsplit(url_or_client).scheme
            if scheme not in ("redis", "rediss", "unix"):
                raise ConfigurationError(f"limits URL must be redis://, rediss:// or unix://, got {scheme!r}")
            require_extra("redis.asyncio", extra="redis")
            self._url = url_or_client
        else:
            self._client = url_or_client
        self.namespace = namespace
        self.egress = egress
        self.margin = float(margin)
        self.min_margin = float(min_margin)
        self.fallback_share = float(fallback_share)
        self.retry_interval = float(retry_interval)
        self.server_time = server_time
        self.clock = RedisClock()
        self.ttl_floor = 2
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Redis] = weakref.WeakKeyDictionary()
        self._down_since: float | None = None
        self._next_probe = 0.0
        self.outages = 0
        """How many times Redis became unreachable (each started a fallback period)."""
        self._lock = threading.Lock()
        self._limiters: dict[tuple[str, str], RateLimiter] = {}
        self._per_ip: dict[str, RateLimiter] = {}

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> RedisLimits:
        """Build a store from a URL whose query may also set ``namespace``, ``egress``, ``fallback_share``, ``margin``.

        Example: ``redis://redis:6379/0?egress=nat-1&fallback_share=0.5``. Keyword arguments win over the query.

        Raises:
            ConfigurationError: A query value is malformed.
        """
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        own = {k: v for k, v in query if k in _OWN_PARAMS}
        rest = [(k, v) for k, v in query if k not in _OWN_PARAMS]
        kwargs: dict[str, Any] = {}
        for name, value in own.items():
            if name in ("fallback_share", "margin"):
                try:
                    kwargs[name] = float(value)
                except ValueError:
                    raise ConfigurationError(f"limits URL: {name} must be a number, got {value!r}") from None
            else:
                kwargs[name] = value
        kwargs.update(overrides)
        return cls(urlunsplit(parts._replace(query=urlencode(rest))), **kwargs)

    def __repr__(self) -> str:
        where = _without_password(self._url) if self._url is not None else "client"
        state = "down" if self._down_since is not None else "up"
        return f"RedisLimits({where!r}, namespace={self.namespace!r}, egress={self.egress!r}, {state})"

    def redis(self) -> Redis:
        """Return the Redis client for the running event loop (the given client, or one made from the URL)."""
        if self._client is not None:
            return self._client
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            from redis.asyncio import Redis  # noqa: PLC0415 - optional dependency, imported on first use
            from redis.asyncio.retry import Retry  # noqa: PLC0415
            from redis.backoff import NoBackoff  # noqa: PLC0415

            assert self._url is not None
            # No retries inside redis-py: an unreachable store must be noticed at once (the fallback takes over).
            client = Redis.from_url(
                self._url,
                socket_timeout=_SOCKET_TIMEOUT,
                socket_connect_timeout=_CONNECT_TIMEOUT,
                retry=Retry(NoBackoff(), 0),
            )
            self._clients[loop] = client
        return client

    async def aclose(self) -> None:
        """Close the clients this store made for the running loop (a given client is the caller's to close)."""
        if self._client is not None:
            return
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    @property
    def reachable(self) -> bool:
        """Whether the last call reached Redis."""
        return self._down_since is None

    def reachable_now(self) -> bool:
        """Whether to try Redis now: it is up, or a probe is due."""
        if self._down_since is None:
            return True
        now = time.monotonic()
        if now >= self._next_probe:
            self._next_probe = now + self.retry_interval
            return True
        return False

    def mark_down(self, exc: BaseException) -> None:
        """Note that Redis did not answer; log once per outage."""
        now = time.monotonic()
        self._next_probe = now + self.retry_interval
        if self._down_since is None:
            self._down_since = now
            self.outages += 1
            logger.warning(
                "Redis limits store unreachable: admitting a local share of each limit until it is back",
                extra=extras(error=type(exc).__name__, share=self.fallback_share),
            )

    def mark_up(self) -> bool:
        """Note that Redis answered; return True (and log once) when that ends an outage."""
        if self._down_since is None:
            return False
        outage = time.monotonic() - self._down_since
        self._down_since = None
        logger.info("Redis limits store reachable again", extra=extras(outage_seconds=round(outage, 3)))
        return True

    def backend(self, environment: str, scope: str) -> RedisBackend:
        """Return a backend whose keys are namespaced by ``environment`` (e.g. the base URL) and ``scope``.

        ``scope`` is ``"ctx:<type>:<value>"`` for a context's groups or ``"ip:<egress>"`` for the per-IP groups.
        """
        return RedisBackend(self, f"{self.namespace}:{{{environment}|{scope}")

    def per_ip_limiter_for(self, environment: str, limits: Mapping[str, WindowLimits]) -> RateLimiter:
        """Return this process' limiter of the per-IP groups of ``environment``, shared through this store."""
        wanted = {k: v for k, v in limits.items() if k in PER_IP_GROUPS}
        with self._lock:
            limiter = self._per_ip.get(environment)
            if limiter is None:
                backend = self.backend(environment, f"ip:{self.egress}")
                limiter = self._per_ip[environment] = RateLimiter(wanted, backend=backend, clock=self.clock)
                return limiter
        missing = {k: v for k, v in wanted.items() if k not in limiter.limits}
        if missing:
            limiter.update_limits(missing)
        return limiter

    def limiter_for(self, environment: str, context_key: str, limits: Mapping[str, WindowLimits]) -> RateLimiter:
        """Return this process' limiter of one (environment, context), its windows kept in Redis.

        Like `ksef_async.ratelimit.limiter_for`, but every process using this store (same URL and namespace)
        counts against the same windows; the per-IP groups are shared by every context with the same egress label.
        """
        per_ip = self.per_ip_limiter_for(environment, limits)
        key = (environment, context_key)
        with self._lock:
            limiter = self._limiters.get(key)
            if limiter is None:
                backend = self.backend(environment, f"ctx:{context_key}")
                limiter = RateLimiter(limits, backend=backend, clock=self.clock, per_ip=per_ip)
                self._limiters[key] = limiter
            return limiter


def _without_password(url: str) -> str:
    """``url`` without its user information (a Redis URL may carry a password) or query."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
