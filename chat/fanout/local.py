"""Level 2: deliver each envelope to this process's own devices and channels.

Everything here runs on the worker's event loop and never awaits a socket:
a delivery is a few dict lookups and one deque append per device.
"""

import asyncio
import logging
from collections import defaultdict

from . import envelope

logger = logging.getLogger(__name__)


class RoomOrder:
    """Hand on a room's messages in seq order, across every sending worker.

    Messages of one room are stored in seq order (the room row lock), but
    workers publish after their own commit, so seq 6 may be published before
    seq 5. A message that arrives early waits here for its predecessors; if
    they do not come within `grace` seconds (lost while Redis was away, or
    their worker died between commit and publish), they are read back from
    the database. They exist there: seq N commits before N+1 is handed out.
    """

    def __init__(self, *, deliver, backfill, grace=0.05, max_held=1000):
        self._deliver = deliver  # (room, seq, targets, exclude, frame) -> None
        self._backfill = backfill  # async (room, after_seq) -> [(seq, targets, frame)]
        self._grace = grace
        self._max_held = max_held
        self._next = {}  # room -> the seq expected next
        self._held = defaultdict(dict)  # room -> seq -> (targets, exclude, frame)
        self._filling = set()

    def accept(self, room, seq, targets, exclude, frame):
        expected = self._next.get(room)
        if expected is None or seq == expected:
            self._pass(room, seq, targets, exclude, frame)
            self._drain(room)
        elif seq > expected:
            held = self._held[room]
            held[seq] = (targets, exclude, frame)
            if room not in self._filling:
                self._filling.add(room)
                asyncio.get_running_loop().create_task(self._fill(room, now=len(held) >= self._max_held))
        # seq < expected: a duplicate of something already passed on.

    def rooms(self):
        return list(self._next)

    async def catch_up(self, room):
        """Read back whatever the room has after the last seq passed on."""
        expected = self._next.get(room)
        if expected is None:
            return
        for seq, targets, frame in await self._backfill(room, expected - 1):
            if seq >= self._next[room]:
                self._held[room].setdefault(seq, (targets, None, frame))
        self._flush(room)

    def _pass(self, room, seq, targets, exclude, frame):
        self._next[room] = seq + 1
        self._deliver(room, seq, targets, exclude, frame)

    def _drain(self, room):
        held = self._held.get(room)
        while held:
            item = held.pop(self._next[room], None)
            if item is None:
                return
            self._pass(room, self._next[room], *item)
        self._held.pop(room, None)

    def _flush(self, room):
        """Pass on everything held, in order, gaps or not: the database had no more."""
        held = self._held.pop(room, {})
        for seq in sorted(held):
            if seq >= self._next[room]:
                self._pass(room, seq, *held[seq])

    async def _fill(self, room, now):
        try:
            if not now:
                await asyncio.sleep(self._grace)
            if self._held.get(room):
                await self.catch_up(room)
        except Exception:
            logger.exception("backfill of room %s failed; passing on what arrived", room)
            self._flush(room)
        finally:
            self._filling.discard(room)


class LocalDelivery:
    """This process's devices, channels and groups, and delivery to them."""

    def __init__(self, *, backfill, capacity, counters):
        self.capacity = capacity
        self.counters = counters
        self._backfill = backfill
        self.reset()

    def reset(self):
        """Forget every device, channel, group and room position."""
        self.devices_by_user = defaultdict(set)
        self.queues = {}  # channel name -> asyncio.Queue
        self.groups = defaultdict(set)  # group name -> channel names
        self.order = RoomOrder(deliver=self.deliver_message, backfill=self._backfill)

    # Devices

    def attach(self, device):
        """Add a device; True if it is its user's first here."""
        devices = self.devices_by_user[device.user_id]
        devices.add(device)
        return len(devices) == 1

    def detach(self, device):
        """Remove a device; True if it was its user's last here."""
        devices = self.devices_by_user.get(device.user_id)
        if devices is None or device not in devices:
            return False
        devices.discard(device)
        if not devices:
            del self.devices_by_user[device.user_id]
            return True
        return False

    def online(self, user_ids):
        return {uid for uid in user_ids if uid in self.devices_by_user}

    # Envelopes from Level 1

    def receive(self, data):
        """Deliver one envelope as it came off Level 1."""
        env = envelope.decode(data)
        kind = env["k"]
        if kind == envelope.ROOM:
            self.order.accept(env["r"], env["q"], envelope.unpack_ids(env["t"]), env.get("x"), env["f"])
        elif kind == envelope.USERS:
            self._deliver_frame(envelope.unpack_ids(env["t"]), env.get("x"), env["f"])
        elif kind == envelope.CHANNEL:
            if env["c"] in self.queues:  # else the channel is gone
                self.put(env["c"], env["m"])
        elif kind == envelope.GROUP:
            for channel in tuple(self.groups.get(env["g"], ())):
                self.put(channel, env["m"])
        elif kind == envelope.CLOSE:
            self.close_devices(envelope.unpack_ids(env["t"]), env["a"], env["c"])

    def deliver_message(self, room, seq, targets, exclude, frame):
        delivered = 0
        devices_by_user = self.devices_by_user
        for uid in targets:
            # A copy: a push that overflows a device's outbox closes and forgets it.
            for device in tuple(devices_by_user.get(uid, ())):
                if device.channel != exclude:
                    device.push_message(room, seq, frame)
                    delivered += 1
        self.counters["delivered"] += delivered

    def close_devices(self, targets, credential, code):
        """Close these users' devices that authenticated with this credential.

        A control event, not a frame: it goes through Level 1 like any other
        (one publish reaches every worker), but here it ends the connection
        instead of joining the device's outbox, so nothing queued before it
        delays it. The consumer's disconnect handler then detaches the device.
        """
        for uid in targets:
            for device in tuple(self.devices_by_user.get(uid, ())):
                if device.credential == credential and not device.closed:
                    device.close(code)
                    self.counters["closed_revoked"] += 1

    def _deliver_frame(self, targets, exclude, frame):
        delivered = 0
        devices_by_user = self.devices_by_user
        for uid in targets:
            for device in tuple(devices_by_user.get(uid, ())):
                if device.channel != exclude:
                    device.push(frame)
                    delivered += 1
        self.counters["delivered"] += delivered

    # Channels' own channels and groups

    def queue(self, channel):
        queue = self.queues.get(channel)
        if queue is None:
            queue = self.queues[channel] = asyncio.Queue(self.capacity)
        return queue

    def put(self, channel, message):
        """Queue a message for a local channel; False if the channel is full."""
        try:
            self.queue(channel).put_nowait(message)
            return True
        except asyncio.QueueFull:
            return False

    def forget_channel(self, channel):
        self.queues.pop(channel, None)
        for members in self.groups.values():
            members.discard(channel)
