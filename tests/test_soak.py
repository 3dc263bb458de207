"""A soak: two workers, 200+ devices in one room, a steady message rate for a minute.

Every device must get every message once, in strictly increasing seq; no
server error anywhere; and the workers' memory must stay flat. The figures
are printed for the CI log. `CHAT_SOAK_SECONDS` sets the length (default 60).
"""

import asyncio
import json
import os
import statistics
import time

import pytest
import websockets

from tests.live import Device, Service, eventually

pytestmark = pytest.mark.live

SECONDS = float(os.environ.get("CHAT_SOAK_SECONDS", "60"))
USERS = 105  # x 2 devices each = 210 devices, one of each user's on each worker
WS_SENDERS = 4
RATE = 20.0  # messages per second in all: 4 WebSocket senders and 1 over HTTP, 4/s each
WARM_UP = max(5.0, SECONDS / 10)  # RSS samples before this are not compared
RSS_DRIFT_LIMIT_KIB = 20 * 1024


@pytest.fixture
def service(tmp_path):
    # DEBUG off, as in production: with it on, Django keeps a log of up to 9,000 queries per
    # connection, which grows the RSS for a while and would blur the picture.
    production = {"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "soak-test-only-" + "x" * 40,
                  "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost"}
    service = Service(tmp_path, workers=2, extra_env=production).start()
    yield service
    service.stop()


class Tally:
    """What one device received; kept lean: 200 of them read 4,000 frames a second together."""

    def __init__(self, name, ws):
        self.name = name
        self.ws = ws
        self.seqs = []
        self.acked = set()
        self.errors = []
        self.out_of_order = 0
        self.ended = None  # why the connection ended, if it did before the test closed it


