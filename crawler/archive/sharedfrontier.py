"""A crawl queue shared by workers on several machines, in Redis: the queue of a distributed
crawl (jobs/distributed.py; each worker sees it through redisfrontier.py).

What it guarantees, each step one Lua script (atomic in Redis, so two workers never see half
of another's step):

* **once per URL**: a canonical key enters the crawl's seen-set once; only then is its URL
  queued (pages at the back of their host's queue, requisites at the front);
* **per-host politeness across all workers**: a host is leased from only when its next
  allowed time has come (then moved ``delay`` later, or the host's Crawl-delay) and fewer
  than ``per_host`` requests to it are in flight (``release`` frees a slot once the response
  is read); ``back_off`` pauses a host for every worker (Retry-After); the next allowed time
  survives the host's queue running empty;
* **leases**: a URL handed to a worker is leased until ``lease_seconds`` from then, under a
  token, and renewed by its worker while it lives; ``complete`` with a token that no longer
  holds the lease says so (the URL was given to another worker after the lease ran out: the
  merge keeps that later lease's record); ``requeue`` puts a leased URL back (a retry's next
  attempt, or a URL a worker gives back unfinished);
  ``reclaim`` puts URLs whose lease ran out (a worker killed, a machine lost) back at the front
  of their host's queue: no URL is lost;
* **counters**: URLs seen, queued, leased, completed, failed, retried, returned and
  reclaimed, for status from any machine.
* the **query-variant trap rule** counted over all workers (``allow_variant``).

Durability is Redis's: run it with ``appendonly yes`` (the tests do, and restart it
mid-queue). Clocks: lease expiry and politeness use the Redis server's clock (``TIME``), not
the workers', so machines with skewed clocks agree.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Any, cast

import redis as sync_redis
import redis.asyncio as redis
from redis.asyncio.client import Pipeline

from crawler.archive.warc import Original
from crawler.capture import urls
from crawler.core.models import CrawlUrl, UrlKind

# KEYS: seen, hosts, next, counters. ARGV: prefix, now, then (host, key, item, front) x N
_ADD = """
local added = 0
for i = 3, #ARGV, 4 do
  local host, key, item, front = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if redis.call('SADD', KEYS[1], key) == 1 then
    if front == '1' then
      redis.call('LPUSH', ARGV[1] .. 'queue:' .. host, item)
    else
      redis.call('RPUSH', ARGV[1] .. 'queue:' .. host, item)
    end
    local due = redis.call('HGET', KEYS[3], host) or '0'
    redis.call('ZADD', KEYS[2], 'NX', due, host)
    added = added + 1
  end
end
redis.call('HINCRBY', KEYS[4], 'seen', added)
redis.call('HINCRBY', KEYS[4], 'queued', added)
return added
"""

# KEYS: hosts, next, leases, leased, inflight, counters, hostdelay. ARGV: prefix, delay,
# lease seconds, worker, per_host. Returns {token, item}, or {'', wait}: the seconds until the
# next host is due ('-1' when nothing is queued at all).
_LEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 64)
for _, host in ipairs(due) do
  local busy = tonumber(redis.call('HGET', KEYS[5], host) or '0')
  if busy < tonumber(ARGV[5]) then
    local item = redis.call('LPOP', ARGV[1] .. 'queue:' .. host)
    if item then
      if redis.call('LLEN', ARGV[1] .. 'queue:' .. host) == 0 then
        redis.call('ZREM', KEYS[1], host)
      end
      local key = cjson.decode(item)['key']
      local token = tostring(redis.call('HINCRBY', KEYS[6], 'leases', 1))
      redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), key)
      redis.call('HSET', KEYS[4], key, cjson.encode({token = token, host = host,
                                                      item = item, worker = ARGV[4],
                                                      busy = 1}))
      redis.call('HINCRBY', KEYS[5], host, 1)
      redis.call('HINCRBY', KEYS[6], 'queued', -1)
      return {token, item}
    end
    redis.call('ZREM', KEYS[1], host)
  end
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if first[2] then
  return {'', tostring(math.max(0, tonumber(first[2]) - now))}
end
return {'', '-1'}
"""

