"""Rooms over HTTP: create, list, read, rename, delete; who may do which."""

import pytest

from chat import services
from chat.models import Membership, Message, Room

from .api_conftest import (  # noqa: F401
    alice_api,
    api,
    bob_api,
    charlie_api,
    client_for,
    fresh_throttles,
    lobby,
    say,
)

pytestmark = pytest.mark.django_db

ROOM_KEYS = {"id", "name", "kind", "role", "last_seq", "unread", "created_at"}


# Creating


def test_alice_creates_a_group_room_and_owns_it(alice_api, bob_api, bob):
    reply = alice_api.post("/api/rooms/", {"name": " Book club ", "kind": "group", "members": [bob.pk]}, format="json")

    assert reply.status_code == 201
    room = reply.json()
    assert set(room) == ROOM_KEYS
    assert room["name"] == "Book club"
    assert (room["kind"], room["role"], room["last_seq"], room["unread"]) == ("group", "owner", 0, 0)
    assert room["created_at"].endswith("+00:00")
    assert [r["id"] for r in bob_api.get("/api/rooms/").json()["results"]] == [room["id"]]
    assert bob_api.get(f"/api/rooms/{room['id']}/").json()["role"] == "member"


def test_a_group_room_may_start_with_its_creator_alone(alice_api, alice):
    reply = alice_api.post("/api/rooms/", {"name": "Notes"}, format="json")

    assert reply.status_code == 201
    assert reply.json()["kind"] == "group"
    assert list(Membership.objects.filter(room_id=reply.json()["id"]).values_list("user_id", flat=True)) == [alice.pk]


def test_alice_listing_herself_as_a_member_stays_the_owner(alice_api, alice):
    reply = alice_api.post("/api/rooms/", {"name": "Notes", "members": [alice.pk]}, format="json")

    assert reply.status_code == 201
    assert reply.json()["role"] == "owner"
    assert Membership.objects.filter(room_id=reply.json()["id"]).count() == 1


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"kind": "group"}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": 5}, "name"),
        ({"name": "Club", "kind": "channel"}, "kind"),
        ({"name": "Club", "members": "2"}, "members"),
        ({"name": "Club", "members": ["2"]}, "members"),
        ({"name": "Club", "members": [2.0]}, "members"),
        ({"name": "Club", "members": [True]}, "members"),
        ({"name": "Club", "members": [0]}, "members"),
        ({"name": "Club", "members": [10**30]}, "members"),
        ({"name": "Club", "members": [999999]}, "members"),
        ({"name": "Club", "members": list(range(1, 1002))}, "members"),
    ],
    ids=[
        "no-name", "blank-name", "long-name", "number-name", "unknown-kind", "members-not-a-list",
        "id-as-string", "id-as-float", "id-as-bool", "id-zero", "id-huge", "unknown-user", "over-1000",
    ],
)
def test_room_create_refuses_bad_fields_with_json_400(alice_api, payload, field):
    reply = alice_api.post("/api/rooms/", payload, format="json")

    assert reply.status_code == 400
    assert list(reply.json()) == [field]
    assert isinstance(reply.json()[field], list)
    assert not Room.objects.exists()


def test_room_create_refuses_broken_bodies(alice_api):
    assert alice_api.post("/api/rooms/", "{oops", content_type="application/json").status_code == 400
    assert alice_api.post("/api/rooms/", [1, 2], format="json").status_code == 400
    # The API speaks JSON only: form fields could never carry typed ids.
    assert alice_api.post("/api/rooms/", {"name": "Club"}, format="multipart").status_code == 415
    assert not Room.objects.exists()


def test_alice_and_bob_share_one_direct_room(alice_api, bob_api, alice, bob):
    first = alice_api.post("/api/rooms/", {"kind": "direct", "members": [bob.pk]}, format="json")
    again = alice_api.post("/api/rooms/", {"kind": "direct", "members": [bob.pk]}, format="json")
    from_bob = bob_api.post("/api/rooms/", {"kind": "direct", "members": [alice.pk]}, format="json")

    assert first.status_code == 201
    assert (first.json()["kind"], first.json()["role"], first.json()["name"]) == ("direct", "owner", "")
    assert again.status_code == 200
    assert again.json() == first.json()
    assert from_bob.status_code == 200
    assert from_bob.json()["id"] == first.json()["id"]
    assert from_bob.json()["role"] == "member"
    assert Room.objects.filter(kind="direct").count() == 1


