"""Concurrent senders on two real workers: seq is 1..N with no gap or repeat."""

import asyncio

import pytest

from tests.live import Device, Service

pytestmark = pytest.mark.live

SENDERS = 4
PER_SENDER = 15


@pytest.fixture(params=["sqlite", "postgresql"])
def service(request, tmp_path):
    extra = {}
    if request.param == "postgresql":
        extra["DATABASE_URL"] = request.getfixturevalue("postgres_url")
    service = Service(tmp_path, workers=2, extra_env=extra)
    if request.param == "postgresql":
        # A fresh database per run: the cluster is shared by the session.
        service.env["DATABASE_URL"] = extra["DATABASE_URL"]
        service.manage("flush", "--no-input")
    service.start()
    yield service
    service.stop()


async def test_concurrent_senders_on_two_workers_get_seq_one_to_n(service):
    seeded = service.seed(SENDERS + 1, "seq", room="race")
    room, users = seeded["room"], seeded["users"]
    watcher = await Device.connect(service.workers[0], users[-1]["token"])
    senders = [
        await Device.connect(service.workers[i % 2], user["token"]) for i, user in enumerate(users[:SENDERS])
    ]

    async def send_all(device, n):
        for i in range(PER_SENDER):
            await device.send({"type": "message.send", "room": room, "body": f"{n}-{i}", "client_id": f"{n}-{i}"})
        await device.collect("message.ack", PER_SENDER, timeout=60)

    await asyncio.gather(*(send_all(d, n) for n, d in enumerate(senders)))
    frames = await watcher.collect("message.new", SENDERS * PER_SENDER, timeout=60)
    seqs = [f["message"]["seq"] for f in frames]
    # Every message once, and in order on this device.
    assert seqs == list(range(1, SENDERS * PER_SENDER + 1))
    for device in (watcher, *senders):
        await device.close()


async def test_every_device_on_both_workers_sees_concurrent_senders_strictly_in_seq_order(service):
    seeded = service.seed(5, "order", room="order")
    room, (alice, bob, charlie, dave, erin) = seeded["room"], seeded["users"]
    w0, w1 = service.workers
    # Senders on both workers, each with another device on the other worker; Erin only watches, on both.
    senders = {
        "alice": await Device.connect(w0, alice["token"]),
        "bob": await Device.connect(w1, bob["token"]),
        "charlie": await Device.connect(w0, charlie["token"]),
        "dave": await Device.connect(w1, dave["token"]),
    }
    watchers = {
        "alice's other device": await Device.connect(w1, alice["token"]),
        "bob's other device": await Device.connect(w0, bob["token"]),
        "erin on worker 0": await Device.connect(w0, erin["token"]),
        "erin on worker 1": await Device.connect(w1, erin["token"]),
    }
    per_sender = 25
    total = len(senders) * per_sender

    async def send_all(name, device):
        # Pipelined: all sends go out before the first ack is read.
        for i in range(per_sender):
            await device.send({"type": "message.send", "room": room, "body": f"{name} {i}", "client_id": f"{name}-{i}"})
        return [f["message"]["seq"] for f in await device.collect("message.ack", per_sender, timeout=90)]

    acked = dict(zip(senders, await asyncio.gather(*(send_all(n, d) for n, d in senders.items()))))
    assert sorted(seq for seqs in acked.values() for seq in seqs) == list(range(1, total + 1))

    for name, device in senders.items():
        frames = await device.collect("message.new", total - per_sender, timeout=60)
        seqs = [f["message"]["seq"] for f in frames]
        # Strictly increasing, no repeat, and with its own acks exactly 1..N: nothing missed.
        assert seqs == sorted(set(seqs)), name
        assert sorted(seqs + acked[name]) == list(range(1, total + 1)), name
    for name, device in watchers.items():
        frames = await device.collect("message.new", total, timeout=60)
        assert [f["message"]["seq"] for f in frames] == list(range(1, total + 1)), name
    # Nothing more trails behind (a repeat would come before the pong).
    for name, device in {**senders, **watchers}.items():
        await device.send({"type": "ping"})
        await device.next_frame("pong")
        expected = total if name in watchers else total - per_sender
        assert sum(1 for f in device.frames if f["type"] == "message.new") == expected, name
    for device in (*senders.values(), *watchers.values()):
        await device.close()
