"""The /ws/ protocol of the API contract, frame by frame, with the in-process fan-out."""

import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from chat import services
from chat.models import Membership, Message
from chatproject.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


async def connect(user=None, *, headers=None, start_live=True):
    """A device of `user` (by its API token), after its hello."""
    if headers is None:
        key = await sync_to_async(lambda: user.auth_token.key)()
        headers = [(b"authorization", f"Token {key}".encode())]
    device = WebsocketCommunicator(application, "/ws/", headers=headers)
    connected, code = await device.connect()
    assert connected, code
    device.hello = await device.receive_json_from()
    if start_live:
        await device.send_json_to({"type": "ping"})
        assert await device.receive_json_from() == {"type": "pong"}
    return device


async def nothing_more(device):
    """True if the device receives nothing else (after a round trip that would have carried it)."""
    await device.send_json_to({"type": "ping"})
    return await device.receive_json_from() == {"type": "pong"}


async def refused(headers):
    device = WebsocketCommunicator(application, "/ws/", headers=headers)
    connected, code = await device.connect()
    return not connected and code == 4001


post = sync_to_async(services.post_message)


@pytest.fixture
def lobby(alice, bob):
    return services.create_group_room(creator=alice, name="lobby", member_ids=[bob.pk])


@sync_to_async
def session_cookie(user):
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


# Authentication


async def test_a_device_without_credentials_is_refused_before_any_frame():
    assert await refused([])


async def test_a_bad_token_is_refused():
    assert await refused([(b"authorization", b"Token not-a-real-token")])


async def test_alice_connects_with_her_session_cookie_from_an_allowed_origin(alice):
    device = await connect(headers=[(b"cookie", await session_cookie(alice)), (b"origin", b"http://localhost:8000")])
    assert device.hello["user"] == {"id": alice.pk, "username": "alice"}
    await device.disconnect()


async def test_a_cookie_from_a_foreign_origin_or_with_no_origin_is_refused(alice):
    cookie = await session_cookie(alice)
    assert await refused([(b"cookie", cookie), (b"origin", b"https://evil.example")])
    assert await refused([(b"cookie", cookie)])


# hello, message.send, message.new


async def test_hello_lists_the_users_rooms_with_last_seq_and_unread(alice, bob, lobby):
    await post(room_id=lobby.pk, sender=alice, body="one")
    await post(room_id=lobby.pk, sender=alice, body="two")
    device = await connect(bob)
    assert device.hello["type"] == "hello"
    [room] = device.hello["rooms"]
    assert (room["id"], room["name"], room["kind"], room["role"], room["last_seq"], room["unread"]) == (
        lobby.pk, "lobby", "group", "member", 2, 2
    )
    await device.disconnect()


async def test_a_sent_message_is_acked_to_its_device_and_reaches_every_other_device_of_every_member(alice, bob, lobby):
    phone, laptop, bobs = await connect(alice), await connect(alice), await connect(bob)
    await phone.send_json_to({"type": "message.send", "room": lobby.pk, "body": "hi bob", "client_id": "c1"})
    ack = await phone.receive_json_from()
    assert ack["type"] == "message.ack" and ack["client_id"] == "c1"
    assert ack["message"]["seq"] == 1 and ack["message"]["sender"]["username"] == "alice"
    for device in (laptop, bobs):
        frame = await device.receive_json_from()
        assert frame == {"type": "message.new", "message": ack["message"]}
    assert await nothing_more(phone)
    for device in (phone, laptop, bobs):
        await device.disconnect()


async def test_sending_the_same_client_id_twice_stores_and_delivers_once(alice, bob, lobby):
    sender, receiver = await connect(alice), await connect(bob)
    for _ in range(2):
        await sender.send_json_to({"type": "message.send", "room": lobby.pk, "body": "once", "client_id": "same"})
    first, second = await sender.receive_json_from(), await sender.receive_json_from()
    assert first["message"] == second["message"]
    assert (await receiver.receive_json_from())["message"]["id"] == first["message"]["id"]
    assert await nothing_more(receiver)
    assert await Message.objects.acount() == 1
    await sender.disconnect()
    await receiver.disconnect()


# typing and read


async def test_typing_reaches_the_other_members_but_not_the_typist(alice, bob, lobby):
    alices, bobs = await connect(alice), await connect(bob)
    await alices.send_json_to({"type": "typing", "room": lobby.pk})
    assert await bobs.receive_json_from() == {
        "type": "typing", "room": lobby.pk, "user": {"id": alice.pk, "username": "alice"}
    }
    assert await nothing_more(alices)
    await alices.disconnect()
    await bobs.disconnect()