async def read(tally, sent_at, latencies):
    last = 0
    try:
        async for raw in tally.ws:
            frame = json.loads(raw)
            kind = frame["type"]
            if kind == "message.new":
                message = frame["message"]
                if message["seq"] <= last:
                    tally.out_of_order += 1
                last = max(last, message["seq"])
                tally.seqs.append(message["seq"])
                latencies.append(time.monotonic() - sent_at[message["client_id"]])
            elif kind == "message.ack":
                tally.acked.add(frame["message"]["seq"])
            elif kind == "error":
                tally.errors.append(frame)
        tally.ended = f"closed {tally.ws.close_code}"
    except websockets.ConnectionClosed as error:
        tally.ended = repr(error)


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@pytest.mark.timeout(SECONDS + 300)
async def test_two_hundred_devices_get_every_message_in_order_for_a_minute_with_flat_memory(service):
    seeded = service.seed(USERS, "soak", room="soak")
    room, users = seeded["room"], seeded["users"]
    alice, bob, charlie, dave, erin = users[:5]
    w0, w1 = service.workers

    # Two devices per user, one on each worker (users named by position: alice is users[0]).
    places = [(user, k) for user in users for k in (0, 1)]
    tallies = []
    for start in range(0, len(places), 40):
        batch = places[start:start + 40]
        devices = await asyncio.gather(*(Device.connect(service.workers[k], user["token"]) for user, k in batch))
        tallies += [Tally(f"{user['username']}@{k}", device.ws) for (user, k), device in zip(batch, devices)]
    assert len(tallies) >= 200
    await eventually(lambda: w0.health()["devices"] + w1.health()["devices"] == len(tallies), what="all devices")

    sent_at, latencies = {}, []
    readers = [asyncio.ensure_future(read(t, sent_at, latencies)) for t in tallies]
    by_name = {t.name: t for t in tallies}
    # Alice and Charlie send from worker 0, Bob and Dave from worker 1; Erin posts over HTTP to both.
    senders = [by_name[f"{user['username']}@{i % 2}"] for i, user in enumerate((alice, bob, charlie, dave))]
    interval = (WS_SENDERS + 1) / RATE
    rss = {0: [], 1: []}
    http_statuses = []
    started = time.monotonic()
    stop_at = started + SECONDS

    async def send_ws(n, tally):
        i, next_at = 0, started + n * interval / (WS_SENDERS + 1)
        while next_at < stop_at:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))  # pacing the rate, not waiting for an event
            client_id = f"{tally.name}-{i}"
            sent_at[client_id] = time.monotonic()
            await tally.ws.send(json.dumps({"type": "message.send", "room": room, "body": client_id,
                                            "client_id": client_id}))
            i, next_at = i + 1, next_at + interval

    async def post_http():
        i, next_at = 0, started + WS_SENDERS * interval / (WS_SENDERS + 1)
        while next_at < stop_at:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            client_id = f"erin-http-{i}"
            sent_at[client_id] = time.monotonic()
            status, _ = await asyncio.to_thread(
                service.api, "POST", f"/api/rooms/{room}/messages/", erin["token"],
                {"body": client_id, "client_id": client_id}, i % 2,
            )
            http_statuses.append(status)
            i, next_at = i + 1, next_at + interval

    async def sample_rss():
        while time.monotonic() < stop_at:
            now = time.monotonic() - started
            for k, worker in enumerate(service.workers):
                rss[k].append((now, worker.rss_kib()))
            await asyncio.sleep(1.0)  # a sampling period

    await asyncio.gather(*(send_ws(n, t) for n, t in enumerate(senders)), post_http(), sample_rss())
    sent = len(sent_at)

    def acked_all():
        return sum(len(t.acked) for t in senders) + http_statuses.count(201) >= sent

    def delivered_all():
        return all(len(t.seqs) + len(t.acked) >= sent or t.ended for t in tallies)

    await eventually(acked_all, timeout=60, what="every send to be acked")
    await eventually(delivered_all, timeout=60, what="every device to get every message")
    drained_in = time.monotonic() - stop_at

    health = [w.health() for w in service.workers]
    ended_early = [(t.name, t.ended) for t in tallies if t.ended]
    for t in tallies:
        await t.ws.close()
    await asyncio.gather(*readers)
    assert ended_early == []

    # Every message stored once, with seq 1..N.
    acked = sorted(seq for t in senders for seq in t.acked)
    assert len(acked) + len(http_statuses) == sent
    assert all(status == 201 for status in http_statuses), sorted(set(http_statuses))
    everything = list(range(1, sent + 1))
    # Every device: all of them but its own sends, in strictly increasing seq, once; no error, no drop.
    lost = 0
    for t in tallies:
        expected = [seq for seq in everything if seq not in t.acked]
        lost += len(set(expected) - set(t.seqs))
        assert t.errors == [], (t.name, t.errors[:3])
        assert t.out_of_order == 0, t.name
        assert t.seqs == expected, t.name
    deliveries = sum(len(t.seqs) for t in tallies)
    # Each message reaches every device but the one that sent it (HTTP posts have none).
    assert lost == 0 and deliveries == sent * len(tallies) - len(acked)
    for h in health:
        assert h["redis"] == "up"
        assert h["counters"].get("closed_slow", 0) == 0 and h["counters"].get("publish_errors", 0) == 0, h
    for worker in service.workers:
        log = worker.log_text()
        assert "Traceback" not in log and "Internal Server Error" not in log, log[-3000:]

    # Memory is flat: after the warm-up, the last third's average is within 20 MB of the first third's.
    drift = {}
    for k, samples in rss.items():
        steady = [kib for at, kib in samples if at >= WARM_UP]
        third = max(1, len(steady) // 3)
        first, last = statistics.mean(steady[:third]), statistics.mean(steady[-third:])
        drift[k] = (samples[0][1], first, last, samples[-1][1])
    print(
        f"\nsoak: {SECONDS:.0f} s, {len(tallies)} devices on 2 workers, {sent} messages "
        f"({sent / SECONDS:.1f}/s; {len(http_statuses)} over HTTP), {deliveries} deliveries, 0 lost, "
        f"all drained {drained_in:.2f} s after the last send\n"
        f"soak: latency send to delivery p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms"
    )
    for k, (start, first, last, end) in drift.items():
        print(f"soak: worker {k} RSS start {start / 1024:.1f} MB, first third {first / 1024:.1f} MB, "
              f"last third {last / 1024:.1f} MB, end {end / 1024:.1f} MB")
    for k, (_, first, last, _) in drift.items():
        assert last - first < RSS_DRIFT_LIMIT_KIB, f"worker {k} RSS grew {(last - first) / 1024:.1f} MB"
