"""Channel layers of the comparators, each with the two calls the product's services make.

The product's services publish with `layer.publish_to_room(...)` (after
commit, from the thread that committed) and `layer.publish_to_users(...)`.
These classes give the stock layers those two calls, implemented the way
each comparator fans out, so HTTP posts and WebSocket sends go through the
very same services, models and database as the product:

- RoomGroupRedisLayer: channels_redis' RedisChannelLayer; one group per room,
  one `group_send` to the room group per message (the stock Channels way).
- RoomGroupPubSubLayer: channels_redis' RedisPubSubChannelLayer, the same way.
- PerUserRedisLayer: RedisChannelLayer; one group per user, and the sender
  makes one `group_send` per member of the room.
- SeedLayer: the seed design. Level 1: one Redis PUBLISH per message carrying
  `target_user_ids`; Level 2: one subscriber task per worker process that,
  per message, loops over its local sockets awaiting each send
  ("sequential"), or gathers one message's sends (`asyncio.gather`).
"""

import asyncio
import json
import logging
from collections import defaultdict

import redis
import redis.asyncio as aioredis
from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer

logger = logging.getLogger(__name__)


def room_group(room_id):
    return f"room.{room_id}"


def user_group(user_id):
    return f"user.{user_id}"


def member_ids(room_id):
    from chat.selectors import room_member_ids

    return room_member_ids(room_id)[1]


def chat_event(event, exclude):
    # The consumer's handler is chat_event; `exclude` is the sending device's
    # channel (its copy is the message.ack), as in the product.
    return {"type": "chat.event", "event": event, "exclude": exclude}


class _Extras:
    """What the product's views ask a layer besides publishing."""

    async def stats(self):
        return {"redis": "up", "counters": {}}

    def online_user_ids(self, user_ids):
        return set()


class _UserGroups(_Extras):
    """Events for users go to each user's group: one group_send per user, awaited in turn."""

    def publish_to_users(self, user_ids, event, *, exclude=None):
        async_to_sync(self._send_users)(list(user_ids), chat_event(event, exclude))
        return True

    async def _send_users(self, user_ids, message):
        for uid in user_ids:
            await self.group_send(user_group(uid), message)


class _RoomGroups(_UserGroups):
    def publish_to_room(self, room_id, event, *, seq=None, members_version=None, exclude=None, skip_users=()):
        message = chat_event(event, exclude)
        if skip_users:
            message["skip_users"] = list(skip_users)
        async_to_sync(self.group_send)(room_group(room_id), message)
        return True


class RoomGroupRedisLayer(_RoomGroups, RedisChannelLayer):
    pass


class RoomGroupPubSubLayer(_RoomGroups, RedisPubSubChannelLayer):
    pass


class PerUserRedisLayer(_UserGroups, RedisChannelLayer):
    def publish_to_room(self, room_id, event, *, seq=None, members_version=None, exclude=None, skip_users=()):
        ids = [uid for uid in member_ids(room_id) if uid not in skip_users]
        async_to_sync(self._send_users)(ids, chat_event(event, exclude))
        return True


class SeedLayer(_Extras, InMemoryChannelLayer):
    """The seed's design inside Channels: Redis PUBLISH, then a per-worker socket loop."""

    def __init__(self, hosts=(), strategy="sequential", channel="seed:broadcast", **kwargs):
        super().__init__(**kwargs)
        if strategy not in ("sequential", "gather"):
            raise ValueError(f"unknown strategy {strategy!r}")
        self.url = hosts[0]
        self.strategy = strategy
        self.redis_channel = channel
        self.active_connections = defaultdict(set)  # user id -> consumers
        self._sync = redis.Redis.from_url(self.url)
        self._listener = None

    # Connections

    def register(self, user_id, consumer):
        self.active_connections[user_id].add(consumer)
        if self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(self._listen())

    def unregister(self, user_id, consumer):
        connections = self.active_connections.get(user_id)
        if connections is not None:
            connections.discard(consumer)
            if not connections:
                del self.active_connections[user_id]

    # Level 1

    def publish_to_room(self, room_id, event, *, seq=None, members_version=None, exclude=None, skip_users=()):
        ids = [uid for uid in member_ids(room_id) if uid not in skip_users]
        return self.publish_to_users(ids, event, exclude=exclude)

    def publish_to_users(self, user_ids, event, *, exclude=None):
        data = json.dumps({"target_user_ids": list(user_ids), "payload": event, "exclude": exclude})
        self._sync.publish(self.redis_channel, data)
        return True

    async def _listen(self):
        while True:
            client = aioredis.Redis.from_url(self.url)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.redis_channel)
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        await self.process_redis_message(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep listening, as the seed does
                logger.exception("seed subscriber failed; reconnecting")
                await asyncio.sleep(0.5)
            finally:
                await client.aclose()

    # Level 2, as in the seed's process_redis_message

    async def process_redis_message(self, raw_data):
        data = json.loads(raw_data)
        target_ids = data.get("target_user_ids", [])
        payload = data["payload"]
        exclude = data.get("exclude")
        if self.strategy == "sequential":
            for user_id in target_ids:
                if user_id in self.active_connections:
                    for connection in list(self.active_connections[user_id]):
                        if connection.channel_name == exclude:
                            continue
                        try:
                            await connection.send_json(payload)
                        except Exception as e:  # noqa: BLE001
                            logger.error("send failed: %s", e)
        else:
            tasks = []
            for user_id in target_ids:
                if user_id in self.active_connections:
                    for connection in self.active_connections[user_id]:
                        if connection.channel_name != exclude:
                            tasks.append(connection.send_json(payload))
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
