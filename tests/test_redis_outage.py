"""A Redis restart mid-stream: workers reconnect, and nothing stored is lost."""

import pytest

from tests.live import Device, Service, eventually

pytestmark = pytest.mark.live


@pytest.fixture
def service(tmp_path):
    service = Service(tmp_path, workers=2).start()
    yield service
    service.stop()


async def send(device, room, body):
    await device.send({"type": "message.send", "room": room, "body": body, "client_id": body})
    return (await device.next_frame("message.ack"))["message"]["seq"]


async def test_a_redis_restart_loses_nothing_and_delivery_resumes_on_every_worker(service):
    seeded = service.seed(2, "out", room="outage")
    room, (alice, bob) = seeded["room"], seeded["users"]
    w0, w1 = service.workers
    alices = await Device.connect(w0, alice["token"])
    bobs = await Device.connect(w1, bob["token"])

    assert [await send(alices, room, f"before {i}") for i in range(3)] == [1, 2, 3]
    service.redis.stop()
    # Stored while Redis is away: the sender still gets its ack.
    assert [await send(alices, room, f"during {i}") for i in range(3)] == [4, 5, 6]
    service.redis.start()
    for worker in (w0, w1):
        await eventually(lambda: worker.health()["redis"] == "up", timeout=5, what="the worker to reconnect")
        assert worker.health()["counters"]["reconnects"] >= 1
    assert [await send(alices, room, f"after {i}") for i in range(3)] == [7, 8, 9]

    # Bob stayed connected on the other worker: he gets all nine, once, in order.
    frames = await bobs.collect("message.new", 9, timeout=15)
    assert [f["message"]["seq"] for f in frames] == list(range(1, 10))

    # A device that comes back later and resumes gets everything too.
    await bobs.close()
    again = await Device.connect(w0, bob["token"], start_live=False)
    await again.send({"type": "resume", "rooms": {str(room): 0}})
    await again.next_frame("resume.done")
    assert [f["message"]["seq"] for f in again.frames if f["type"] == "message.new"] == list(range(1, 10))
    await again.close()
    await alices.close()
