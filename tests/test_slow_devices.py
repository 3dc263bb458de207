"""A device that stops reading is closed with 4008; nobody else waits for it."""

import asyncio
import time

import pytest

from tests.live import Device, Service, StalledDevice, eventually

pytestmark = pytest.mark.live

MESSAGES = 1500
BATCH = 20
BODY = "x" * 3900
STALLED = 6  # stalled devices on one worker
# Past what the kernel's socket buffers take (up to 4 MiB each, not in RSS), a worker that
# buffered for the stalled devices would hold about 1.9 MB more each: with daphne's flow
# control switched off, RSS grew by 17.4 MB with these 6. Their bounded outboxes hold
# shared frames, so the growth stays near zero (0.2-0.6 MB measured).
RSS_GROWTH_LIMIT_KIB = 4 * 1024


@pytest.fixture(params=["daphne", "uvicorn"])
def service(request, tmp_path):
    service = Service(
        tmp_path,
        workers=2,
        server=request.param,
        # Short server pings, so the stalled connections' end comes soon after their 4008; not so
        # short that the pings reap them before their outboxes overflow.
        server_args=["--ws-ping-interval", "5", "--ws-ping-timeout", "5"] if request.param == "uvicorn"
        else ["--ping-interval", "5", "--ping-timeout", "5"],
        extra_env={"CHAT_DEVICE_MAX_FRAMES": "100", "CHAT_DEVICE_MAX_BYTES": str(256 * 1024)},
    ).start()
    yield service
    service.stop()


async def test_stalled_devices_are_closed_with_4008_while_a_healthy_one_on_their_worker_gets_everything(service):
    seeded = service.seed(3, "slow", room="slow")
    room, (sender, reader, staller) = seeded["room"], seeded["users"]
    w0, w1 = service.workers
    stalled = [StalledDevice(w0, staller["token"]) for _ in range(STALLED)]
    healthy = await Device.connect(w0, reader["token"])
    sending = await Device.connect(w1, sender["token"])
    await eventually(lambda: w0.health()["devices"] == STALLED + 1, what="every device to attach")
    rss_before = w0.rss_kib()

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
    # Memory stays bounded: the worker did not buffer for the devices that stopped reading.
    rss_after = w0.rss_kib()
    grew = rss_after - rss_before
    print(f"\n{service.server}: worker RSS {rss_before / 1024:.0f} MB -> {rss_after / 1024:.0f} MB "
          f"(+{grew / 1024:.1f} MB) with {STALLED} stalled devices; healthy device worst lag {worst_lag:.2f} s")
    assert grew < RSS_GROWTH_LIMIT_KIB, f"worker RSS grew by {grew / 1024:.1f} MB"
    await eventually(lambda: w0.health()["counters"].get("closed_slow", 0) == STALLED, timeout=10, what="4008 close")
    # A close frame cannot pass a full socket (the client sees the connection end mid-frame):
    # the server's ping time-out ends it.
    for device in stalled:
        await eventually(device.connection_ended, timeout=60, what="the stalled connection to end")
    health = w0.health()
    assert health["devices"] == 1, health  # the healthy one is still there
    for device in stalled:
        device.close()
    await healthy.close()
    await sending.close()