# The steps that end or change a lease all check its token first: a worker whose lease ran
# out (and was given to another) changes nothing. Their KEYS start leases, leased, inflight;
# their ARGV start key, token. ``held()`` returns the lease, or false; ``drop(lease)`` ends
# it and frees the host's request slot unless the worker freed it already (``release``:
# the response was read).
_LEASE_STEP = """
local function held()
  local found = redis.call('HGET', KEYS[2], ARGV[1])
  if not found then return false end
  local lease = cjson.decode(found)
  if lease['token'] ~= ARGV[2] then return false end
  return lease
end
local function drop(lease)
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  if lease['busy'] == 1 then redis.call('HINCRBY', KEYS[3], lease['host'], -1) end
end
local lease = held()
if not lease then return 0 end
"""

# KEYS: leases, leased, inflight. ARGV: key, token. Returns 1, or 0 (lease lost).
_RELEASE = _LEASE_STEP + """
if lease['busy'] == 1 then
  lease['busy'] = 0
  redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(lease))
  redis.call('HINCRBY', KEYS[3], lease['host'], -1)
end
return 1
"""

# KEYS: leases, leased, inflight, counters. ARGV: key, token, failed. Returns 1, or 0 if the
# token no longer holds the lease.
_COMPLETE = _LEASE_STEP + """
drop(lease)
redis.call('HINCRBY', KEYS[4], 'completed', 1)
if ARGV[3] == '1' then redis.call('HINCRBY', KEYS[4], 'failed', 1) end
return 1
"""

# KEYS: leases, leased, inflight, counters, hosts, next. ARGV: key, token, prefix, item,
# counter. Puts a leased URL back at the front of its host's queue (a retry, with its next
# attempt; or a worker giving it back unfinished). Returns 1, or 0 (lease lost).
_REQUEUE = _LEASE_STEP + """
drop(lease)
redis.call('LPUSH', ARGV[3] .. 'queue:' .. lease['host'], ARGV[4])
local due = redis.call('HGET', KEYS[6], lease['host']) or '0'
redis.call('ZADD', KEYS[5], 'NX', due, lease['host'])
redis.call('HINCRBY', KEYS[4], 'queued', 1)
redis.call('HINCRBY', KEYS[4], ARGV[5], 1)
return 1
"""

# KEYS: next, hosts, hostdelay. ARGV: host, delay. A request to the host may start now if its
# next allowed time has come (then it moves a delay later, or the host's Crawl-delay);
# else returns the seconds to wait. Politeness is kept where it matters, at the moment
# requests start: a URL leased by one worker may start later than one leased after it.
_START = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local nxt = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if nxt > now then return tostring(nxt - now) end
local delay = math.max(tonumber(ARGV[2]), tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0'))
redis.call('HSET', KEYS[1], ARGV[1], now + delay)
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  redis.call('ZADD', KEYS[2], now + delay, ARGV[1])
end
return '0'
"""

# KEYS: the path's shapes. ARGV: shape, limit. Returns 1 if the shape is known or one more
# fits under the limit (then it is recorded), else 0.
_VARIANT = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
return 1
"""

# KEYS: hosts, next. ARGV: host, seconds. No request to the host before now + seconds.
_BACK_OFF = """
local t = redis.call('TIME')
local until_ = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[2])
local known = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if until_ > known then
  redis.call('HSET', KEYS[2], ARGV[1], until_)
  redis.call('ZADD', KEYS[1], 'XX', until_, ARGV[1])
end
return 1
"""

# KEYS: leases, leased. ARGV: lease seconds, then (key, token) x N. Extends the leases this
# worker still holds; returns how many.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local renewed = 0
for i = 2, #ARGV, 2 do
  local held = redis.call('HGET', KEYS[2], ARGV[i])
  if held and cjson.decode(held)['token'] == ARGV[i + 1] then
    redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i])
    renewed = renewed + 1
  end
end
return renewed
"""

# KEYS: leases, leased, inflight, counters, hosts, next. ARGV: prefix. Returns the count.
_RECLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, key in ipairs(expired) do
  local held = redis.call('HGET', KEYS[2], key)
  redis.call('ZREM', KEYS[1], key)
  if held then
    local lease = cjson.decode(held)
    redis.call('LPUSH', ARGV[1] .. 'queue:' .. lease['host'], lease['item'])
    local due = redis.call('HGET', KEYS[6], lease['host']) or '0'
    redis.call('ZADD', KEYS[5], 'NX', due, lease['host'])
    redis.call('HDEL', KEYS[2], key)
    if lease['busy'] == 1 then redis.call('HINCRBY', KEYS[3], lease['host'], -1) end
    redis.call('HINCRBY', KEYS[4], 'queued', 1)
    redis.call('HINCRBY', KEYS[4], 'reclaimed', 1)
  end
end
return #expired
"""


