"""Members over HTTP: list (with online state), add, remove, leave."""

import pytest
from channels.layers import get_channel_layer

from chat import services
from chat.models import Membership

from .api_conftest import alice_api, api, bob_api, charlie_api, client_for, fresh_throttles, lobby  # noqa: F401

pytestmark = pytest.mark.django_db


def members_url(room, user=None):
    return f"/api/rooms/{room.pk}/members/" + (f"{user.pk}/" if user else "")


def member_ids(room):
    return set(Membership.objects.filter(room=room).values_list("user_id", flat=True))


# Listing


def test_bob_lists_the_members_of_his_room(bob_api, lobby, alice, bob):
    reply = bob_api.get(members_url(lobby))

    assert reply.status_code == 200
    assert reply.json() == {
        "results": [
            {"id": alice.pk, "username": "alice", "role": "owner", "online": False},
            {"id": bob.pk, "username": "bob", "role": "member", "online": False},
        ],
        "next": None,
    }


def test_members_are_online_while_a_device_of_theirs_is_connected(bob_api, lobby, alice, bob, monkeypatch):
    layer = get_channel_layer()
    asked = []

    def online_user_ids(ids):
        asked.append(sorted(ids))
        return {alice.pk} & set(ids)

    monkeypatch.setattr(layer, "online_user_ids", online_user_ids)

    results = bob_api.get(members_url(lobby)).json()["results"]

    assert {m["username"]: m["online"] for m in results} == {"alice": True, "bob": False}
    # One question to the layer for the whole page, not one per member.
    assert asked == [sorted([alice.pk, bob.pk])]


def test_charlie_cannot_list_the_members_of_alices_room(charlie_api, lobby):
    reply = charlie_api.get(members_url(lobby))

    assert reply.status_code == 404
    assert "results" not in reply.json()


def test_member_list_pages_through_next_links(alice_api, lobby, make_user):
    services.add_members(room=lobby, user_ids=[make_user(f"guest{i}").pk for i in range(3)])

    first = alice_api.get(members_url(lobby) + "?page_size=3").json()
    second = alice_api.get(first["next"]).json()

    assert [m["username"] for m in first["results"]] == ["alice", "bob", "guest0"]
    assert [m["username"] for m in second["results"]] == ["guest1", "guest2"]
    assert second["next"] is None


@pytest.mark.parametrize("extra", [0, 30])
def test_member_list_costs_the_same_queries_for_any_room_size(alice_api, lobby, make_user, extra, django_assert_num_queries):
    if extra:
        services.add_members(room=lobby, user_ids=[make_user(f"guest{i:02d}").pk for i in range(extra)])

    # Token, membership check, count, page.
    with django_assert_num_queries(4):
        reply = alice_api.get(members_url(lobby))

    assert len(reply.json()["results"]) == 2 + extra


# Adding


def test_alice_adds_charlie_and_he_sees_the_room(alice_api, charlie_api, lobby, charlie):
    reply = alice_api.post(members_url(lobby), {"users": [charlie.pk]}, format="json")

    assert reply.status_code == 201
    assert reply.json() == {"added": 1}
    assert charlie.pk in member_ids(lobby)
    assert [r["id"] for r in charlie_api.get("/api/rooms/").json()["results"]] == [lobby.pk]
    assert charlie_api.get(f"/api/rooms/{lobby.pk}/").json()["role"] == "member"


def test_adding_existing_members_counts_only_the_new_ones(alice_api, lobby, alice, bob, charlie):
    reply = alice_api.post(members_url(lobby), {"users": [alice.pk, bob.pk, charlie.pk, charlie.pk]}, format="json")

    assert reply.status_code == 201
    assert reply.json() == {"added": 1}
    assert alice_api.post(members_url(lobby), {"users": [charlie.pk]}, format="json").json() == {"added": 0}


def test_bob_may_add_members_only_once_he_is_an_admin(bob_api, lobby, bob, charlie):
    refused = bob_api.post(members_url(lobby), {"users": [charlie.pk]}, format="json")
    assert refused.status_code == 403
    assert charlie.pk not in member_ids(lobby)

    services.set_role(room=lobby, user_id=bob.pk, role="admin")
    assert bob_api.post(members_url(lobby), {"users": [charlie.pk]}, format="json").status_code == 201
    assert charlie.pk in member_ids(lobby)


def test_charlie_cannot_add_himself_to_alices_room(charlie_api, lobby, charlie):
    reply = charlie_api.post(members_url(lobby), {"users": [charlie.pk]}, format="json")

    assert reply.status_code == 404
    assert charlie.pk not in member_ids(lobby)


