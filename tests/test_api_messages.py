"""Messages over HTTP: send (idempotent, fanned out), history pages, read markers."""

from datetime import datetime

import pytest
from channels.layers import get_channel_layer

from chat import events, services
from chat.models import Membership, Message

from .api_conftest import (  # noqa: F401
    alice_api,
    api,
    bob_api,
    charlie_api,
    client_for,
    fresh_throttles,
    lobby,
    messages_url,
    say,
)

pytestmark = pytest.mark.django_db

MESSAGE_KEYS = {"id", "room", "seq", "sender", "body", "client_id", "created_at"}


def seqs(reply):
    return [m["seq"] for m in reply.json()["results"]]


def unread(client, room):
    return client.get(f"/api/rooms/{room.pk}/").json()["unread"]


# Sending


def test_bob_sends_a_message_shaped_as_over_the_websocket(bob_api, lobby, bob):
    reply = bob_api.post(messages_url(lobby), {"body": "  hello  ", "client_id": "c-1"}, format="json")

    assert reply.status_code == 201
    body = reply.json()
    assert set(body) == MESSAGE_KEYS
    stored = Message.objects.get()
    assert body == events.message_data(stored)
    assert (body["room"], body["seq"], body["body"], body["client_id"]) == (lobby.pk, 1, "hello", "c-1")
    assert body["sender"] == {"id": bob.pk, "username": "bob"}
    assert datetime.fromisoformat(body["created_at"]).tzinfo is not None


def test_messages_are_numbered_one_two_three(alice_api, bob_api, lobby):
    sent = [
        alice_api.post(messages_url(lobby), {"body": "one"}, format="json"),
        bob_api.post(messages_url(lobby), {"body": "two"}, format="json"),
        alice_api.post(messages_url(lobby), {"body": "three", "client_id": None}, format="json"),
    ]

    assert [r.json()["seq"] for r in sent] == [1, 2, 3]
    assert all(r.json()["client_id"] is None for r in sent)


def test_an_http_message_is_fanned_out_like_a_websocket_send(
    bob_api, lobby, monkeypatch, django_capture_on_commit_callbacks
):
    published = []
    monkeypatch.setattr(
        get_channel_layer(), "publish_to_room", lambda room_id, event, **kw: published.append((room_id, event, kw))
    )

    with django_capture_on_commit_callbacks(execute=True):
        reply = bob_api.post(messages_url(lobby), {"body": "to everyone"}, format="json")

    assert len(published) == 1
    room_id, event, options = published[0]
    assert room_id == lobby.pk
    assert event == {"type": "message.new", "message": reply.json()}
    # No device of the sender is skipped: HTTP has no device to ack instead.
    assert options["exclude"] is None
    assert options["seq"] == 1


def test_a_repeated_client_id_returns_the_first_message(bob_api, lobby, monkeypatch, django_capture_on_commit_callbacks):
    first = bob_api.post(messages_url(lobby), {"body": "once", "client_id": "k1"}, format="json")
    published = []
    monkeypatch.setattr(get_channel_layer(), "publish_to_room", lambda *a, **kw: published.append(a))

    with django_capture_on_commit_callbacks(execute=True):
        again = bob_api.post(messages_url(lobby), {"body": "a retry, maybe edited", "client_id": "k1"}, format="json")

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json() == first.json()
    assert Message.objects.count() == 1
    assert published == []


def test_client_ids_belong_to_one_sender_in_one_room(alice_api, bob_api, lobby, alice):
    other = services.create_group_room(creator=alice, name="Other")

    replies = [
        bob_api.post(messages_url(lobby), {"body": "bob", "client_id": "same"}, format="json"),
        alice_api.post(messages_url(lobby), {"body": "alice", "client_id": "same"}, format="json"),
        alice_api.post(messages_url(other), {"body": "elsewhere", "client_id": "same"}, format="json"),
    ]

    assert [r.status_code for r in replies] == [201, 201, 201]
    assert Message.objects.count() == 3


def test_a_client_id_is_compared_exactly(bob_api, lobby):
    bob_api.post(messages_url(lobby), {"body": "one", "client_id": "k"}, format="json")

    reply = bob_api.post(messages_url(lobby), {"body": "two", "client_id": " k "}, format="json")

    assert reply.status_code == 201
    assert reply.json()["client_id"] == " k "


