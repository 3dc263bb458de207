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


async def test_a_message_posted_over_http_on_one_worker_arrives_over_websocket_on_the_other(service, room):
    alice, bob = room["users"]
    bobs = await Device.connect(service.workers[1], bob["token"])
    status, message = service.api(
        "POST", f"/api/rooms/{room['room']}/messages/", alice["token"], {"body": "over http", "client_id": "h1"}
    )
    assert status == 201
    frame = await bobs.next_frame("message.new")
    assert frame["message"] == message
    await bobs.close()


async def test_an_added_member_gets_the_very_next_message_and_a_removed_one_nothing_more(service, room):
    alice, bob = room["users"]
    carol = service.seed(1, f"carol-{room['room']}-")["users"][0]
    carols = await Device.connect(service.workers[1], carol["token"])
    alices = await Device.connect(service.workers[1], alice["token"])
    path = f"/api/rooms/{room['room']}"
    # Added through worker 0; the message goes out through worker 1 right after.
    assert service.api("POST", f"{path}/members/", alice["token"], {"users": [carol["id"]]}, worker=0) == (
        201, {"added": 1}
    )
    assert (await carols.next_frame("room.joined"))["room"]["id"] == room["room"]
    await alices.send({"type": "message.send", "room": room["room"], "body": "welcome carol", "client_id": "w"})
    assert (await carols.next_frame("message.new"))["message"]["body"] == "welcome carol"

    status, _ = service.api("DELETE", f"{path}/members/{carol['id']}/", alice["token"], worker=0)
    assert status == 204
    assert await carols.next_frame("room.left") == {"type": "room.left", "room": room["room"]}
    await alices.send({"type": "message.send", "room": room["room"], "body": "carol has gone", "client_id": "g"})
    await alices.next_frame("message.ack")
    await carols.send({"type": "ping"})
    await carols.next_frame("pong")
    assert [f for f in carols.frames if f["type"] == "message.new"][-1]["message"]["body"] == "welcome carol"
    await carols.close()
    await alices.close()


async def test_the_members_list_shows_who_is_online_on_any_worker(service, room):
    alice, bob = room["users"]
    path = f"/api/rooms/{room['room']}/members/"

    def online():
        _, page = service.api("GET", path, alice["token"], worker=0)
        return {m["username"]: m["online"] for m in page["results"]}

    assert online() == {alice["username"]: False, bob["username"]: False}
    bobs = await Device.connect(service.workers[1], bob["token"])
    await eventually(lambda: online()[bob["username"]], what="bob to be online")
    assert online()[alice["username"]] is False
    await bobs.close()
    await eventually(lambda: not online()[bob["username"]], what="bob to be offline")
