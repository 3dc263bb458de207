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
