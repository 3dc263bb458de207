"""Two real daphne workers linked by a real redis-server."""

import pytest

from tests.live import Device, Service

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    service = Service(tmp_path_factory.mktemp("cross"), workers=2).start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def people(service):
    seeded = service.seed(3, "cw", room="cross")
    alice, bob, carol = seeded["users"]
    return seeded["room"], alice, bob, carol


async def test_alice_gets_bobs_message_on_her_devices_on_both_workers(service, people):
    room, alice, bob, _ = people
    w0, w1 = service.workers
    alice_0 = await Device.connect(w0, alice["token"])
    alice_1 = await Device.connect(w1, alice["token"])
    bob_1 = await Device.connect(w1, bob["token"])
    await bob_1.send({"type": "message.send", "room": room, "body": "hello both", "client_id": "b1"})
    ack = await bob_1.next_frame("message.ack")
    for device in (alice_0, alice_1):
        frame = await device.next_frame("message.new")
        assert frame["message"]["body"] == "hello both"
        assert frame["message"]["seq"] == ack["message"]["seq"]
    # Under daphne the frames took the fast path: written whole by chat.fanout.wire.
    for worker in (w0, w1):
        assert worker.health()["wire"].get("direct", 0) >= 1
    for device in (alice_0, alice_1, bob_1):
        await device.close()
