"""A worker killed with SIGKILL: the others keep delivering, and its devices resume elsewhere."""

import time

import pytest
import websockets

from tests.live import Device, Service

pytestmark = pytest.mark.live


@pytest.fixture
def service(tmp_path):
    service = Service(tmp_path, workers=3).start()
    yield service
    service.stop()


def seqs(device):
    return [f["message"]["seq"] for f in device.frames if f["type"] == "message.new"]


def last_seen(device):
    """The highest seq the device knows of: what it was sent and what it sent itself."""
    return max(f["message"]["seq"] for f in device.frames if f["type"] in ("message.new", "message.ack"))


async def send(device, room, body):
    await device.send({"type": "message.send", "room": room, "body": body, "client_id": body})
    return (await device.next_frame("message.ack"))["message"]["seq"]


async def connection_lost(device, timeout=10):
    """Read until the socket ends; True once it has (frames read on the way are kept)."""
    try:
        await device.next_frame("never sent", timeout=timeout)
    except websockets.ConnectionClosed:
        return True
    return False


async def test_a_killed_workers_devices_resume_on_a_survivor_and_everyone_else_keeps_receiving(service):
    seeded = service.seed(3, "kill", room="kill")
    room, (alice, bob, charlie) = seeded["room"], seeded["users"]
    doomed, w1, w2 = service.workers
    alices = await Device.connect(w1, alice["token"])
    bobs_phone = await Device.connect(w2, bob["token"])
    bobs_laptop = await Device.connect(doomed, bob["token"])
    charlies = await Device.connect(doomed, charlie["token"])

    assert [await send(alices, room, f"before {i}") for i in range(3)] == [1, 2, 3]
    assert await send(charlies, room, "charlie from the doomed worker") == 4
    for device in (bobs_phone, bobs_laptop):
        await device.collect("message.new", 4)
    await alices.collect("message.new", 1)
    seen = {"laptop": last_seen(bobs_laptop), "charlie": last_seen(charlies)}
    assert seen == {"laptop": 4, "charlie": 4}

    killed_at = time.monotonic()
    doomed.kill()
    assert doomed.proc.returncode == -9
    assert await connection_lost(bobs_laptop) and await connection_lost(charlies)

    # Messages sent after the kill, through both survivors, arrive live on both.
    assert await send(alices, room, "after the kill, from worker 1") == 5
    first_live = (await bobs_phone.next_frame("message.new"))["message"]["seq"]
    first_live_after = time.monotonic() - killed_at
    assert first_live == 5
    status, posted = service.api("POST", f"/api/rooms/{room}/messages/", bob["token"],
                                 {"body": "after the kill, over http on worker 2", "client_id": "h"}, worker=2)
    assert (status, posted["seq"]) == (201, 6)
    assert await send(alices, room, "still after the kill") == 7
    assert [f["message"]["seq"] for f in await bobs_phone.collect("message.new", 7)] == list(range(1, 8))
    assert [f["message"]["seq"] for f in await alices.collect("message.new", 2)] == [4, 6]

    # The dead worker's devices reconnect to the survivors and resume: the missed ones, in order, once.
    resumed_at = time.monotonic()
    laptop = await Device.connect(w1, bob["token"], start_live=False)
    charlie_again = await Device.connect(w2, charlie["token"], start_live=False)
    await laptop.send({"type": "resume", "rooms": {str(room): seen["laptop"]}})
    await charlie_again.send({"type": "resume", "rooms": {str(room): seen["charlie"]}})
    await laptop.next_frame("resume.done")
    await charlie_again.next_frame("resume.done")
    resume_took = time.monotonic() - resumed_at
    assert seqs(laptop) == [5, 6, 7]
    assert seqs(charlie_again) == [5, 6, 7]

    # And they are live again: the next message comes once, right after what was replayed.
    assert await send(alices, room, "welcome back") == 8
    for device in (laptop, charlie_again, bobs_phone):
        await device.collect("message.new", len(seqs(device)) + 1)
    await alices.send({"type": "ping"})
    await alices.next_frame("pong")
    for device in (laptop, charlie_again):
        await device.send({"type": "ping"})
        await device.next_frame("pong")
    assert seqs(laptop) == [5, 6, 7, 8]
    assert seqs(charlie_again) == [5, 6, 7, 8]
    assert seqs(bobs_phone) == list(range(1, 9))

    for worker in (w1, w2):
        assert worker.health()["redis"] == "up"
        assert "Traceback" not in worker.log_text()
    print(f"\nworker killed: first live delivery {first_live_after * 1000:.0f} ms after the kill; "
          f"two devices reconnected and resumed in {resume_took * 1000:.0f} ms")
    for device in (alices, bobs_phone, laptop, charlie_again):
        await device.close()