@pytest.mark.parametrize(
    "payload, field",
    [
        ({}, "body"),
        ({"body": ""}, "body"),
        ({"body": " \n\t "}, "body"),
        ({"body": "x" * 4001}, "body"),
        ({"body": 42}, "body"),
        ({"body": None}, "body"),
        ({"body": ["hi"]}, "body"),
        ({"body": "a\x00b"}, "body"),
        ({"body": "hi", "client_id": "c" * 65}, "client_id"),
        ({"body": "hi", "client_id": 7}, "client_id"),
    ],
    ids=["missing", "empty", "blank", "too-long", "number", "null", "list", "nul-char", "long-client-id", "number-client-id"],
)
def test_send_refuses_a_bad_message_with_json_400(bob_api, lobby, payload, field):
    reply = bob_api.post(messages_url(lobby), payload, format="json")

    assert reply.status_code == 400
    assert list(reply.json()) == [field]
    assert isinstance(reply.json()[field], list)
    assert not Message.objects.exists()


def test_a_body_counts_its_length_after_trimming(bob_api, lobby):
    reply = bob_api.post(messages_url(lobby), {"body": "\n  " + "x" * 4000 + "  \n"}, format="json")

    assert reply.status_code == 201
    assert len(reply.json()["body"]) == 4000


def test_send_refuses_broken_json(bob_api, lobby):
    assert bob_api.post(messages_url(lobby), '{"body": ', content_type="application/json").status_code == 400
    assert bob_api.post(messages_url(lobby), '"just a string"', content_type="application/json").status_code == 400
    assert not Message.objects.exists()


def test_charlie_cannot_post_to_alices_room(charlie_api, lobby):
    reply = charlie_api.post(messages_url(lobby), {"body": "let me in"}, format="json")

    assert reply.status_code == 404
    assert not Message.objects.exists()


def test_nobody_posts_to_a_room_that_does_not_exist(alice_api):
    assert alice_api.post("/api/rooms/999999/messages/", {"body": "hello?"}, format="json").status_code == 404


def test_a_removed_member_can_no_longer_post(bob_api, lobby, bob):
    services.remove_member(room=lobby, user_id=bob.pk)

    assert bob_api.post(messages_url(lobby), {"body": "still here?"}, format="json").status_code == 404
    assert not Message.objects.exists()


def test_ones_own_message_counts_as_read(alice_api, bob_api, lobby):
    alice_api.post(messages_url(lobby), {"body": "mine"}, format="json")

    assert unread(alice_api, lobby) == 0
    assert unread(bob_api, lobby) == 1


# History


@pytest.fixture
def sixty(lobby, alice):
    """The lobby with messages seq 1 to 60."""
    Message.objects.bulk_create(Message(room=lobby, seq=seq, sender=alice, body=f"m{seq}") for seq in range(1, 61))
    lobby.last_seq = 60
    lobby.save(update_fields=["last_seq"])
    return lobby


def test_history_without_parameters_is_the_latest_fifty_ascending(bob_api, sixty):
    reply = bob_api.get(messages_url(sixty))

    assert reply.status_code == 200
    assert set(reply.json()) == {"results", "has_more"}
    assert seqs(reply) == list(range(11, 61))
    assert reply.json()["has_more"] is True
    assert set(reply.json()["results"][0]) == MESSAGE_KEYS


@pytest.mark.parametrize(
    "query, expected, has_more",
    [
        ({"after": 0, "limit": 10}, range(1, 11), True),
        ({"after": 49, "limit": 10}, range(50, 60), True),
        ({"after": 50, "limit": 10}, range(51, 61), False),
        ({"after": 55, "limit": 10}, range(56, 61), False),
        ({"after": 60}, [], False),
        ({"after": 1000}, [], False),
        ({"before": 11, "limit": 10}, range(1, 11), False),
        ({"before": 12, "limit": 10}, range(2, 12), True),
        ({"before": 5}, range(1, 5), False),
        ({"before": 1}, [], False),
        ({"before": 0}, [], False),
        ({"before": 1000, "limit": 3}, range(58, 61), True),
        ({"limit": 60}, range(1, 61), False),
        ({"limit": 59}, range(2, 61), True),
        ({"limit": 1}, [60], True),
        ({"limit": 200}, range(1, 61), False),
    ],
)
def test_history_pages_end_exactly_where_asked(bob_api, sixty, query, expected, has_more):
    reply = bob_api.get(messages_url(sixty, **query))

    assert reply.status_code == 200
    assert seqs(reply) == list(expected)
    assert reply.json()["has_more"] is has_more


def test_walking_back_with_before_visits_every_message_once(bob_api, sixty):
    seen, before = [], None
    while True:
        query = {"limit": 25} if before is None else {"before": before, "limit": 25}
        page = bob_api.get(messages_url(sixty, **query)).json()
        seen = [m["seq"] for m in page["results"]] + seen
        if not page["has_more"]:
            break
        before = page["results"][0]["seq"]

    assert seen == list(range(1, 61))


def test_an_empty_parameter_counts_as_not_given(bob_api, sixty):
    reply = bob_api.get(messages_url(sixty, limit="", after=""))

    assert seqs(reply) == list(range(11, 61))


def test_an_empty_room_has_an_empty_history(alice_api, lobby):
    assert alice_api.get(messages_url(lobby)).json() == {"results": [], "has_more": False}


