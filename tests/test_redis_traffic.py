"""Redis work per message does not grow with the room: one publish, a few bytes more.

The stock way (channels_redis, one group per room) was measured at the same
25 commands for both sizes but 8 KB per message for 10 members and 389 KB for
1,000. Here every member is connected, over two workers.
"""

import asyncio

import pytest
import redis

from tests.live import Device, Service

pytestmark = pytest.mark.live

MESSAGES = 20
NOT_COUNTED = {"ping", "info", "client", "hello", "subscribe", "config"}


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    # The presence heartbeat is traffic per 10 s, not per message: out of the way, so
    # that no heartbeat falling into a window makes the count flaky.
    service = Service(
        tmp_path_factory.mktemp("traffic"), workers=2, extra_env={"CHAT_PRESENCE_INTERVAL": "3600"}
    ).start()
    yield service
    service.stop()


def redis_counts(client):
    commands = sum(
        stats["calls"] for name, stats in client.info("commandstats").items()
        if name.removeprefix("cmdstat_") not in NOT_COUNTED
    )
    net = client.info("stats")
    return commands, net["total_net_input_bytes"] + net["total_net_output_bytes"]


async def per_message_traffic(service, size, prefix):
    seeded = service.seed(size, prefix, room=f"room of {size}")
    room, users = seeded["room"], seeded["users"]
    devices = await asyncio.gather(
        *(Device.connect(service.workers[i % 2], user["token"]) for i, user in enumerate(users))
    )
    client = redis.Redis.from_url(service.redis.url)
    before = redis_counts(client)
    sender = devices[0]
    for i in range(MESSAGES):
        await sender.send({"type": "message.send", "room": room, "body": f"message {i:04d}", "client_id": str(i)})
        await sender.next_frame("message.ack")
    # Every other device has every message: the fan-out is over.
    await asyncio.gather(*(d.collect("message.new", MESSAGES, timeout=60) for d in devices[1:]))
    after = redis_counts(client)
    await asyncio.gather(*(d.close() for d in devices))
    return (after[0] - before[0]) / MESSAGES, (after[1] - before[1]) / MESSAGES


async def test_a_room_of_1000_costs_redis_the_same_commands_and_few_more_bytes_than_a_room_of_10(service):
    small_commands, small_bytes = await per_message_traffic(service, 10, "small")
    big_commands, big_bytes = await per_message_traffic(service, 1000, "big")
    print(f"per message: 10 members {small_commands} commands {small_bytes:.0f} B; "
          f"1000 members {big_commands} commands {big_bytes:.0f} B")
    assert small_commands == big_commands == 1
    assert big_bytes <= 4 * small_bytes
