"""Room management in the Django admin, and seed_users."""

import json
import re
from io import StringIO

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from rest_framework.authtoken.models import Token

from chat import services
from chat.models import Membership, Message, Room

from .test_device_protocol import connect


@pytest.fixture
def admin_client(client, db):
    admin = get_user_model().objects.create_superuser("root", password="root-password")
    client.force_login(admin)
    client.admin = admin
    return client


@pytest.fixture
def published(monkeypatch):
    from channels.layers import get_channel_layer

    sent = []
    layer = get_channel_layer()
    monkeypatch.setattr(layer, "publish_to_users", lambda ids, event, **kw: sent.append((sorted(ids), event["type"])))
    return sent


def inline_form(room, rows, extra=()):
    """The POST body of the room change page with its memberships inline."""
    data = {
        "name": room.name,
        "memberships-TOTAL_FORMS": str(len(rows) + len(extra)),
        "memberships-INITIAL_FORMS": str(len(rows)),
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
    }
    for i, (membership, changes) in enumerate(rows):
        data[f"memberships-{i}-id"] = str(membership.pk)
        data[f"memberships-{i}-room"] = str(room.pk)
        data[f"memberships-{i}-user"] = str(membership.user_id)
        data[f"memberships-{i}-role"] = changes.get("role", membership.role)
        if changes.get("DELETE"):
            data[f"memberships-{i}-DELETE"] = "on"
    for j, (user, role) in enumerate(extra, start=len(rows)):
        data[f"memberships-{j}-room"] = str(room.pk)
        data[f"memberships-{j}-user"] = str(user.pk)
        data[f"memberships-{j}-role"] = role
    return data


def test_the_room_list_shows_kind_member_count_and_last_activity_and_searches_by_name(admin_client, alice, bob):
    lobby = services.create_group_room(creator=alice, name="lobby", member_ids=[bob.pk])
    services.create_group_room(creator=alice, name="kitchen")
    services.post_message(room_id=lobby.pk, sender=alice, body="hi")
    page = admin_client.get("/admin/chat/room/", {"q": "lob"})
    assert page.status_code == 200
    rows = page.context["cl"].result_list
    assert [(r.name, r.kind, r.member_count) for r in rows] == [("lobby", "group", 2)]
    assert rows[0].last_message_at is not None


def test_adding_removing_and_promoting_members_in_the_admin_goes_through_the_services(
    admin_client, alice, bob, charlie, published, django_capture_on_commit_callbacks
):
    lobby = services.create_group_room(creator=alice, name="lobby", member_ids=[bob.pk])
    owner = Membership.objects.get(room=lobby, user=alice)
    bobs = Membership.objects.get(room=lobby, user=bob)
    version = Room.objects.get(pk=lobby.pk).members_version
    form = inline_form(lobby, [(owner, {}), (bobs, {"DELETE": True})], extra=[(charlie, "admin")])
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"/admin/chat/room/{lobby.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    roles = dict(Membership.objects.filter(room=lobby).values_list("user__username", "role"))
    assert roles == {"alice": "owner", "charlie": "admin"}
    assert ([bob.pk], "room.left") in published and ([charlie.pk], "room.joined") in published
    assert Room.objects.get(pk=lobby.pk).members_version > version


def test_the_room_page_shows_its_latest_messages_as_text(admin_client, alice):
    lobby = services.create_group_room(creator=alice, name="lobby")
    services.post_message(room_id=lobby.pk, sender=alice, body="<script>alert(1)</script>")
    page = admin_client.get(f"/admin/chat/room/{lobby.pk}/change/").content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)</script>" not in page


@pytest.mark.django_db(transaction=True)
async def test_the_room_page_counts_the_members_with_a_device_connected(alice, bob, charlie):
    lobby = await sync_to_async(services.create_group_room)(creator=alice, name="lobby", member_ids=[bob.pk, charlie.pk])
    admin = await sync_to_async(get_user_model().objects.create_superuser)("root", password="root-password")
    browser = Client()
    await sync_to_async(browser.force_login)(admin)

    def online_now():
        page = browser.get(f"/admin/chat/room/{lobby.pk}/change/").content.decode()
        return re.search(r"(\d+) of 3 members", page).group(1)

    assert await sync_to_async(online_now)() == "0"
    bobs_phone, bobs_laptop = await connect(bob), await connect(bob)
    assert await sync_to_async(online_now)() == "1"
    await bobs_phone.disconnect()
    assert await sync_to_async(online_now)() == "1"
    await bobs_laptop.disconnect()
    assert await sync_to_async(online_now)() == "0"


def test_a_room_created_in_the_admin_is_owned_by_its_creator(admin_client):
    response = admin_client.post("/admin/chat/room/add/", inline_form(Room(name="ops"), []))
    assert response.status_code == 302
    room = Room.objects.get(name="ops")
    assert list(room.memberships.values_list("user__username", "role")) == [("root", "owner")]


def test_messages_are_searchable_by_body_and_sender_and_cannot_be_edited(admin_client, alice, bob):
    lobby = services.create_group_room(creator=alice, name="lobby", member_ids=[bob.pk])
    services.post_message(room_id=lobby.pk, sender=alice, body="the quarterly numbers")
    services.post_message(room_id=lobby.pk, sender=bob, body="lunch?")
    by_body = admin_client.get("/admin/chat/message/", {"q": "quarterly"}).context["cl"].result_list
    by_sender = admin_client.get("/admin/chat/message/", {"q": "bob"}).context["cl"].result_list
    assert [m.body for m in by_body] == ["the quarterly numbers"]
    assert [m.body for m in by_sender] == ["lunch?"]
    message = Message.objects.get(body="lunch?")
    admin_client.post(f"/admin/chat/message/{message.pk}/change/", {"body": "changed"})
    assert Message.objects.get(pk=message.pk).body == "lunch?"


def test_seed_users_creates_users_with_tokens_in_one_room_and_prints_them(db):
    out = StringIO()
    call_command("seed_users", "--count", "5", "--prefix", "load", "--room", "bench", stdout=out)
    result = json.loads(out.getvalue())
    assert [u["username"] for u in result["users"]] == [f"load{i}" for i in range(5)]
    for user in result["users"]:
        assert Token.objects.get(key=user["token"]).user_id == user["id"]
    room = Room.objects.get(pk=result["room"])
    assert room.name == "bench" and room.memberships.count() == 5
    assert get_user_model().objects.get(username="load3").check_password("chat-seed-password")


def test_seed_users_without_a_room_prints_null_and_refuses_existing_names(db):
    out = StringIO()
    call_command("seed_users", "--count", "2", "--prefix", "solo", stdout=out)
    assert json.loads(out.getvalue())["room"] is None
    from django.core.management import CommandError

    with pytest.raises(CommandError):
        call_command("seed_users", "--count", "2", "--prefix", "solo", stdout=StringIO())
