"""Level 1: one PUBLISH per event, and one subscriber per worker and shard.

Written here rather than taken from channels-redis because its layers tie
delivery to per-channel queues or per-group subscriptions; ours publishes
one envelope per event to a channel every worker listens on, and lets each
worker pick its own devices (see `local`). Connections, parsing (hiredis)
and pub/sub are redis-py's.

Rooms map to shards by a stable hash, so one room's events always share one
Redis server and keep their order there; every worker subscribes to every
shard.
"""

import asyncio
import logging
import random
import time

import redis
import redis.asyncio as aioredis

from . import envelope

logger = logging.getLogger(__name__)

PRESENCE_INTERVAL = 10  # seconds between presence heartbeats, by default


class RedisLink:
    """Publish envelopes to the shards and feed every subscribed one to `receive`."""

    def __init__(
        self,
        *,
        urls,
        prefix,
        worker_id,
        receive,
        on_resubscribed,
        counters,
        health_check_interval=10,
        socket_timeout=5,
        presence_interval=PRESENCE_INTERVAL,
    ):
        self.urls = urls
        self.presence_interval = presence_interval
        self.prefix = prefix
        self.fanout_channel = f"{prefix}:fanout"
        self.worker_channel = f"{prefix}:worker:{worker_id}"
        self._receive = receive
        self._on_resubscribed = on_resubscribed
        self.counters = counters
        # Publishes are short commands: a dead server must fail them quickly.
        self._sync = [
            redis.Redis.from_url(
                url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout, health_check_interval=health_check_interval
            )
            for url in urls
        ]
        self._async = [
            aioredis.Redis.from_url(
                url,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
                health_check_interval=health_check_interval,
            )
            for url in urls
        ]
        self._health_check_interval = health_check_interval
        self._socket_timeout = socket_timeout
        self._names = [set() for _ in urls]  # extra subscriptions per shard
        self._pubsubs = [None] * len(urls)
        self._tasks = []
        self.up = [False] * len(urls)

    # Which shard

    def shard_of(self, key):
        return envelope.shard_of(key, len(self.urls))

    # Publishing

    def publish(self, key, data, channel=None):
        """PUBLISH from the calling thread (the one that committed): False on failure."""
        shard = self.shard_of(key)
        try:
            self._sync[shard].publish(channel or self.fanout_channel, data)
        except redis.RedisError:
            self.counters["publish_errors"] += 1
            logger.warning("publish to shard %s failed; devices will recover by resume", shard)
            return False
        self.counters["published"] += 1
        return True

    async def apublish(self, key, data, channel=None):
        """PUBLISH from the event loop, for the Channels layer's own send and group_send."""
        shard = self.shard_of(key)
        try:
            await self._async[shard].publish(channel or self.fanout_channel, data)
        except redis.RedisError:
            self.counters["publish_errors"] += 1
            logger.warning("publish to shard %s failed", shard)
            return False
        self.counters["published"] += 1
        return True

    # Subscribing

    def start(self):
        """Start one subscriber task per shard on the running loop."""
        if not self._tasks:
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(self._subscribe_forever(i)) for i in range(len(self.urls))]

    async def subscribe(self, key, name):
        """Also listen to `name` (a group's or a channel's) on the shard of `key`."""
        shard = self.shard_of(key)
        self._names[shard].add(name)
        pubsub = self._pubsubs[shard]
        if pubsub is not None:
            try:
                await pubsub.subscribe(name)
            except redis.RedisError:
                pass  # the reconnect subscribes it again

    async def unsubscribe(self, key, name):
        shard = self.shard_of(key)
        self._names[shard].discard(name)
        pubsub = self._pubsubs[shard]
        if pubsub is not None:
            try:
                await pubsub.unsubscribe(name)
            except redis.RedisError:
                pass

    async def _subscribe_forever(self, shard):
        delay = 0.1
        first = True
        while True:
            pubsub = self._async[shard].pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.fanout_channel, self.worker_channel, *self._names[shard])
                self._pubsubs[shard] = pubsub
                self.up[shard] = True
                delay = 0.1
                if not first:
                    self.counters["reconnects"] += 1
                    logger.warning("Redis shard %s is back; catching up", shard)
                    self._on_resubscribed()
                first = False
                await self._read(pubsub)
            except asyncio.CancelledError:
                await pubsub.aclose()
                raise
            except (redis.RedisError, OSError):
                if self.up[shard]:
                    logger.warning("Redis shard %s lost; reconnecting", shard)
                first = False
            finally:
                self.up[shard] = False
                self._pubsubs[shard] = None
            try:
                await pubsub.aclose()
            except Exception:
                pass
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 5.0)

    async def _read(self, pubsub):
        receive = self._receive
        while True:
            # A bounded wait: an idle link still runs redis-py's health checks.
            message = await pubsub.get_message(timeout=self._health_check_interval)
            if message is not None and message["type"] == "message":
                try:
                    receive(message["data"])
                except Exception:
                    logger.exception("could not deliver an envelope")

    async def ping(self):
        """Whether each shard answers now (for the health endpoint)."""
        states = []
        for client in self._async:
            try:
                states.append(bool(await asyncio.wait_for(client.ping(), 2)))
            except (redis.RedisError, OSError, asyncio.TimeoutError):
                states.append(False)
        return states

    # Presence: which users have a device on some worker, for the members list.
    # Each worker keeps a set of its users, refreshed by a heartbeat and
    # expiring with it, so a killed worker's users go offline on their own.

    def _presence_key(self, worker_id):
        return f"{self.prefix}:presence:{worker_id}"

    async def mark_online(self, worker_id, user_id, online):
        client = self._async[0]
        try:
            if online:
                await client.sadd(self._presence_key(worker_id), user_id)
            else:
                await client.srem(self._presence_key(worker_id), user_id)
        except redis.RedisError:
            pass  # the next heartbeat writes the whole set again

    async def heartbeat(self, worker_id, user_ids):
        key, ttl = self._presence_key(worker_id), 3 * self.presence_interval
        try:
            async with self._async[0].pipeline(transaction=True) as pipe:
                pipe.delete(key)
                if user_ids:
                    pipe.sadd(key, *user_ids)
                pipe.expire(key, ttl)
                pipe.zadd(f"{self.prefix}:workers", {worker_id: time.time()})
                pipe.zremrangebyscore(f"{self.prefix}:workers", 0, time.time() - ttl)
                await pipe.execute()
        except redis.RedisError:
            pass

    def online(self, user_ids):
        """The users among these with a device on any live worker (from any thread)."""
        client = self._sync[0]
        workers = client.zrangebyscore(f"{self.prefix}:workers", time.time() - 3 * self.presence_interval, "+inf")
        if not workers or not user_ids:
            return set()
        with client.pipeline(transaction=False) as pipe:
            for worker in workers:
                pipe.smismember(self._presence_key(worker.decode()), user_ids)
            rows = pipe.execute()
        return {uid for row in rows for uid, present in zip(user_ids, row) if present}

    async def aclose(self):
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        for client in self._async:
            await client.aclose()
