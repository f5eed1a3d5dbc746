"""A crawl queue shared by workers on several machines, in Redis (groundwork of issue 17).

Not used by ``crawler archive`` yet: this is the queue distributed crawling will stand on,
built and tested against a real ``redis-server`` first. What it guarantees, each step one
Lua script (atomic in Redis, so two workers never see half of another's step):

* **once per URL**: a canonical key enters the crawl's seen-set once; only then is its URL
  queued (pages at the back of their host's queue, requisites at the front);
* **per-host politeness across all workers**: a host is leased from only when its next
  allowed time has come (then moved ``delay`` later) and fewer than ``per_host`` of its URLs
  are leased; the next allowed time survives the host's queue running empty;
* **leases**: a URL handed to a worker is leased until ``lease_seconds`` from then, under a
  token; ``complete`` with a token that no longer holds the lease says so (the URL was given
  to another worker after the lease ran out: this worker's result must not be entered);
  ``reclaim`` puts URLs whose lease ran out (a worker killed, a machine lost) back at the front
  of their host's queue: no URL is lost;
* **counters**: URLs seen, queued, leased, completed and reclaimed, for status from any
  machine.

Durability is Redis's: run it with ``appendonly yes`` (the tests do, and restart it
mid-queue). Clocks: lease expiry and politeness use the Redis server's clock (``TIME``), not
the workers', so machines with skewed clocks agree.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as redis

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

# KEYS: hosts, next, leases, leased, inflight, counters. ARGV: prefix, delay, lease seconds,
# worker, per_host. Returns {token, item} or false.
_LEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 64)
for _, host in ipairs(due) do
  local busy = tonumber(redis.call('HGET', KEYS[5], host) or '0')
  if busy < tonumber(ARGV[5]) then
    local item = redis.call('LPOP', ARGV[1] .. 'queue:' .. host)
    if item then
      local nxt = now + tonumber(ARGV[2])
      redis.call('HSET', KEYS[2], host, nxt)
      if redis.call('LLEN', ARGV[1] .. 'queue:' .. host) > 0 then
        redis.call('ZADD', KEYS[1], nxt, host)
      else
        redis.call('ZREM', KEYS[1], host)
      end
      local key = cjson.decode(item)['key']
      local token = ARGV[4] .. ':' .. redis.call('HINCRBY', KEYS[6], 'leases', 1)
      redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), key)
      redis.call('HSET', KEYS[4], key, cjson.encode({token = token, host = host,
                                                      item = item}))
      redis.call('HINCRBY', KEYS[5], host, 1)
      redis.call('HINCRBY', KEYS[6], 'queued', -1)
      return {token, item}
    end
    redis.call('ZREM', KEYS[1], host)
  end
end
return false
"""

# KEYS: leases, leased, inflight, counters. ARGV: key, token. Returns 1, or 0 if the token
# no longer holds the lease.
_COMPLETE = """
local held = redis.call('HGET', KEYS[2], ARGV[1])
if not held then return 0 end
local lease = cjson.decode(held)
if lease['token'] ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], lease['host'], -1)
redis.call('HINCRBY', KEYS[4], 'completed', 1)
return 1
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
    redis.call('HINCRBY', KEYS[3], lease['host'], -1)
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
    token: str  # proves this worker still holds it (``complete``)


class SharedFrontier:
    """One crawl's queue in Redis (see the module docstring)."""

    def __init__(self, client: redis.Redis, crawl: str, *, delay: float, per_host: int = 1,
                 lease_seconds: float = 300.0) -> None:
        self.client = client
        self.prefix = f"crawler:{crawl}:"
        self.delay = delay
        self.per_host = per_host
        self.lease_seconds = lease_seconds
        self._add = client.register_script(_ADD)
        self._lease = client.register_script(_LEASE)
        self._complete = client.register_script(_COMPLETE)
        self._reclaim = client.register_script(_RECLAIM)

    def _key(self, name: str) -> str:
        return self.prefix + name

    async def add(self, items: Iterable[CrawlUrl]) -> int:
        """Queue the URLs not seen before in this crawl; return how many were new."""
        argv: list[str] = [self.prefix, "0"]
        for item in items:
            front = "1" if item.kind is UrlKind.REQUISITE else "0"
            argv += [urls.host_of(item.url), item.key, _encode(item), front]
        if len(argv) == 2:
            return 0
        keys = [self._key(n) for n in ("seen", "hosts", "next", "counters")]
        return int(await self._add(keys=keys, args=argv))

    async def lease(self, worker: str) -> Lease | None:
        """Return the next URL whose host is due and not busy, leased to ``worker``."""
        keys = [self._key(n) for n in ("hosts", "next", "leases", "leased", "inflight",
                                        "counters")]
        found = await self._lease(keys=keys, args=[self.prefix, self.delay,
                                                   self.lease_seconds, worker, self.per_host])
        if not found:
            return None
        token, item = cast(list[bytes], found)
        return Lease(_decode(item), token.decode())

    async def complete(self, lease: Lease) -> bool:
        """Release a finished URL; False if the lease had run out and another worker holds
        the URL now (then this worker's result must not be entered)."""
        keys = [self._key(n) for n in ("leases", "leased", "inflight", "counters")]
        return bool(await self._complete(keys=keys, args=[lease.item.key, lease.token]))

    async def reclaim(self) -> int:
        """Put the URLs whose lease ran out back in their host's queue; return how many."""
        keys = [self._key(n) for n in ("leases", "leased", "inflight", "counters", "hosts",
                                        "next")]
        return int(await self._reclaim(keys=keys, args=[self.prefix]))

    async def counts(self) -> dict[str, int]:
        """Return the crawl's counters (seen, queued, leased now, completed, reclaimed)."""
        raw = await cast(Awaitable[dict[bytes, bytes]],
                         self.client.hgetall(self._key("counters")))
        found = {k.decode(): int(v) for k, v in raw.items()}
        found["leased"] = int(await self.client.zcard(self._key("leases")))
        found.pop("leases", None)  # (the token sequence)
        return found

    async def finished(self) -> bool:
        """Return True when nothing is queued or leased: the crawl is over."""
        counts = await self.counts()
        return counts.get("queued", 0) == 0 and counts["leased"] == 0


def _encode(item: CrawlUrl) -> str:
    data: dict[str, Any] = {"url": item.url, "key": item.key, "kind": item.kind.value,
                            "depth": item.depth, "via": item.via, "redirects": item.redirects,
                            "embeds": item.embeds, "attempt": item.attempt}
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _decode(raw: bytes) -> CrawlUrl:
    data = json.loads(raw)
    return CrawlUrl(url=data["url"], key=data["key"], kind=UrlKind(data["kind"]),
                    depth=data["depth"], via=data["via"], redirects=data["redirects"],
                    embeds=data["embeds"], attempt=data["attempt"])