async def test_typing_beyond_the_rate_is_dropped_quietly(alice, bob, lobby, settings):
    settings.CHAT_DEVICE_TYPING_RATE = 2
    alices, bobs = await connect(alice), await connect(bob)
    for _ in range(5):
        await alices.send_json_to({"type": "typing", "room": lobby.pk})
    assert [(await bobs.receive_json_from())["type"] for _ in range(2)] == ["typing", "typing"]
    assert await nothing_more(bobs)
    assert await nothing_more(alices)
    await alices.disconnect()
    await bobs.disconnect()


async def test_reading_on_one_device_moves_the_marker_and_tells_the_users_other_devices(alice, bob, lobby):
    for i in range(3):
        await post(room_id=lobby.pk, sender=alice, body=f"m{i}")
    phone, laptop = await connect(bob), await connect(bob)
    await phone.send_json_to({"type": "read", "room": lobby.pk, "seq": 2})
    assert await laptop.receive_json_from() == {"type": "read", "room": lobby.pk, "seq": 2}
    assert (await Membership.objects.aget(room=lobby, user=bob)).last_read_seq == 2
    await phone.disconnect()
    await laptop.disconnect()


# membership changes


async def test_an_added_member_gets_room_joined_and_the_very_next_message(alice, bob, charlie, lobby):
    alices, charlies = await connect(alice), await connect(charlie)
    await sync_to_async(services.add_members)(room=lobby, user_ids=[charlie.pk])
    joined = await charlies.receive_json_from()
    assert joined["type"] == "room.joined" and joined["room"]["id"] == lobby.pk and joined["room"]["role"] == "member"
    await alices.send_json_to({"type": "message.send", "room": lobby.pk, "body": "welcome", "client_id": "w"})
    assert (await charlies.receive_json_from())["message"]["body"] == "welcome"
    await alices.disconnect()
    await charlies.disconnect()


async def test_a_removed_member_gets_room_left_and_nothing_more_from_the_room(alice, bob, lobby):
    alices, bobs = await connect(alice), await connect(bob)
    await sync_to_async(services.remove_member)(room=lobby, user_id=bob.pk)
    assert await bobs.receive_json_from() == {"type": "room.left", "room": lobby.pk}
    await alices.send_json_to({"type": "message.send", "room": lobby.pk, "body": "secret", "client_id": "s"})
    await alices.receive_json_from()  # the ack
    assert await nothing_more(bobs)
    await bobs.send_json_to({"type": "message.send", "room": lobby.pk, "body": "still here?", "client_id": "x"})
    error = await bobs.receive_json_from()
    assert (error["type"], error["code"], error["ref"]) == ("error", "not_member", "x")
    await alices.disconnect()
    await bobs.disconnect()


# resume


async def test_resume_replays_what_was_missed_in_order_then_says_done(alice, bob, lobby):
    for i in range(5):
        await post(room_id=lobby.pk, sender=alice, body=f"m{i}")
    device = await connect(bob, start_live=False)
    await device.send_json_to({"type": "resume", "rooms": {str(lobby.pk): 2}})
    frames = [await device.receive_json_from() for _ in range(4)]
    assert [f["message"]["seq"] for f in frames[:3]] == [3, 4, 5]
    assert frames[3] == {"type": "resume.done"}
    await device.disconnect()


async def test_a_message_sent_during_a_resume_arrives_once_and_after_the_replay(alice, bob, lobby):
    for i in range(3):
        await post(room_id=lobby.pk, sender=alice, body=f"m{i}")
    bobs = await connect(bob, start_live=False)
    alices = await connect(alice)
    await alices.send_json_to({"type": "message.send", "room": lobby.pk, "body": "live", "client_id": "l"})
    await alices.receive_json_from()
    await bobs.send_json_to({"type": "resume", "rooms": {str(lobby.pk): 0}})
    frames = []
    while not frames or frames[-1]["type"] != "resume.done":
        frames.append(await bobs.receive_json_from())
    seqs = [f["message"]["seq"] for f in frames if f["type"] == "message.new"]
    assert seqs == [1, 2, 3, 4]
    assert await nothing_more(bobs)
    await alices.disconnect()
    await bobs.disconnect()


async def test_a_long_absence_is_replayed_in_full_without_being_taken_for_a_slow_device(alice, bob, lobby, settings):
    from channels.layers import channel_layers

    settings.CHANNEL_LAYERS = {
        "default": {**settings.CHANNEL_LAYERS["default"], "CONFIG": {
            **settings.CHANNEL_LAYERS["default"]["CONFIG"], "device_max_frames": 50}}
    }
    channel_layers.backends.pop("default", None)
    await sync_to_async(lambda: [services.post_message(room_id=lobby.pk, sender=alice, body=str(i)) for i in range(300)])()
    device = await connect(bob, start_live=False)
    await device.send_json_to({"type": "resume", "rooms": {str(lobby.pk): 0}})
    seqs = []
    while True:
        frame = await device.receive_json_from()
        if frame["type"] == "resume.done":
            break
        seqs.append(frame["message"]["seq"])
    assert seqs == list(range(1, 301))
    await device.disconnect()