def test_an_existing_direct_room_comes_back_with_alices_unread_count(alice_api, alice, bob):
    room, _ = services.get_or_create_direct_room(user=bob, other_id=alice.pk)
    say(room, bob, "hi", "are you there?")

    reply = alice_api.post("/api/rooms/", {"kind": "direct", "members": [bob.pk]}, format="json")

    assert reply.status_code == 200
    assert (reply.json()["id"], reply.json()["last_seq"], reply.json()["unread"]) == (room.pk, 2, 2)


@pytest.mark.parametrize("members", ["none", "two", "self", "unknown"])
def test_a_direct_room_takes_exactly_one_other_existing_user(alice_api, alice, bob, charlie, members):
    ids = {"none": [], "two": [bob.pk, charlie.pk], "self": [alice.pk], "unknown": [999999]}[members]

    reply = alice_api.post("/api/rooms/", {"kind": "direct", "members": ids}, format="json")

    assert reply.status_code == 400
    assert list(reply.json()) == ["members"]
    assert not Room.objects.exists()


# Listing


def test_room_list_shows_each_callers_role_last_seq_and_unread(alice_api, bob_api, lobby, alice, bob):
    say(lobby, alice, "one", "two", "three")

    alices = alice_api.get("/api/rooms/").json()
    bobs = bob_api.get("/api/rooms/").json()

    assert set(alices) == {"results", "next"}
    assert alices["next"] is None
    assert [(r["id"], r["role"], r["last_seq"], r["unread"]) for r in alices["results"]] == [(lobby.pk, "owner", 3, 0)]
    assert [(r["id"], r["role"], r["last_seq"], r["unread"]) for r in bobs["results"]] == [(lobby.pk, "member", 3, 3)]
    assert set(bobs["results"][0]) == ROOM_KEYS


def test_charlie_sees_none_of_alices_rooms(charlie_api, lobby):
    assert charlie_api.get("/api/rooms/").json() == {"results": [], "next": None}


def test_room_list_puts_the_most_recently_active_room_first(alice_api, alice):
    quiet = services.create_group_room(creator=alice, name="Quiet")
    busy = services.create_group_room(creator=alice, name="Busy")
    fresh = services.create_group_room(creator=alice, name="Fresh")
    say(busy, alice, "first")
    say(quiet, alice, "later")

    ids = [r["id"] for r in alice_api.get("/api/rooms/").json()["results"]]

    # Rooms with no message yet come last, newest first.
    assert ids == [quiet.pk, busy.pk, fresh.pk]


def test_room_list_pages_through_next_links(alice_api, alice):
    rooms = [services.create_group_room(creator=alice, name=f"Room {i}") for i in range(5)]

    first = alice_api.get("/api/rooms/?page_size=2").json()
    second = alice_api.get(first["next"]).json()
    third = alice_api.get(second["next"]).json()

    assert [len(p["results"]) for p in (first, second, third)] == [2, 2, 1]
    assert third["next"] is None
    seen = [r["id"] for p in (first, second, third) for r in p["results"]]
    assert sorted(seen) == sorted(r.pk for r in rooms)


def test_room_list_refuses_a_page_beyond_the_end_as_json_404(alice_api, lobby):
    for page in ("2", "abc", "-1"):
        reply = alice_api.get(f"/api/rooms/?page={page}")
        assert reply.status_code == 404
        assert "detail" in reply.json()


@pytest.mark.parametrize("rooms", [2, 20])
def test_room_list_costs_the_same_queries_for_2_or_20_rooms(alice_api, alice, bob, rooms, django_assert_num_queries):
    for i in range(rooms):
        room = services.create_group_room(creator=alice, name=f"Room {i}", member_ids=[bob.pk])
        say(room, bob, "hello")

    # Token, count, page.
    with django_assert_num_queries(3):
        reply = alice_api.get("/api/rooms/")

    assert len(reply.json()["results"]) == rooms
    assert all(r["unread"] == 1 for r in reply.json()["results"])


# One room


def test_bob_reads_the_room_he_is_in(bob_api, lobby):
    say(lobby, lobby.created_by, "hi")

    reply = bob_api.get(f"/api/rooms/{lobby.pk}/")

    assert reply.status_code == 200
    assert reply.json()["id"] == lobby.pk
    assert (reply.json()["name"], reply.json()["role"], reply.json()["unread"]) == ("Lobby", "member", 1)


def test_charlie_has_no_access_to_alices_room(charlie_api, lobby):
    hidden = charlie_api.get(f"/api/rooms/{lobby.pk}/")
    missing = charlie_api.get("/api/rooms/999999/")

    # A room one is not in looks exactly like a room that does not exist.
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == missing.json()


