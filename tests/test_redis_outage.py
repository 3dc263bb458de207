"""A Redis restart mid-stream: workers reconnect, and nothing stored is lost."""

import time

import pytest

from tests.live import Device, Service, eventually

pytestmark = pytest.mark.live

RESUBSCRIBE_SECONDS = 5


@pytest.fixture
def service(tmp_path):
    # API throttles on, as in production: their counts live in Redis too.
    service = Service(
        tmp_path, workers=2, extra_env={"CHAT_RATE_LIMITS": "1", "CHAT_DEVICE_MESSAGE_RATE": "1000"}
    ).start()
    yield service
    service.stop()


async def send(device, room, body):
    await device.send({"type": "message.send", "room": room, "body": body, "client_id": body})
    return (await device.next_frame("message.ack"))["message"]["seq"]


def seqs(device):
    return [f["message"]["seq"] for f in device.frames if f["type"] == "message.new"]


async def test_a_redis_restart_loses_nothing_and_delivery_resumes_on_every_worker(service):
    seeded = service.seed(3, "out", room="outage")
    room, (alice, bob, charlie) = seeded["room"], seeded["users"]
    w0, w1 = service.workers
    alices = await Device.connect(w0, alice["token"])
    charlies = await Device.connect(w0, charlie["token"])
    bobs = await Device.connect(w1, bob["token"])
    bobs_laptop = await Device.connect(w1, bob["token"])

    assert [await send(alices, room, f"before {i}") for i in range(3)] == [1, 2, 3]
    await bobs_laptop.collect("message.new", 3)
    await bobs_laptop.close()  # it comes back after the outage and resumes

    service.redis.stop()
    for worker in (w0, w1):
        await eventually(lambda: worker.health()["redis"] == "down", what="the worker to see Redis gone")
    # Stored while Redis is away: the WebSocket sender gets its ack, the HTTP sender its 201.
    assert [await send(alices, room, f"during {i}") for i in range(2)] == [4, 5]
    status, posted = service.api("POST", f"/api/rooms/{room}/messages/", bob["token"], {"body": "during, over http"},
                                 worker=1)
    assert (status, posted["seq"]) == (201, 6)
    assert await send(alices, room, "during 2") == 7

    service.redis.start()
    back_at = time.monotonic()
    # Both workers resubscribe within 5 s of Redis coming back (counted from then, for both).
    await eventually(lambda: all(w.health()["redis"] == "up" for w in (w0, w1)), timeout=RESUBSCRIBE_SECONDS,
                     what="both workers to resubscribe")
    resubscribed_in = time.monotonic() - back_at
    for worker in (w0, w1):
        assert worker.health()["counters"]["reconnects"] >= 1

    # What was stored meanwhile reaches the devices connected on both workers without another message.
    for device in (bobs, charlies):
        assert [f["message"]["seq"] for f in await device.collect("message.new", 7, timeout=15)] == list(range(1, 8))
    # Sent after the restart from both workers: live on every worker.
    assert await send(alices, room, "after, from worker 0") == 8
    assert await send(bobs, room, "after, from worker 1") == 9
    assert await send(charlies, room, "after, from worker 0 again") == 10
    assert [f["message"]["seq"] for f in await bobs.collect("message.new", 9, timeout=15)] == [
        1, 2, 3, 4, 5, 6, 7, 8, 10
    ]
    assert [f["message"]["seq"] for f in await charlies.collect("message.new", 9, timeout=15)] == list(range(1, 10))
    # Alice's sending device gets the others' messages; her own live one (8) only as its ack. Her
    # messages stored while Redis was away (4, 5, 7) come back as message.new too when the workers
    # read them back from the database, which knows no sending device: allowed, once and in order.
    while 10 not in seqs(alices):
        await alices.next_frame("message.new", timeout=15)
    await alices.send({"type": "ping"})
    await alices.next_frame("pong")
    assert seqs(alices) == sorted(set(seqs(alices))) and {6, 9, 10} <= set(seqs(alices)) <= {4, 5, 6, 7, 9, 10}

    # Bob's laptop, away since seq 3, comes back on the other worker and resumes: 4..10, in order, once.
    laptop = await Device.connect(w0, bob["token"], start_live=False)
    await laptop.send({"type": "resume", "rooms": {str(room): 3}})
    await laptop.next_frame("resume.done")
    assert seqs(laptop) == list(range(4, 11))
    # A device that resumes from nothing gets all ten.
    again = await Device.connect(w1, charlie["token"], start_live=False)
    await again.send({"type": "resume", "rooms": {str(room): 0}})
    await again.next_frame("resume.done")
    assert seqs(again) == list(range(1, 11))

    for worker in (w0, w1):
        log = worker.log_text()
        assert "Traceback" not in log and "Internal Server Error" not in log, log[-3000:]
    print(f"\nredis restart: both workers resubscribed {resubscribed_in * 1000:.0f} ms after Redis was back")
    for device in (alices, charlies, bobs, laptop, again):
        await device.close()


async def test_posting_over_http_while_redis_is_down_stores_the_message_and_never_answers_500(service):
    seeded = service.seed(2, "down", room="down")
    room, (alice, bob) = seeded["room"], seeded["users"]
    service.redis.stop()
    statuses = []
    for worker in (0, 1):
        for i in range(3):
            status, headers, body = service.call(
                "POST", f"/api/rooms/{room}/messages/", alice["token"], {"body": f"{worker}-{i}"}, worker=worker
            )
            statuses.append(status)
            assert status in (201, 503), (status, body)
            if status == 503:
                assert headers["Retry-After"] and set(body) == {"detail"}
    # Our choice: the database is up, so the message is stored (the throttle lets it through uncounted).
    assert statuses == [201] * 6
    service.redis.start()
    await eventually(lambda: service.workers[1].health()["redis"] == "up", timeout=RESUBSCRIBE_SECONDS,
                     what="worker 1 to resubscribe")
    bobs = await Device.connect(service.workers[1], bob["token"], start_live=False)
    await bobs.send({"type": "resume", "rooms": {str(room): 0}})
    await bobs.next_frame("resume.done")
    assert [f["message"]["body"] for f in bobs.frames if f["type"] == "message.new"] == [
        "0-0", "0-1", "0-2", "1-0", "1-1", "1-2"
    ]
    await bobs.close()
