"""Several Redis servers: each room lives on one shard; every worker hears every shard."""

import pytest
import redis

from tests.live import Device, Service

pytestmark = pytest.mark.live

ROOMS = 6


@pytest.fixture
def service(tmp_path):
    service = Service(tmp_path, workers=2, shards=2).start()
    yield service
    service.stop()


def publishes(shard):
    return redis.Redis.from_url(shard.url).info("commandstats").get("cmdstat_publish", {}).get("calls", 0)


async def test_rooms_spread_over_two_shards_and_each_room_keeps_its_order_on_every_worker(service):
    seeded = [service.seed(2, f"sh{r}-", room=f"shard room {r}") for r in range(ROOMS)]
    before = [publishes(shard) for shard in service.shards]
    for n, room in enumerate(seeded):
        sender_user, reader_user = room["users"]
        sender = await Device.connect(service.workers[n % 2], sender_user["token"])
        reader = await Device.connect(service.workers[(n + 1) % 2], reader_user["token"])
        for i in range(5):
            await sender.send({"type": "message.send", "room": room["room"], "body": str(i), "client_id": str(i)})
        frames = await reader.collect("message.new", 5)
        assert [f["message"]["seq"] for f in frames] == [1, 2, 3, 4, 5]
        await sender.close()
        await reader.close()
    used = [publishes(shard) - b for shard, b in zip(service.shards, before)]
    assert all(count > 0 for count in used), used
    assert sum(used) == ROOMS * 5
