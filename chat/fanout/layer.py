"""The project's Channels layer: the Channels contract plus sends to rooms and users.

Sends to a room resolve its member user ids here, at send time, from the
database (through the configured `members` function), and make one publish
that carries the ids and the frame, encoded once. Each device consumer
attaches a `Device` under its user id instead of joining groups, so a
membership change takes effect with the very next message.

With no Redis hosts configured the same code runs inside one process:
publishing hands the envelope straight to local delivery.
"""

import asyncio
import json
import uuid
from collections import Counter

import redis
from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer
from django.utils.module_loading import import_string

from . import envelope
from .devices import Device
from .local import LocalDelivery
from .redis_link import PRESENCE_INTERVAL, RedisLink
from .wire import written as wire_written


class FanoutChannelLayer(BaseChannelLayer):
    extensions = ["groups", "flush"]

    def __init__(
        self,
        hosts=(),
        prefix="chat",
        members=None,
        backfill=None,
        capacity=100,
        expiry=60,
        group_expiry=86400,
        channel_capacity=None,
        device_max_frames=1000,
        device_max_bytes=1024 * 1024,
        health_check_interval=10,
        socket_timeout=5,
        presence_interval=PRESENCE_INTERVAL,
        **kwargs,
    ):
        super().__init__(expiry=expiry, capacity=capacity, channel_capacity=channel_capacity, **kwargs)
        self.worker_id = uuid.uuid4().hex[:12]
        self.prefix = prefix
        self.counters = Counter()
        self._members = import_string(members) if isinstance(members, str) else members
        self._backfill = import_string(backfill) if isinstance(backfill, str) else backfill
        self._member_cache = {}  # room -> (members_version, ids)
        self._device_limits = {"max_frames": device_max_frames, "max_bytes": device_max_bytes}
        self.local = LocalDelivery(backfill=self._read_back, capacity=capacity, counters=self.counters)
        self._loop = None
        self._presence = None
        self._link = None
        if hosts:
            self._link = RedisLink(
                urls=list(hosts),
                prefix=prefix,
                worker_id=self.worker_id,
                receive=self.local.receive,
                on_resubscribed=self._catch_up_all,
                counters=self.counters,
                health_check_interval=health_check_interval,
                socket_timeout=socket_timeout,
                presence_interval=presence_interval,
            )

    # Start-up: everything async binds to the loop of the first async call.

    def _bind(self):
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            if self._link is not None:
                self._link.start()
                self._presence = self._loop.create_task(self._beat_presence())
        elif self._link is None:
            # In-process delivery follows the running loop (tests run one loop each).
            self._loop = asyncio.get_running_loop()

    # Sends to rooms and users (any thread; the services call them after commit)

    def publish_to_room(self, room_id, event, *, seq=None, members_version=None, exclude=None, skip_users=()):
        """Publish an event to every device of the room's members, in seq order if seq is given.

        Call from synchronous code (it may read the member list). Returns False
        if the publish failed; what was stored is still recovered by `resume`.
        """
        version, ids = self._room_members(room_id, members_version)
        if skip_users:
            ids = [uid for uid in ids if uid not in skip_users]
        frame = json.dumps(event, separators=(",", ":"))
        if seq is None:
            env = {"k": envelope.USERS, "t": envelope.pack_ids(ids), "x": exclude, "f": frame}
        else:
            env = {"k": envelope.ROOM, "r": room_id, "q": seq, "t": envelope.pack_ids(ids), "x": exclude, "f": frame}
        return self._publish(room_id, envelope.encode(env))

    def publish_to_users(self, user_ids, event, *, exclude=None):
        """Publish an event to every device of these users."""
        frame = json.dumps(event, separators=(",", ":"))
        env = {"k": envelope.USERS, "t": envelope.pack_ids(user_ids), "x": exclude, "f": frame}
        key = min(user_ids) if user_ids else 0
        return self._publish(key, envelope.encode(env))

    def close_devices(self, user_id, credential, code):
        """Close the user's devices, on every worker, that authenticated with this credential.

        `credential` is the fingerprint the device was attached with; see chat.auth.
        """
        env = {"k": envelope.CLOSE, "t": envelope.pack_ids([user_id]), "a": credential, "c": code}
        return self._publish(user_id, envelope.encode(env))

    def _room_members(self, room_id, members_version):
        cached = self._member_cache.get(room_id)
        if cached is not None and members_version is not None and cached[0] == members_version:
            return cached
        version, ids = self._members(room_id)
        self._member_cache[room_id] = (version, ids)
        return version, ids

    def _publish(self, key, data):
        if self._link is not None:
            return self._link.publish(key, data)
        self.counters["published"] += 1
        self._hand_over(self.local.receive, data)
        return True

    def _hand_over(self, func, *args):
        """Run func on the layer's loop, from whichever thread we are on."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # no device or consumer in this process yet: nobody to deliver to
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            func(*args)
        else:
            loop.call_soon_threadsafe(func, *args)

    async def _read_back(self, room_id, after_seq):
        """Fill a gap in a room's stream from the store: [(seq, targets, frame)]."""

        def read():
            rows = self._backfill(room_id, after_seq)
            if not rows:
                return []
            _, ids = self._room_members(room_id, None)
            return [(seq, ids, json.dumps(event, separators=(",", ":"))) for seq, event in rows]

        self.counters["backfills"] += 1
        # database_sync_to_async, not plain sync_to_async: it runs Django's
        # close_old_connections around the read, so a connection the database
        # dropped (restart, failover) is health-checked and replaced instead of
        # failing every backfill on this pool thread from then on.
        return await database_sync_to_async(read, thread_sensitive=False)()

    def _catch_up_all(self):
        for room in self.local.order.rooms():
            asyncio.get_running_loop().create_task(self.local.order.catch_up(room))

    # Devices

    async def attach_device(self, *, user_id, channel, send, wire=None, credential=None):
        """Register a device connection; live messages are held until `release`.

        `wire` is the daphne socket under the connection, if it is one (see wire.py);
        `credential` what `close_devices` matches on.
        """
        self._bind()
        device = Device(
            user_id=user_id,
            channel=channel,
            send=send,
            wire=wire,
            credential=credential,
            on_closed_slow=self._count_slow,
            **self._device_limits,
        )
        device.hold()
        if self.local.attach(device) and self._link is not None:
            await self._link.mark_online(self.worker_id, user_id, True)
        return device

    def detach_device(self, device):
        device.detach()
        self._forget(device)
        self.local.forget_channel(device.channel)

    def _count_slow(self, device):
        self.counters["closed_slow"] += 1
        self._forget(device)

    def _forget(self, device):
        if self.local.detach(device) and self._link is not None:
            self._loop.create_task(self._link.mark_online(self.worker_id, device.user_id, False))

    async def _beat_presence(self):
        while True:
            await self._link.heartbeat(self.worker_id, list(self.local.devices_by_user))
            await asyncio.sleep(self._link.presence_interval)

    def online_user_ids(self, user_ids):
        """Which of these users have a device connected to any worker (call from sync code)."""
        user_ids = list(user_ids)
        if self._link is None:
            return self.local.online(user_ids)
        try:
            return self._link.online(user_ids)
        except redis.RedisError:
            return self.local.online(user_ids)

    async def stats(self):
        """Counters and the state of the Redis link, for the health endpoint."""
        self._bind()
        state = {"redis": "off", "counters": dict(self.counters)}
        state["wire"] = dict(wire_written)
        state["devices"] = sum(len(d) for d in self.local.devices_by_user.values())
        if self._link is not None:
            # Up means answering and subscribed: only then does delivery work.
            answers = await self._link.ping()
            shards = [ok and subscribed for ok, subscribed in zip(answers, self._link.up)]
            state["redis"] = "up" if all(shards) else "down"
            state["shards"] = shards
        return state

    # The Channels layer contract

    async def new_channel(self, prefix="specific."):
        self._bind()
        channel = f"{prefix}{self.worker_id}!{uuid.uuid4().hex}"
        self.local.queue(channel)
        return channel

    def _is_local(self, channel):
        if self._link is None:
            return True
        if "!" not in channel:
            return False
        return channel.split("!", 1)[0].endswith(self.worker_id)

    async def send(self, channel, message):
        self.require_valid_channel_name(channel)
        assert isinstance(message, dict), "message is not a dict"
        self._bind()
        if self._is_local(channel):
            if not self.local.put(channel, message):
                raise ChannelFull(channel)
            return
        if "!" in channel:
            worker_id = channel.split("!", 1)[0][-len(self.worker_id) :]
            target = f"{self.prefix}:worker:{worker_id}"
        else:
            target = f"{self.prefix}:channel:{channel}"
        data = envelope.encode({"k": envelope.CHANNEL, "c": channel, "m": message})
        await self._link.apublish(target, data, channel=target)

    async def receive(self, channel):
        self.require_valid_channel_name(channel)
        self._bind()
        if not self._is_local(channel):
            # A plain channel name: listen for it on its shard.
            queue = self.local.queue(channel)
            name = f"{self.prefix}:channel:{channel}"
            await self._link.subscribe(name, name)
            return await queue.get()
        return await self.local.queue(channel).get()

    async def group_add(self, group, channel):
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        self._bind()
        members = self.local.groups[group]
        if not members and self._link is not None:
            name = f"{self.prefix}:group:{group}"
            await self._link.subscribe(name, name)
        members.add(channel)

    async def group_discard(self, group, channel):
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        members = self.local.groups.get(group)
        if members is None:
            return
        members.discard(channel)
        if not members:
            del self.local.groups[group]
            if self._link is not None:
                name = f"{self.prefix}:group:{group}"
                await self._link.unsubscribe(name, name)

    async def group_send(self, group, message):
        """Send to every member channel of the group on every worker; never raises ChannelFull."""
        self.require_valid_group_name(group)
        assert isinstance(message, dict), "message is not a dict"
        self._bind()
        if self._link is None:
            for channel in tuple(self.local.groups.get(group, ())):
                self.local.put(channel, message)
            return
        name = f"{self.prefix}:group:{group}"
        data = envelope.encode({"k": envelope.GROUP, "g": group, "m": message})
        await self._link.apublish(name, data, channel=name)

    async def flush(self):
        """Forget every local channel, group, device and room position."""
        self.local.reset()
        self._member_cache.clear()

    async def close(self):
        if self._presence is not None:
            self._presence.cancel()
        if self._link is not None:
            await self._link.aclose()