@pytest.mark.parametrize(
    "query, field",
    [
        ({"limit": 0}, "limit"),
        ({"limit": -1}, "limit"),
        ({"limit": 201}, "limit"),
        ({"limit": 10**40}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "1.5"}, "limit"),
        ({"after": -1}, "after"),
        ({"after": "x"}, "after"),
        ({"after": 10**19}, "after"),
        ({"before": -5}, "before"),
        ({"before": "1e3"}, "before"),
        ({"before": 10**40}, "before"),
        ({"after": 1, "before": 5}, "before"),
    ],
)
def test_history_refuses_bad_parameters_with_json_400(bob_api, sixty, query, field):
    reply = bob_api.get(messages_url(sixty, **query))

    assert reply.status_code == 400
    assert list(reply.json()) == [field]
    assert isinstance(reply.json()[field], list)


def test_charlie_cannot_read_alices_history(charlie_api, sixty):
    reply = charlie_api.get(messages_url(sixty))

    assert reply.status_code == 404
    assert "results" not in reply.json()


@pytest.mark.parametrize("count", [5, 150])
def test_history_costs_the_same_queries_for_5_or_150_messages(bob_api, lobby, alice, bob, count, django_assert_num_queries):
    for i in range(count):
        services.post_message(room_id=lobby.pk, sender=alice if i % 2 else bob, body=f"m{i}")

    # Token, membership check, page with senders.
    with django_assert_num_queries(3):
        reply = bob_api.get(messages_url(lobby, limit=200))

    assert len(reply.json()["results"]) == count
    assert {m["sender"]["username"] for m in reply.json()["results"]} == {"alice", "bob"}


def test_a_deleted_senders_messages_stay_with_a_null_sender(alice_api, lobby, bob):
    say(lobby, bob, "I was here")
    bob.delete()

    results = alice_api.get(messages_url(lobby)).json()["results"]

    assert [(m["body"], m["sender"]) for m in results] == [("I was here", None)]


# Read markers


def read(client, room, seq):
    return client.post(f"/api/rooms/{room.pk}/read/", {"seq": seq}, format="json")


def test_bobs_unread_count_follows_his_read_marker(bob_api, lobby, alice):
    say(lobby, alice, "one", "two", "three")
    assert unread(bob_api, lobby) == 3

    reply = read(bob_api, lobby, 2)

    assert reply.status_code == 204
    assert not reply.content
    assert unread(bob_api, lobby) == 1
    assert bob_api.get("/api/rooms/").json()["results"][0]["unread"] == 1


def test_the_read_marker_never_moves_back(bob_api, lobby, alice, bob):
    say(lobby, alice, "one", "two", "three")
    read(bob_api, lobby, 3)

    assert read(bob_api, lobby, 1).status_code == 204
    assert read(bob_api, lobby, 0).status_code == 204
    assert unread(bob_api, lobby) == 0
    assert Membership.objects.get(room=lobby, user=bob).last_read_seq == 3


def test_the_read_marker_stops_at_the_last_message(bob_api, lobby, alice, bob):
    say(lobby, alice, "one", "two")

    assert read(bob_api, lobby, 10**6).status_code == 204
    assert Membership.objects.get(room=lobby, user=bob).last_read_seq == 2
    say(lobby, alice, "three")
    assert unread(bob_api, lobby) == 1


def test_reading_tells_bobs_other_devices(bob_api, lobby, alice, bob, monkeypatch, django_capture_on_commit_callbacks):
    say(lobby, alice, "one", "two")
    published = []
    monkeypatch.setattr(
        get_channel_layer(), "publish_to_users", lambda ids, event, **kw: published.append((list(ids), event))
    )

    with django_capture_on_commit_callbacks(execute=True):
        read(bob_api, lobby, 2)
        read(bob_api, lobby, 1)

    # Only the move forward is news.
    assert published == [([bob.pk], {"type": "read", "room": lobby.pk, "seq": 2})]


@pytest.mark.parametrize("seq", [-1, "2", 2.5, True, None, [2], 10**30])
def test_read_refuses_a_bad_seq_with_json_400(bob_api, lobby, seq):
    reply = read(bob_api, lobby, seq)

    assert reply.status_code == 400
    assert list(reply.json()) == ["seq"]


def test_read_needs_a_seq(bob_api, lobby):
    reply = bob_api.post(f"/api/rooms/{lobby.pk}/read/", {}, format="json")

    assert reply.status_code == 400
    assert list(reply.json()) == ["seq"]


def test_charlie_cannot_move_a_marker_in_alices_room(charlie_api, lobby):
    assert read(charlie_api, lobby, 1).status_code == 404
    assert charlie_api.post("/api/rooms/999999/read/", {"seq": 1}, format="json").status_code == 404
