"""A device that stops reading is closed with 4008; nobody else waits for it."""

import asyncio
import time

import pytest

from tests.live import Device, Service, StalledDevice, eventually

pytestmark = pytest.mark.live

MESSAGES = 1500
BATCH = 20
BODY = "x" * 3900


@pytest.fixture(params=["daphne", "uvicorn"])
def service(request, tmp_path):
    service = Service(
        tmp_path,
        workers=2,
        server=request.param,
        # Short server pings, so the stalled connection's end comes soon after its 4008.
        server_args=["--ws-ping-interval", "2", "--ws-ping-timeout", "2"] if request.param == "uvicorn"
        else ["--ping-interval", "2", "--ping-timeout", "2"],
        extra_env={"CHAT_DEVICE_MAX_FRAMES": "100", "CHAT_DEVICE_MAX_BYTES": str(256 * 1024)},
    ).start()
    yield service
    service.stop()


async def test_a_stalled_device_is_closed_with_4008_while_a_healthy_one_on_its_worker_gets_everything(service):
    seeded = service.seed(3, "slow", room="slow")
    room, (sender, reader, staller) = seeded["room"], seeded["users"]
    w0, w1 = service.workers
    stalled = StalledDevice(w0, staller["token"])
    healthy = await Device.connect(w0, reader["token"])
    sending = await Device.connect(w1, sender["token"])

    acked_at, received_at = {}, {}

    async def read_healthy():
        while len(received_at) < MESSAGES:
            frame = await healthy.next_frame("message.new", timeout=30)
            received_at[frame["message"]["seq"]] = time.monotonic()

    reader_task = asyncio.ensure_future(read_healthy())
    for batch in range(0, MESSAGES, BATCH):
        for i in range(batch, batch + BATCH):
            await sending.send({"type": "message.send", "room": room, "body": BODY, "client_id": str(i)})
        for _ in range(BATCH):
            ack = await sending.next_frame("message.ack")
            acked_at[ack["message"]["seq"]] = time.monotonic()
    await asyncio.wait_for(reader_task, 60)

    assert sorted(received_at) == list(range(1, MESSAGES + 1))
    # "Promptly": the seed's gather loop froze for minutes here; allow a generous bound.
    worst_lag = max(received_at[seq] - acked_at[seq] for seq in received_at)
    assert worst_lag < 5, f"healthy device lagged {worst_lag:.1f}s behind"
    await eventually(lambda: w0.health()["counters"].get("closed_slow", 0) == 1, timeout=10, what="4008 close")
    # uvicorn cannot flush a close frame into a full socket: its ping time-out ends it.
    await eventually(stalled.connection_ended, timeout=60, what="the stalled connection to end")
    health = w0.health()
    assert health["devices"] == 1, health  # the healthy one is still there
    stalled.close()
    await healthy.close()
    await sending.close()
