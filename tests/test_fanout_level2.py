"""Level 2 on its own: per-device outboxes, slow devices, and per-room order."""

import asyncio
import json
from collections import Counter

import pytest

from chat.fanout import envelope
from chat.fanout.devices import SLOW_CLOSE_CODE, Device
from chat.fanout.local import LocalDelivery, RoomOrder


class Socket:
    """An ASGI send that records frames; it can be made to stop taking them."""

    def __init__(self):
        self.frames = []
        self.closed_with = None
        self.stalled = asyncio.Event()  # set: every send blocks forever
        self.arrived = asyncio.Event()

    async def send(self, message):
        if message["type"] == "websocket.close":
            self.closed_with = message["code"]
            self.arrived.set()
            return
        if self.stalled.is_set():
            await asyncio.Event().wait()
        self.frames.append(message["text"])
        self.arrived.set()

    async def wait_for(self, predicate, timeout=3):
        async with asyncio.timeout(timeout):
            while not predicate():
                self.arrived.clear()
                await self.arrived.wait()


def device(socket, user_id=1, channel=None, max_frames=10, max_bytes=10_000):
    return Device(
        user_id=user_id, channel=channel or f"c{id(socket)}", send=socket.send, max_frames=max_frames, max_bytes=max_bytes
    )


async def test_frames_reach_the_socket_in_the_order_they_were_pushed():
    socket = Socket()
    d = device(socket)
    for i in range(5):
        d.push(f"f{i}")
    await socket.wait_for(lambda: len(socket.frames) == 5)
    assert socket.frames == ["f0", "f1", "f2", "f3", "f4"]


async def test_a_device_that_stops_reading_is_closed_with_4008_and_others_keep_receiving():
    stalled, healthy = Socket(), Socket()
    stalled.stalled.set()
    slow, fine = device(stalled, max_frames=10), device(healthy, max_frames=10)
    for i in range(50):
        for d in (slow, fine):
            d.push(f"m{i}")
        await asyncio.sleep(0)  # let the writers run, as the event loop would between publishes
    await stalled.wait_for(lambda: stalled.closed_with is not None)
    assert stalled.closed_with == SLOW_CLOSE_CODE and slow.closed
    await healthy.wait_for(lambda: len(healthy.frames) == 50)
    assert healthy.frames == [f"m{i}" for i in range(50)]


async def test_a_device_over_its_byte_budget_is_closed_rather_than_dropping_a_frame():
    socket = Socket()
    socket.stalled.set()
    d = device(socket, max_frames=1000, max_bytes=100)
    for _ in range(3):
        d.push("x" * 40)
    await socket.wait_for(lambda: socket.closed_with is not None)
    assert socket.closed_with == SLOW_CLOSE_CODE
    assert socket.frames == []


async def test_a_message_is_sent_to_a_device_at_most_once():
    socket = Socket()
    d = device(socket)
    d.release()
    for seq in (1, 2, 2, 1, 3):
        d.push_message(7, seq, f"s{seq}")
    await socket.wait_for(lambda: len(socket.frames) == 3)
    assert socket.frames == ["s1", "s2", "s3"]


async def test_live_messages_wait_behind_a_resume_and_come_after_it_in_order():
    socket = Socket()
    d = device(socket)
    d.hold()  # as the layer does for a new connection
    d.push_message(7, 5, "s5")  # live, arrives while the replay is read
    d.push_message(7, 6, "s6")
    await d.replay(7, 2, [(3, "s3"), (4, "s4"), (5, "s5")])
    d.release()
    await socket.wait_for(lambda: len(socket.frames) == 4)
    assert socket.frames == ["s3", "s4", "s5", "s6"]


async def test_a_second_resume_never_goes_back_behind_what_this_connection_carried():
    socket = Socket()
    d = device(socket)
    d.release()
    d.push_message(7, 5, "s5")
    d.hold([7])
    await d.replay(7, 1, [(2, "s2"), (5, "s5"), (6, "s6")])
    d.release()
    await socket.wait_for(lambda: len(socket.frames) == 2)
    assert socket.frames == ["s5", "s6"]


async def test_a_replay_longer_than_the_outbox_is_paced_not_closed():
    socket = Socket()
    d = device(socket, max_frames=10)
    d.hold()
    await d.replay(7, 0, [(seq, f"s{seq}") for seq in range(1, 101)])
    d.release()
    await socket.wait_for(lambda: len(socket.frames) == 100)
    assert not d.closed and socket.closed_with is None
    assert socket.frames == [f"s{seq}" for seq in range(1, 101)]


class Recorder:
    def __init__(self, stored=()):
        self.passed = []
        self.stored = dict(stored)  # seq -> frame, what the database holds
        self.backfills = 0

    def deliver(self, room, seq, targets, exclude, frame):
        self.passed.append(seq)

    async def backfill(self, room, after):
        self.backfills += 1
        return [(seq, (), frame) for seq, frame in sorted(self.stored.items()) if seq > after]


async def test_a_room_message_that_arrives_early_waits_for_its_predecessor():
    recorder = Recorder()
    order = RoomOrder(deliver=recorder.deliver, backfill=recorder.backfill, grace=5)
    for seq in (1, 3, 4, 2, 5):
        order.accept(9, seq, (), None, f"s{seq}")
    assert recorder.passed == [1, 2, 3, 4, 5]
    assert recorder.backfills == 0


async def test_a_lost_publish_is_read_back_from_the_database():
    recorder = Recorder(stored={2: "s2", 3: "s3"})
    order = RoomOrder(deliver=recorder.deliver, backfill=recorder.backfill, grace=0.01)
    order.accept(9, 1, (), None, "s1")
    order.accept(9, 3, (), None, "s3")  # 2 was never published
    async with asyncio.timeout(3):
        while recorder.passed != [1, 2, 3]:
            await asyncio.sleep(0.005)
    order.accept(9, 2, (), None, "s2")  # a late duplicate is dropped
    assert recorder.passed == [1, 2, 3]


def frame_envelope(kind, **fields):
    return envelope.encode({"k": kind, **fields})


async def test_local_delivery_reaches_every_device_of_the_targets_except_the_sender():
    counters = Counter()
    local = LocalDelivery(backfill=Recorder().backfill, capacity=10, counters=counters)
    sockets = {name: Socket() for name in ("alice-phone", "alice-laptop", "bob", "charlie")}
    owners = {"alice-phone": 1, "alice-laptop": 1, "bob": 2, "charlie": 3}
    for name, socket in sockets.items():
        d = device(socket, user_id=owners[name], channel=name)
        d.release()
        local.attach(d)
    frame = json.dumps({"type": "message.new", "message": {"seq": 1}})
    local.receive(frame_envelope(envelope.ROOM, r=5, q=1, t=envelope.pack_ids([1, 2]), x="alice-phone", f=frame))
    await sockets["bob"].wait_for(lambda: sockets["bob"].frames)
    await sockets["alice-laptop"].wait_for(lambda: sockets["alice-laptop"].frames)
    assert sockets["alice-phone"].frames == [] and sockets["charlie"].frames == []
    assert counters["delivered"] == 2


@pytest.mark.parametrize("ids", [[], [1], [5, 3, 9, 3], list(range(1, 5001)), [2**40, 7]])
def test_target_ids_survive_packing(ids):
    assert list(envelope.unpack_ids(envelope.pack_ids(ids))) == sorted(set(ids))
