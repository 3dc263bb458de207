"""The device protocol across two real workers: typing, read, resume, reaping."""

import pytest

from tests.live import Device, Service, StalledDevice, eventually

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    # Short ping times, so that reaping a dead connection is quick to see.
    service = Service(
        tmp_path_factory.mktemp("devices"), workers=2, server_args=["--ping-interval", "1", "--ping-timeout", "2"]
    ).start()
    yield service
    service.stop()


@pytest.fixture
def room(service, request):
    return service.seed(2, f"{request.node.name[:20]}-", room="pair")


async def test_typing_on_one_worker_shows_on_the_other_users_device_on_the_other_worker(service, room):
    alice, bob = room["users"]
    alices = await Device.connect(service.workers[0], alice["token"])
    bobs = await Device.connect(service.workers[1], bob["token"])
    await alices.send({"type": "typing", "room": room["room"]})
    frame = await bobs.next_frame("typing")
    assert frame == {"type": "typing", "room": room["room"], "user": {"id": alice["id"], "username": alice["username"]}}
    await alices.close()
    await bobs.close()


async def test_reading_on_one_worker_reaches_the_same_users_device_on_the_other(service, room):
    alice, bob = room["users"]
    alices = await Device.connect(service.workers[0], alice["token"])
    for i in range(3):
        await alices.send({"type": "message.send", "room": room["room"], "body": str(i), "client_id": str(i)})
    await alices.collect("message.ack", 3)
    phone = await Device.connect(service.workers[0], bob["token"])
    laptop = await Device.connect(service.workers[1], bob["token"])
    assert laptop.hello["rooms"][0]["unread"] == 3
    await phone.send({"type": "read", "room": room["room"], "seq": 3})
    assert await laptop.next_frame("read") == {"type": "read", "room": room["room"], "seq": 3}
    for device in (alices, phone, laptop):
        await device.close()


async def test_a_device_that_reconnects_to_the_other_worker_resumes_what_it_missed(service, room):
    alice, bob = room["users"]
    alices = await Device.connect(service.workers[0], alice["token"])
    bobs = await Device.connect(service.workers[0], bob["token"])
    await alices.send({"type": "message.send", "room": room["room"], "body": "seen", "client_id": "a"})
    seen = (await bobs.next_frame("message.new"))["message"]["seq"]
    await bobs.close()
    for i in range(3):
        await alices.send({"type": "message.send", "room": room["room"], "body": f"missed {i}", "client_id": f"m{i}"})
    await alices.collect("message.ack", 4)
    back = await Device.connect(service.workers[1], bob["token"], start_live=False)
    await back.send({"type": "resume", "rooms": {str(room["room"]): seen}})
    await back.next_frame("resume.done")
    bodies = [f["message"]["body"] for f in back.frames if f["type"] == "message.new"]
    assert bodies == ["missed 0", "missed 1", "missed 2"]
    await alices.close()
    await back.close()


async def test_a_dead_connection_is_reaped_by_the_servers_ping(service, room):
    _, bob = room["users"]
    worker = service.workers[1]
    before = worker.health()["devices"]
    dead = StalledDevice(worker, bob["token"])  # never reads, so never answers a ping
    await eventually(lambda: worker.health()["devices"] == before + 1, what="the device to attach")
    await eventually(lambda: worker.health()["devices"] == before, timeout=15, what="the dead device to be reaped")
    dead.close()