async def test_resume_of_a_room_charlie_is_not_in_is_refused_and_replays_nothing(alice, charlie, lobby):
    await post(room_id=lobby.pk, sender=alice, body="private")
    device = await connect(charlie)
    await device.send_json_to({"type": "resume", "rooms": {str(lobby.pk): 0}})
    error = await device.receive_json_from()
    assert (error["type"], error["code"]) == ("error", "not_member")
    assert await device.receive_json_from() == {"type": "resume.done"}
    await device.disconnect()


# bad input


@pytest.mark.parametrize(
    "raw, code",
    [
        ("not json", "invalid"),
        ("[1, 2]", "invalid"),
        ('"a string"', "invalid"),
        ("{}", "unknown_type"),
        ('{"type": "launch.missiles"}', "unknown_type"),
        ('{"type": 7}', "unknown_type"),
        ('{"type": "message.send", "room": "one", "body": "x"}', "invalid"),
        ('{"type": "message.send", "room": -1, "body": "x"}', "invalid"),
        ('{"type": "message.send", "room": 1, "body": 5}', "invalid"),
        ('{"type": "read", "room": 1, "seq": "ten"}', "invalid"),
        ('{"type": "resume", "rooms": [1]}', "invalid"),
        ('{"type": "resume", "rooms": {"abc": 1}}', "invalid"),
    ],
)
async def test_a_malformed_frame_gets_an_error_and_the_connection_stays_open(alice, lobby, raw, code):
    device = await connect(alice)
    await device.send_to(text_data=raw)
    error = await device.receive_json_from()
    assert (error["type"], error["code"]) == ("error", code)
    assert await nothing_more(device)
    await device.disconnect()


async def test_charlie_cannot_send_to_alices_room_and_nothing_is_stored(charlie, lobby):
    device = await connect(charlie)
    await device.send_json_to({"type": "message.send", "room": lobby.pk, "body": "hi", "client_id": "c"})
    assert await device.receive_json_from() == {
        "type": "error", "code": "not_member", "detail": "Not a member of this room.", "ref": "c"
    }
    assert await Message.objects.acount() == 0
    await device.disconnect()


async def test_a_body_over_4000_characters_is_too_large(alice, lobby):
    device = await connect(alice)
    await device.send_json_to({"type": "message.send", "room": lobby.pk, "body": "x" * 4001, "client_id": "big"})
    error = await device.receive_json_from()
    assert (error["code"], error["ref"]) == ("too_large", "big")
    assert await Message.objects.acount() == 0
    await device.disconnect()


async def test_a_frame_over_64_kib_closes_with_1009_and_other_devices_do_not_notice(alice, bob, lobby):
    big, other = await connect(alice), await connect(bob)
    await big.send_to(text_data=json.dumps({"type": "ping", "pad": "x" * 70_000}))
    assert (await big.receive_output())["code"] == 1009
    assert await nothing_more(other)
    await other.disconnect()


async def test_binary_frames_are_refused(alice):
    device = await connect(alice)
    await device.send_to(bytes_data=b"\x00\x01")
    assert (await device.receive_json_from())["code"] == "invalid"
    await device.disconnect()


async def test_sending_faster_than_the_rate_is_refused_with_rate_limited(alice, lobby, settings):
    settings.CHAT_DEVICE_MESSAGE_RATE = 3
    device = await connect(alice)
    for i in range(4):
        await device.send_json_to({"type": "message.send", "room": lobby.pk, "body": "spam", "client_id": str(i)})
    frames = [await device.receive_json_from() for _ in range(4)]
    assert [f["type"] for f in frames] == ["message.ack"] * 3 + ["error"]
    assert (frames[3]["code"], frames[3]["ref"]) == ("rate_limited", "3")
    assert await Message.objects.acount() == 3
    await device.disconnect()


async def test_with_rate_limits_off_nothing_is_refused_for_speed(alice, lobby, settings):
    settings.CHAT_DEVICE_MESSAGE_RATE = 3
    settings.RATE_LIMITS = False
    device = await connect(alice)
    for i in range(6):
        await device.send_json_to({"type": "message.send", "room": lobby.pk, "body": "fast", "client_id": str(i)})
    frames = [await device.receive_json_from() for _ in range(6)]
    assert {f["type"] for f in frames} == {"message.ack"}
    await device.disconnect()