@pytest.mark.parametrize("path", ["/api/rooms/99999999999999999999999/", "/api/rooms/abc/", "/api/rooms/0/"])
def test_impossible_room_ids_are_json_404(alice_api, path):
    reply = alice_api.get(path)

    assert reply.status_code == 404
    assert "detail" in reply.json()


# Renaming


def test_alice_renames_her_room(alice_api, bob_api, lobby):
    reply = alice_api.patch(f"/api/rooms/{lobby.pk}/", {"name": "  Hall  "}, format="json")

    assert reply.status_code == 200
    assert set(reply.json()) == ROOM_KEYS
    assert (reply.json()["name"], reply.json()["role"]) == ("Hall", "owner")
    assert bob_api.get(f"/api/rooms/{lobby.pk}/").json()["name"] == "Hall"


def test_bob_may_rename_only_once_he_is_an_admin(bob_api, lobby, bob):
    refused = bob_api.patch(f"/api/rooms/{lobby.pk}/", {"name": "Bob's"}, format="json")
    assert refused.status_code == 403
    assert Room.objects.get(pk=lobby.pk).name == "Lobby"

    services.set_role(room=lobby, user_id=bob.pk, role="admin")
    allowed = bob_api.patch(f"/api/rooms/{lobby.pk}/", {"name": "Bob's"}, format="json")
    assert allowed.status_code == 200
    assert (allowed.json()["name"], allowed.json()["role"]) == ("Bob's", "admin")


def test_charlie_cannot_rename_alices_room(charlie_api, lobby):
    reply = charlie_api.patch(f"/api/rooms/{lobby.pk}/", {"name": "Mine"}, format="json")

    assert reply.status_code == 404
    assert Room.objects.get(pk=lobby.pk).name == "Lobby"


@pytest.mark.parametrize("name", ["", "   ", "x" * 201, 42, None], ids=["empty", "blank", "long", "number", "null"])
def test_rename_refuses_a_bad_name(alice_api, lobby, name):
    reply = alice_api.patch(f"/api/rooms/{lobby.pk}/", {"name": name}, format="json")

    assert reply.status_code == 400
    assert list(reply.json()) == ["name"]
    assert Room.objects.get(pk=lobby.pk).name == "Lobby"


def test_an_empty_patch_changes_nothing(alice_api, lobby):
    reply = alice_api.patch(f"/api/rooms/{lobby.pk}/", {}, format="json")

    assert reply.status_code == 200
    assert reply.json()["name"] == "Lobby"


def test_a_direct_room_has_no_name_to_change(alice_api, alice, bob):
    room, _ = services.get_or_create_direct_room(user=alice, other_id=bob.pk)

    reply = alice_api.patch(f"/api/rooms/{room.pk}/", {"name": "Us"}, format="json")

    assert reply.status_code == 403
    assert Room.objects.get(pk=room.pk).name == ""


# Deleting


def test_alice_deletes_her_room_with_its_messages(alice_api, bob_api, lobby, alice):
    say(lobby, alice, "bye")

    reply = alice_api.delete(f"/api/rooms/{lobby.pk}/")

    assert reply.status_code == 204
    assert not Room.objects.filter(pk=lobby.pk).exists()
    assert not Message.objects.filter(room_id=lobby.pk).exists()
    assert bob_api.get(f"/api/rooms/{lobby.pk}/").status_code == 404
    assert bob_api.get("/api/rooms/").json()["results"] == []


def test_only_the_owner_deletes_not_even_an_admin(bob_api, lobby, bob):
    assert bob_api.delete(f"/api/rooms/{lobby.pk}/").status_code == 403

    services.set_role(room=lobby, user_id=bob.pk, role="admin")
    assert bob_api.delete(f"/api/rooms/{lobby.pk}/").status_code == 403
    assert Room.objects.filter(pk=lobby.pk).exists()


def test_charlie_cannot_delete_alices_room(charlie_api, lobby):
    assert charlie_api.delete(f"/api/rooms/{lobby.pk}/").status_code == 404
    assert Room.objects.filter(pk=lobby.pk).exists()


def test_deleting_a_room_twice_is_404_the_second_time(alice_api, lobby):
    assert alice_api.delete(f"/api/rooms/{lobby.pk}/").status_code == 204
    assert alice_api.delete(f"/api/rooms/{lobby.pk}/").status_code == 404