@dataclass(frozen=True, slots=True)
class Lease:
    """A URL handed to one worker, until its lease runs out."""

    item: CrawlUrl
    token: str  # the lease's number in the crawl: proves this worker still holds it

    @property
    def number(self) -> int:
        """Return the lease's sequence number (later leases of a URL have higher ones)."""
        return int(self.token)


Client = redis.Redis | Pipeline  # a step runs at once, or queued in a pipeline


class SharedFrontier:
    """One crawl's queue in Redis (see the module docstring)."""

    def __init__(self, client: redis.Redis, crawl: str, *, delay: float, per_host: int = 1,
                 lease_seconds: float = 300.0, blocking: sync_redis.Redis | None = None,
                 ) -> None:
        self.client = client
        self.blocking = blocking  # for the one step the engine must have answered at once
        self.prefix = f"crawler:{crawl}:"
        self.delay = delay
        self.per_host = per_host
        self.lease_seconds = lease_seconds
        self._add = client.register_script(_ADD)
        self._lease = client.register_script(_LEASE)
        self._release = client.register_script(_RELEASE)
        self._complete = client.register_script(_COMPLETE)
        self._requeue = client.register_script(_REQUEUE)
        self._back_off = client.register_script(_BACK_OFF)
        self._start = client.register_script(_START)
        self._renew = client.register_script(_RENEW)
        self._reclaim = client.register_script(_RECLAIM)
        self._variant = blocking.register_script(_VARIANT) if blocking is not None else None

    def key(self, name: str) -> str:
        """Return the Redis key of one of this crawl's structures."""
        return self.prefix + name

    def _keys(self, *names: str) -> list[str]:
        return [self.prefix + n for n in names]

    async def add(self, items: Iterable[CrawlUrl], client: Client | None = None) -> int:
        """Queue the URLs not seen before in this crawl; return how many were new (in a
        pipeline, the count comes with its results)."""
        argv: list[str] = [self.prefix, "0"]
        for item in items:
            front = "1" if item.kind is UrlKind.REQUISITE else "0"
            argv += [urls.host_of(item.url), item.key, encode(item), front]
        if len(argv) == 2:
            return 0
        found = await self._add(keys=self._keys("seen", "hosts", "next", "counters"),
                                args=argv, client=client or self.client)
        return int(found) if client is None else 0

    async def take(self, worker: str) -> Lease | float:
        """Lease the next URL whose host is due and not busy to ``worker``; or, when there
        is none, return the seconds until a host is due (-1.0: nothing queued at all)."""
        token, value = cast(list[bytes], await self._lease(
            keys=self._keys("hosts", "next", "leases", "leased", "inflight", "counters",
                            "hostdelay"),
            args=[self.prefix, self.delay, self.lease_seconds, worker, self.per_host]))
        if not token:
            return float(value)
        return Lease(decode(value), token.decode())

    async def lease(self, worker: str) -> Lease | None:
        """Return the next URL whose host is due and not busy, leased to ``worker``."""
        found = await self.take(worker)
        return found if isinstance(found, Lease) else None

    async def release(self, lease: Lease, client: Client | None = None) -> bool:
        """Free the host's request slot (the response is read; writing it does not count)."""
        return bool(await self._release(keys=self._keys("leases", "leased", "inflight"),
                                        args=[lease.item.key, lease.token],
                                        client=client or self.client))

    async def complete(self, lease: Lease, *, failed: bool = False,
                       client: Client | None = None) -> bool:
        """Release a finished URL; False if the lease had run out and another worker holds
        the URL now (then this worker's result is superseded: ``merge`` keeps the later
        lease's record)."""
        return bool(await self._complete(
            keys=self._keys("leases", "leased", "inflight", "counters"),
            args=[lease.item.key, lease.token, "1" if failed else "0"],
            client=client or self.client))

    async def requeue(self, lease: Lease, item: CrawlUrl, *, counter: str,
                      client: Client | None = None) -> bool:
        """Put a leased URL back at the front of its host's queue as ``item`` (a retry's
        next attempt, or the same URL given back unfinished), counted under ``counter``."""
        return bool(await self._requeue(
            keys=self._keys("leases", "leased", "inflight", "counters", "hosts", "next"),
            args=[lease.item.key, lease.token, self.prefix, encode(item), counter],
            client=client or self.client))

    async def start(self, host: str) -> float:
        """Claim the start of a request to ``host`` now; or return the seconds to wait
        before asking again (another worker's request started less than a delay ago)."""
        return float(await self._start(keys=self._keys("next", "hosts", "hostdelay"),
                                       args=[host, self.delay]))

    async def back_off(self, host: str, seconds: float, client: Client | None = None) -> None:
        """Start no request to ``host`` for ``seconds``, on every worker (Retry-After)."""
        await self._back_off(keys=self._keys("hosts", "next"), args=[host, seconds],
                             client=client or self.client)

    async def set_host_delay(self, host: str, delay: float,
                             client: Client | None = None) -> None:
        """Keep at least ``delay`` seconds between request starts to ``host`` on every
        worker (robots.txt Crawl-delay)."""
        await cast(Awaitable[Any], (client or self.client).hset(self.key("hostdelay"), host,
                                                                str(delay)))

    async def renew(self, leases: Iterable[Lease]) -> int:
        """Extend the leases still held by their tokens; return how many."""
        argv: list[str | float] = [self.lease_seconds]
        for lease in leases:
            argv += [lease.item.key, lease.token]
        if len(argv) == 1:
            return 0
        return int(await self._renew(keys=self._keys("leases", "leased"), args=argv))

    async def reclaim(self) -> int:
        """Put the URLs whose lease ran out back in their host's queue; return how many."""
        return int(await self._reclaim(
            keys=self._keys("leases", "leased", "inflight", "counters", "hosts", "next"),
            args=[self.prefix]))

    def allow_variant(self, path: str, shape: str, limit: int) -> bool:
        """Return True if ``shape`` is a known query shape of ``path`` in this crawl, or one
        more fits under ``limit`` (then it is recorded): the trap rule counted over all
        workers, as one crawl counts it. Blocking: the engine decides inside a transaction;
        it is asked once per new (path, shape) per worker."""
        assert self._variant is not None, "a blocking client is needed"
        return bool(self._variant(keys=[self.key("variants:" + path)], args=[shape, limit]))

    async def add_originals(self, originals: Iterable[Original]) -> int:
        """Enter earlier payloads in the crawl's digest index (digest -> the record a
        revisit refers to); return how many."""
        count = 0
        batch: dict[str, str] = {}
        for original in originals:
            batch[original.digest] = json.dumps([original.url, original.date,
                                                 original.record_id], ensure_ascii=False)
            if len(batch) >= 1000:
                count += await self.client.hset(self.key("digests"), mapping=cast(Any, batch))
                batch = {}
        if batch:
            count += await self.client.hset(self.key("digests"), mapping=cast(Any, batch))
        return count

    async def original(self, digest: str) -> Original | None:
        """Return the earlier record holding this payload, if the index has one."""
        raw = await cast(Awaitable[bytes | None],
                         self.client.hget(self.key("digests"), digest))
        if raw is None:
            return None
        url, date, record_id = json.loads(raw)
        return Original(url=url, date=date, record_id=record_id, digest=digest)

    async def counts(self) -> dict[str, int]:
        """Return the crawl's counters (seen, queued, leased now, completed, failed,
        reclaimed, retried, returned)."""
        raw = await cast(Awaitable[dict[bytes, bytes]],
                         self.client.hgetall(self.key("counters")))
        found = {k.decode(): int(v) for k, v in raw.items()}
        found["leased"] = int(await self.client.zcard(self.key("leases")))
        found.pop("leases", None)  # (the lease sequence)
        return found

    async def finished(self) -> bool:
        """Return True when something was queued and now nothing is queued or leased: the
        crawl is over (a worker that joins before the seeds are queued waits for them)."""
        counts = await self.counts()
        return counts.get("seen", 0) > 0 and counts.get("queued", 0) == 0 \
            and counts["leased"] == 0


def text_of(value: bytes | str) -> str:
    """Return a Redis answer as text (answers are bytes unless a client decodes them)."""
    return value.decode() if isinstance(value, bytes) else value


def encode(item: CrawlUrl) -> str:
    """Return a queue entry: the URL and how it was reached, as compact JSON."""
    data: dict[str, Any] = {"url": item.url, "key": item.key, "kind": item.kind.value,
                            "depth": item.depth, "via": item.via, "redirects": item.redirects,
                            "embeds": item.embeds, "attempt": item.attempt}
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def decode(raw: bytes) -> CrawlUrl:
    """Return the URL of a queue entry."""
    data = json.loads(raw)
    return CrawlUrl(url=data["url"], key=data["key"], kind=UrlKind(data["kind"]),
                    depth=data["depth"], via=data["via"], redirects=data["redirects"],
                    embeds=data["embeds"], attempt=data["attempt"])
