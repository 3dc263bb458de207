"""The data model and its services: seq, membership, direct rooms, read markers."""

import threading

import pytest
from django.db import IntegrityError, connection, transaction

from chat import selectors, services
from chat.errors import Invalid, NotMember, TooLarge
from chat.models import Membership, Message, Room


@pytest.fixture
def published(monkeypatch):
    """Every event the services publish, in order, as (target kind, event)."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    sent = []
    monkeypatch.setattr(layer, "publish_to_room", lambda room, event, **kw: sent.append(("room", room, event, kw)))
    monkeypatch.setattr(layer, "publish_to_users", lambda ids, event, **kw: sent.append(("users", sorted(ids), event)))
    return sent


@pytest.fixture
def lobby(alice, bob):
    return services.create_group_room(creator=alice, name="lobby", member_ids=[bob.pk])


def test_the_creator_owns_a_new_room_and_the_others_are_members(lobby, alice, bob):
    roles = dict(Membership.objects.filter(room=lobby).values_list("user__username", "role"))
    assert roles == {"alice": "owner", "bob": "member"}


def test_messages_are_numbered_one_two_three_per_room(lobby, alice, bob):
    other = services.create_group_room(creator=bob, name="other")
    seqs = [services.post_message(room_id=lobby.pk, sender=alice, body=f"m{i}")[0].seq for i in range(3)]
    assert seqs == [1, 2, 3]
    assert services.post_message(room_id=other.pk, sender=bob, body="x")[0].seq == 1
    lobby.refresh_from_db()
    assert lobby.last_seq == 3


def test_a_repeated_client_id_returns_the_first_message_and_stores_nothing(lobby, alice):
    first, created = services.post_message(room_id=lobby.pk, sender=alice, body="once", client_id="c-1")
    again, created_again = services.post_message(room_id=lobby.pk, sender=alice, body="twice", client_id="c-1")
    assert (created, created_again) == (True, False)
    assert again.pk == first.pk and again.body == "once"
    assert Message.objects.filter(room=lobby).count() == 1


def test_the_same_client_id_from_two_senders_is_two_messages(lobby, alice, bob):
    services.post_message(room_id=lobby.pk, sender=alice, body="a", client_id="same")
    services.post_message(room_id=lobby.pk, sender=bob, body="b", client_id="same")
    assert Message.objects.filter(room=lobby).count() == 2


def test_the_database_refuses_a_repeated_seq(lobby, alice):
    services.post_message(room_id=lobby.pk, sender=alice, body="a")
    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.create(room=lobby, seq=1, sender=alice, body="dup")


def test_the_database_refuses_a_second_membership_of_the_same_user(lobby, bob):
    with pytest.raises(IntegrityError), transaction.atomic():
        Membership.objects.create(room=lobby, user=bob)


def test_charlie_cannot_post_in_alices_room(lobby, charlie):
    with pytest.raises(NotMember):
        services.post_message(room_id=lobby.pk, sender=charlie, body="let me in")
    assert not Message.objects.exists()


@pytest.mark.parametrize("body", ["", "   ", None, 42, "a\x00b"])
def test_a_bad_body_is_refused_and_nothing_is_stored(lobby, alice, body):
    with pytest.raises(Invalid):
        services.post_message(room_id=lobby.pk, sender=alice, body=body)
    assert not Message.objects.exists()
    lobby.refresh_from_db()
    assert lobby.last_seq == 0


def test_a_body_over_4000_characters_is_too_large_but_4000_is_fine(lobby, alice):
    with pytest.raises(TooLarge):
        services.post_message(room_id=lobby.pk, sender=alice, body="x" * 4001)
    message, _ = services.post_message(room_id=lobby.pk, sender=alice, body="  " + "x" * 4000 + "\n")
    assert len(message.body) == 4000


def test_html_and_sql_in_a_body_are_stored_verbatim(lobby, alice):
    body = "<img src=x onerror=alert(1)> '; DROP TABLE chat_message; --"
    message, _ = services.post_message(room_id=lobby.pk, sender=alice, body=body)
    assert Message.objects.get(pk=message.pk).body == body


def test_a_pair_of_users_has_one_direct_room_whoever_opens_it(alice, bob):
    room, created = services.get_or_create_direct_room(user=alice, other_id=bob.pk)
    again, created_again = services.get_or_create_direct_room(user=bob, other_id=alice.pk)
    assert (created, created_again) == (True, False)
    assert again.pk == room.pk and room.kind == Room.Kind.DIRECT
    assert set(room.memberships.values_list("user_id", flat=True)) == {alice.pk, bob.pk}


def test_alice_cannot_open_a_direct_room_with_herself(alice):
    with pytest.raises(Invalid):
        services.get_or_create_direct_room(user=alice, other_id=alice.pk)


def test_the_read_marker_only_moves_forward_and_not_past_the_end(lobby, alice, bob):
    for i in range(5):
        services.post_message(room_id=lobby.pk, sender=alice, body=f"m{i}")
    assert services.mark_read(user=bob, room_id=lobby.pk, seq=3) == 3
    assert services.mark_read(user=bob, room_id=lobby.pk, seq=1) == 3
    assert services.mark_read(user=bob, room_id=lobby.pk, seq=99) == 5
    membership = selectors.access_membership(user=bob, room_id=lobby.pk)
    assert membership.last_read_seq == 5


def test_unread_counts_follow_new_messages_and_the_read_marker(lobby, alice, bob):
    for i in range(4):
        services.post_message(room_id=lobby.pk, sender=alice, body=f"m{i}")
    unread = {room["id"]: room["unread"] for room in selectors.room_summaries(bob)}
    assert unread == {lobby.pk: 4}
    services.mark_read(user=bob, room_id=lobby.pk, seq=3)
    assert selectors.room_summaries(bob)[0]["unread"] == 1
    # Her own messages are read for alice.
    assert selectors.room_summaries(alice)[0]["unread"] == 0


def test_adding_and_removing_members_changes_the_member_version(lobby, alice, charlie):
    version, ids = selectors.room_member_ids(lobby.pk)
    assert services.add_members(room=lobby, user_ids=[charlie.pk]) == 1
    assert services.add_members(room=lobby, user_ids=[charlie.pk]) == 0
    version_after_add, ids_after_add = selectors.room_member_ids(lobby.pk)
    assert charlie.pk in ids_after_add and version_after_add > version
    services.remove_member(room=lobby, user_id=charlie.pk)
    version_after_remove, ids_after_remove = selectors.room_member_ids(lobby.pk)
    assert charlie.pk not in ids_after_remove and version_after_remove > version_after_add


def test_roles_can_change_but_only_to_known_roles(lobby, bob):
    services.set_role(room=lobby, user_id=bob.pk, role="admin")
    assert selectors.access_managed_room(user=bob, room_id=lobby.pk).role == "admin"
    with pytest.raises(Invalid):
        services.set_role(room=lobby, user_id=bob.pk, role="emperor")


def test_a_message_is_published_after_commit_and_never_for_a_rollback(
    lobby, alice, published, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.post_message(room_id=lobby.pk, sender=alice, body="kept")
        assert published == []  # not before the commit
        with pytest.raises(RuntimeError), transaction.atomic():
            services.post_message(room_id=lobby.pk, sender=alice, body="rolled back")
            raise RuntimeError
    assert [p[2]["message"]["body"] for p in published] == ["kept"]
    assert published[0][3]["seq"] == 1


def test_membership_changes_announce_room_joined_and_room_left(
    lobby, charlie, published, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.add_members(room=lobby, user_ids=[charlie.pk])
        services.remove_member(room=lobby, user_id=charlie.pk)
    assert [(p[1], p[2]["type"]) for p in published] == [([charlie.pk], "room.joined"), ([charlie.pk], "room.left")]
    assert published[0][2]["room"]["id"] == lobby.pk


@pytest.mark.django_db(transaction=True)
def test_concurrent_senders_get_seq_one_to_n_without_gap_or_repeat(make_user):
    senders = [make_user(f"sender{i}") for i in range(6)]
    room = services.create_group_room(creator=senders[0], name="busy", member_ids=[s.pk for s in senders])
    per_sender = 15
    errors = []
    barrier = threading.Barrier(len(senders))

    def send(user):
        try:
            barrier.wait()
            for i in range(per_sender):
                services.post_message(room_id=room.pk, sender=user, body=f"{user.username} {i}")
        except Exception as error:  # reported below: a thread's failure must fail the test
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(user,)) for user in senders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    seqs = sorted(Message.objects.filter(room=room).values_list("seq", flat=True))
    assert seqs == list(range(1, len(senders) * per_sender + 1))
