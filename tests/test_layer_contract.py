"""The fan-out layer honours the Channels layer contract, in-process and over Redis.

These mirror the behaviours channels_redis tests its own layers for: send and
receive, process-local channels, groups, capacity, name rules, flush.
"""

import asyncio

import pytest
import redis
from channels.exceptions import ChannelFull

from chat.fanout.layer import FanoutChannelLayer


def members(room_id):
    return 1, ()


def make_layer(hosts=(), **config):
    return FanoutChannelLayer(hosts=hosts, members=members, backfill=lambda room, after: [], **config)


@pytest.fixture(params=["in-process", "redis"])
async def layers(request):
    """Two layers that stand for two worker processes (the same one in-process)."""
    if request.param == "in-process":
        layer = make_layer()
        yield layer, layer
        return
    url = request.getfixturevalue("redis_server").url
    redis.Redis.from_url(url).flushall()
    first, second = make_layer([url]), make_layer([url])
    yield first, second
    for layer in (first, second):
        await layer.close()


async def subscribed(*layers):
    """Wait until each layer's Redis subscriber is listening."""
    for layer in layers:
        layer._bind()
        link = layer._link
        if link is not None:
            async with asyncio.timeout(5):
                while not all(link.up):
                    await asyncio.sleep(0.01)


async def receive(layer, channel, timeout=3):
    return await asyncio.wait_for(layer.receive(channel), timeout)


async def test_a_message_sent_to_a_process_channel_is_received_once(layers):
    first, second = layers
    channel = await second.new_channel()
    await subscribed(first, second)
    await first.send(channel, {"type": "test.message", "text": "Ahoy-hoy!"})
    assert await receive(second, channel) == {"type": "test.message", "text": "Ahoy-hoy!"}
    with pytest.raises(asyncio.TimeoutError):
        await receive(second, channel, timeout=0.2)


async def test_new_channel_names_are_unique_and_valid(layers):
    first, _ = layers
    names = {await first.new_channel() for _ in range(50)}
    assert len(names) == 50
    assert all(first.match_type_and_length(name) and "!" in name for name in names)


async def test_messages_to_one_channel_keep_their_order(layers):
    first, second = layers
    channel = await second.new_channel()
    await subscribed(first, second)
    for i in range(20):
        await first.send(channel, {"type": "n", "i": i})
    assert [(await receive(second, channel))["i"] for _ in range(20)] == list(range(20))


async def test_group_send_reaches_every_member_on_every_worker_and_not_the_discarded(layers):
    first, second = layers
    a, b, c = await first.new_channel(), await second.new_channel(), await second.new_channel()
    for layer, channel in [(first, a), (second, b), (second, c)]:
        await layer.group_add("room-1", channel)
    await second.group_discard("room-1", c)
    await subscribed(first, second)
    await first.group_send("room-1", {"type": "hello"})
    assert await receive(first, a) == {"type": "hello"}
    assert await receive(second, b) == {"type": "hello"}
    with pytest.raises(asyncio.TimeoutError):
        await receive(second, c, timeout=0.3)


async def test_send_to_a_full_local_channel_raises_channel_full_but_group_send_never_does(layers):
    first, _ = layers
    small = make_layer(capacity=2)
    channel = await small.new_channel()
    await small.send(channel, {"type": "1"})
    await small.send(channel, {"type": "2"})
    with pytest.raises(ChannelFull):
        await small.send(channel, {"type": "3"})
    await small.group_add("g", channel)
    await small.group_send("g", {"type": "dropped"})  # must not raise
    assert (await receive(small, channel))["type"] == "1"


@pytest.mark.parametrize("bad", ["", "spaces are bad", "x" * 200, "ünïcode"])
async def test_invalid_channel_and_group_names_are_refused(bad):
    layer = make_layer()
    with pytest.raises(TypeError):
        await layer.send(bad, {"type": "x"})
    with pytest.raises(TypeError):
        await layer.group_add(bad, await layer.new_channel())


async def test_a_message_must_be_a_dict():
    layer = make_layer()
    with pytest.raises(AssertionError):
        await layer.send(await layer.new_channel(), ["not", "a", "dict"])


async def test_flush_forgets_queued_messages_and_groups():
    layer = make_layer()
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "old"})
    await layer.group_add("g", channel)
    await layer.flush()
    await layer.group_send("g", {"type": "after flush"})
    with pytest.raises(asyncio.TimeoutError):
        await receive(layer, channel, timeout=0.2)


async def test_a_cancelled_receive_loses_no_message(layers):
    first, second = layers
    channel = await second.new_channel()
    await subscribed(first, second)
    waiting = asyncio.ensure_future(second.receive(channel))
    await asyncio.sleep(0)
    waiting.cancel()
    await first.send(channel, {"type": "after cancel"})
    assert await receive(second, channel) == {"type": "after cancel"}


async def test_a_plain_channel_name_works_across_workers(layers):
    first, second = layers
    await subscribed(first, second)
    reader = asyncio.ensure_future(second.receive("thumbnails"))
    if second._link is not None:
        client = second._link._async[0]
        async with asyncio.timeout(5):
            while (await client.pubsub_numsub("chat:channel:thumbnails"))[0][1] < 1:
                await asyncio.sleep(0.01)
    await first.send("thumbnails", {"type": "resize"})
    assert await asyncio.wait_for(reader, 3) == {"type": "resize"}


async def test_the_link_survives_an_idle_period_longer_than_every_time_out(redis_server):
    first = make_layer([redis_server.url], health_check_interval=0.5, socket_timeout=0.5)
    second = make_layer([redis_server.url], health_check_interval=0.5, socket_timeout=0.5)
    channel = await second.new_channel()
    await subscribed(first, second)
    await asyncio.sleep(2.0)  # the idle period itself is what is tested
    assert second.counters["reconnects"] == 0
    await first.send(channel, {"type": "still there"})
    assert await receive(second, channel) == {"type": "still there"}
