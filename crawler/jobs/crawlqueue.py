"""A distributed crawl's place in Redis: connecting, its keys, its shared queue, the crawl in
progress, and where its workers write on this machine (used by distributed.py, which runs
workers, and merging.py, which makes one crawl of what they wrote).

Keys are under ``crawler:<target>:<crawl id>:``; ``crawler:<target>:current`` names the
target's crawl in progress (one at a time)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import redis as sync_redis
import redis.asyncio as redis
from redis.exceptions import RedisError

from crawler.archive.sharedfrontier import SharedFrontier, text_of
from crawler.capture.settings import CrawlSettings
from crawler.core.errors import OutputError

WORKERS_DIR = ".workers"
LEASE_SECONDS = 300.0  # renewed every quarter of it while the worker lives


class RedisUnavailable(OutputError):
    """Redis could not be reached, or holds no such crawl."""


def current_key(target: str) -> str:
    """Return the Redis key naming a target's distributed crawl in progress."""
    return f"crawler:{target}:current"


async def connect(url: str) -> redis.Redis:
    """Return a client of the Redis at ``url``, or say clearly why there is none."""
    try:
        client: redis.Redis = redis.Redis.from_url(
            url, socket_connect_timeout=10, socket_timeout=30, health_check_interval=30)
        await client.ping()
    except (RedisError, ValueError, OSError) as exc:
        raise RedisUnavailable(
            f"Redis at {url} does not answer ({exc}): start redis-server there (with "
            "appendonly yes, see docs/distributed.md) or check --redis") from exc
    return client


def workers_dir(root: Path, target: str, crawl_id: str) -> Path:
    """Return where the workers of a crawl that run on this machine write."""
    return root / WORKERS_DIR / f"{target}-{crawl_id}"


async def crawl_in_progress(client: redis.Redis, url: str,
                             target: str) -> tuple[str, dict[str, Any]]:
    """Return the id and settings of the target's crawl in progress in Redis."""
    found = await client.get(current_key(target))
    raw = await client.get(f"crawler:{target}:{text_of(found)}:settings") if found else None
    if found is None or raw is None:
        raise RedisUnavailable(f"Redis at {url} has no distributed crawl of {target} in "
                               f"progress: start one with `crawler archive SEED --target "
                               f"{target} --redis {url}`")
    return text_of(found), json.loads(raw)


def queue_of(client: redis.Redis, target: str, crawl_id: str, settings: CrawlSettings,
           lease: float = LEASE_SECONDS) -> SharedFrontier:
    pol = settings.politeness
    kwargs = client.connection_pool.connection_kwargs
    blocking = sync_redis.Redis(host=kwargs.get("host", "localhost"),
                                port=kwargs.get("port", 6379), db=kwargs.get("db", 0),
                                username=kwargs.get("username"),
                                password=kwargs.get("password"), socket_timeout=30,
                                socket_connect_timeout=10)
    return SharedFrontier(client, f"{target}:{crawl_id}", delay=pol.delay,
                          per_host=pol.per_host, lease_seconds=lease, blocking=blocking)