@pytest.mark.parametrize(
    "users",
    [None, "3", 3, [], ["3"], [3.5], [False], [-1], [999999], list(range(1, 1002))],
    ids=["null", "string", "number", "empty", "id-as-string", "float", "bool", "negative", "unknown", "over-1000"],
)
def test_add_members_refuses_bad_user_lists_with_json_400(alice_api, lobby, users):
    before = member_ids(lobby)

    reply = alice_api.post(members_url(lobby), {"users": users}, format="json")

    assert reply.status_code == 400
    assert list(reply.json()) == ["users"]
    assert isinstance(reply.json()["users"], list)
    assert all(isinstance(message, str) for message in reply.json()["users"])
    assert member_ids(lobby) == before


def test_a_bad_id_in_a_list_is_named_by_its_position(alice_api, lobby, charlie):
    reply = alice_api.post(members_url(lobby), {"users": [charlie.pk, "7"]}, format="json")

    assert reply.json() == {"users": ["Item 1: A valid integer is required."]}


def test_add_members_takes_up_to_a_thousand_users(alice_api, lobby, django_user_model):
    users = django_user_model.objects.bulk_create(django_user_model(username=f"fan{i:04d}") for i in range(1000))

    reply = alice_api.post(members_url(lobby), {"users": [u.pk for u in users]}, format="json")

    assert reply.status_code == 201
    assert reply.json() == {"added": 1000}


def test_a_direct_room_takes_no_new_members(alice_api, alice, bob, charlie):
    room, _ = services.get_or_create_direct_room(user=alice, other_id=bob.pk)

    reply = alice_api.post(members_url(room), {"users": [charlie.pk]}, format="json")

    assert reply.status_code == 400
    assert list(reply.json()) == ["users"]
    assert member_ids(room) == {alice.pk, bob.pk}


# Removing and leaving


def test_alice_removes_bob_and_he_loses_the_room(alice_api, bob_api, lobby, bob):
    reply = alice_api.delete(members_url(lobby, bob))

    assert reply.status_code == 204
    assert bob.pk not in member_ids(lobby)
    assert bob_api.get(f"/api/rooms/{lobby.pk}/").status_code == 404
    assert bob_api.get(f"/api/rooms/{lobby.pk}/messages/").status_code == 404


def test_bob_leaves_the_room_himself(bob_api, lobby, bob):
    assert bob_api.delete(members_url(lobby, bob)).status_code == 204
    assert bob.pk not in member_ids(lobby)
    assert bob_api.delete(members_url(lobby, bob)).status_code == 404


def test_alice_may_leave_her_own_room(alice_api, lobby, alice, bob):
    assert alice_api.delete(members_url(lobby, alice)).status_code == 204
    assert member_ids(lobby) == {bob.pk}


def test_bob_as_a_member_cannot_remove_others(bob_api, lobby, alice, charlie):
    services.add_members(room=lobby, user_ids=[charlie.pk])

    assert bob_api.delete(members_url(lobby, charlie)).status_code == 403
    assert bob_api.delete(members_url(lobby, alice)).status_code == 403
    assert {alice.pk, charlie.pk} <= member_ids(lobby)


def test_bob_as_an_admin_removes_charlie_but_not_alice(bob_api, lobby, alice, bob, charlie):
    services.add_members(room=lobby, user_ids=[charlie.pk])
    services.set_role(room=lobby, user_id=bob.pk, role="admin")

    assert bob_api.delete(members_url(lobby, charlie)).status_code == 204
    assert bob_api.delete(members_url(lobby, alice)).status_code == 403
    assert member_ids(lobby) == {alice.pk, bob.pk}


def test_charlie_cannot_remove_anyone_from_alices_room(charlie_api, lobby, bob, charlie):
    assert charlie_api.delete(members_url(lobby, bob)).status_code == 404
    assert charlie_api.delete(members_url(lobby, charlie)).status_code == 404
    assert bob.pk in member_ids(lobby)


def test_removing_someone_not_in_the_room_is_404(alice_api, lobby, charlie):
    reply = alice_api.delete(members_url(lobby, charlie))

    assert reply.status_code == 404
    assert "detail" in reply.json()
    assert alice_api.delete(f"/api/rooms/{lobby.pk}/members/99999999999999999999/").status_code == 404


def test_nobody_leaves_a_direct_room(alice_api, bob_api, alice, bob):
    room, _ = services.get_or_create_direct_room(user=alice, other_id=bob.pk)

    assert bob_api.delete(members_url(room, bob)).status_code == 403
    assert alice_api.delete(members_url(room, bob)).status_code == 403
    assert member_ids(room) == {alice.pk, bob.pk}
