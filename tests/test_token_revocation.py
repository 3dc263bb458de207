"""A device lives as long as its credential: deleting or rotating a token, or
logging a session out, closes every device that came with it (4001), on
every worker, and no other.

The event goes out as any other: one publish after commit; each worker's
Level 2 closes its own devices that match (chat.auth, chat.fanout.local).
"""

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import Client
from rest_framework.authtoken.models import Token

from chat import auth, services
from chat.models import Message
from chatproject.asgi import application
from tests.live import Device, Service, eventually
from tests.test_device_protocol import connect, nothing_more

ORIGIN = (b"origin", b"http://localhost:8000")


async def closed_with(device, timeout=10):
    """The close code the device gets (frames before it are ignored); fails after the deadline."""
    async with asyncio.timeout(timeout):
        while True:
            output = await device.receive_output(timeout)
            if output["type"] == "websocket.close":
                return output["code"]


@sync_to_async
def logged_in_browser(user):
    browser = Client()
    browser.force_login(user)
    browser.cookie_header = f"sessionid={browser.cookies['sessionid'].value}".encode()
    return browser


async def browser_tab(browser):
    return await connect(headers=[(b"cookie", browser.cookie_header), ORIGIN])


@pytest.fixture
def lobby(alice, bob):
    return services.create_group_room(creator=alice, name="lobby", member_ids=[bob.pk])


def delete_token(user):
    Token.objects.filter(user=user).delete()


def rotate_token(user):
    with transaction.atomic():
        Token.objects.filter(user=user).delete()
        Token.objects.create(user=user)


def delete_token_in_the_admin(user):
    admin = get_user_model().objects.create_superuser("root", password="root-password")
    browser = Client()
    browser.force_login(admin)
    reply = browser.post(f"/admin/authtoken/tokenproxy/{user.pk}/delete/", {"post": "yes"})
    assert reply.status_code == 302, reply.status_code


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("end_token", [delete_token, rotate_token, delete_token_in_the_admin], ids=lambda f: f.__name__)
async def test_when_alices_token_ends_every_device_it_opened_closes_with_4001_and_no_other(alice, bob, lobby, end_token):
    phone, laptop = await connect(alice), await connect(alice)
    tab = await browser_tab(await logged_in_browser(alice))
    bobs = await connect(bob)

    await sync_to_async(end_token)(alice)

    assert await closed_with(phone) == 4001
    assert await closed_with(laptop) == 4001
    # Her browser tab came with her session, not the token; Bob has his own.
    assert await nothing_more(tab)
    await tab.send_json_to({"type": "message.send", "room": lobby.pk, "body": "still here", "client_id": "t"})
    assert (await tab.receive_json_from())["type"] == "message.ack"
    assert (await bobs.receive_json_from())["message"]["body"] == "still here"
    for device in (phone, laptop, tab, bobs):
        await device.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_deleting_alices_account_closes_her_token_devices(alice, bob, lobby):
    phone, bobs = await connect(alice), await connect(bob)

    await sync_to_async(get_user_model().objects.filter(pk=alice.pk).delete)()

    assert await closed_with(phone) == 4001
    assert await nothing_more(bobs)
    await phone.disconnect()
    await bobs.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_rotated_token_connects_at_once_and_the_old_one_no_more(alice, lobby):
    old = await sync_to_async(lambda: alice.auth_token.key)()
    phone = await connect(alice)
    await sync_to_async(rotate_token)(alice)
    assert await closed_with(phone) == 4001

    refused = WebsocketCommunicator(application, "/ws/", headers=[(b"authorization", f"Token {old}".encode())])
    assert await refused.connect() == (False, 4001)
    again = await connect(await get_user_model().objects.aget(pk=alice.pk))
    assert again.hello["user"]["username"] == "alice"
    await phone.disconnect()
    await again.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_logging_out_closes_the_tabs_of_that_session_only(alice, lobby):
    work, home = await logged_in_browser(alice), await logged_in_browser(alice)
    work_tab, home_tab = await browser_tab(work), await browser_tab(home)
    phone = await connect(alice)

    reply = await sync_to_async(work.post)("/accounts/logout/")
    assert reply.status_code == 302

    assert await closed_with(work_tab) == 4001
    assert await nothing_more(home_tab)
    assert await nothing_more(phone)
    # The logged-out cookie opens nothing any more.
    refused = WebsocketCommunicator(application, "/ws/", headers=[(b"cookie", work.cookie_header), ORIGIN])
    assert await refused.connect() == (False, 4001)
    for device in (work_tab, home_tab, phone):
        await device.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_token_deleted_while_its_device_connects_closes_it_before_any_frame(alice, lobby, monkeypatch):
    # The handshake found the token; it is deleted before the device is attached,
    # so the revocation finds no device to close: the consumer must see it itself.
    original = auth.user_for_token

    async def deleted_right_after_lookup(key):
        user = await original(key)
        await sync_to_async(Token.objects.filter(key=key).delete)()
        return user

    monkeypatch.setattr(auth, "user_for_token", deleted_right_after_lookup)
    key = await sync_to_async(lambda: alice.auth_token.key)()
    device = WebsocketCommunicator(application, "/ws/", headers=[(b"authorization", f"Token {key}".encode())])
    await device.connect()

    assert await device.receive_output(timeout=10) == {"type": "websocket.close", "code": 4001}
    await device.disconnect()


@pytest.mark.django_db
def test_a_room_deleted_with_thousands_of_messages_is_still_a_bulk_delete(alice, lobby, django_assert_max_num_queries):
    # The revocation listens to Token deletions only: a receiver for every model
    # would make Django load and delete a room's messages one by one.
    Message.objects.bulk_create(Message(room=lobby, seq=seq, sender=alice, body="m") for seq in range(1, 2001))
    with django_assert_max_num_queries(20):
        services.delete_room(room=lobby)
    assert not Message.objects.exists()


# Across workers: two daphne processes linked through a real Redis.


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    service = Service(tmp_path_factory.mktemp("revocation"), workers=2).start()
    yield service
    service.stop()


@pytest.mark.live
async def test_deleting_a_token_closes_its_devices_on_every_worker_within_seconds(service):
    seeded = service.seed(2, "revoke-", room="pair")
    alice, bob = seeded["users"]
    room = seeded["room"]
    alices = [await Device.connect(worker, alice["token"]) for worker in service.workers]
    bobs = [await Device.connect(worker, bob["token"]) for worker in service.workers]

    # The ORM in a process of its own, on the workers' database and Redis, as an operator
    # would; in a thread, so that this loop sees the sockets close meanwhile.
    deleting = asyncio.create_task(asyncio.to_thread(
        service.manage, "shell", "-c",
        "import time; from rest_framework.authtoken.models import Token; "
        f"assert Token.objects.filter(key={alice['token']!r}).delete()[0] == 1; print(time.time())",
    ))
    closed_at = []
    for device in alices:
        await asyncio.wait_for(device.ws.wait_closed(), timeout=30)
        closed_at.append(time.time())
        assert device.ws.close_code == 4001
    deleted_at = float((await deleting).split()[-1])
    took = max(closed_at) - deleted_at
    assert took < 10
    # Each worker closed its own one, and said so.
    await eventually(lambda: [w.health()["counters"].get("closed_revoked") for w in service.workers] == [1, 1],
                     what="both workers to count one closed device")
    assert service.api("GET", "/api/me/", alice["token"])[0] == 401

    # Bob's devices, on both workers, stay open and still receive.
    status, message = service.api("POST", f"/api/rooms/{room}/messages/", bob["token"], {"body": "after", "client_id": "a"})
    assert status == 201
    for device in bobs:
        assert (await device.next_frame("message.new"))["message"] == message
        await device.close()
    print(f"revoked token: both devices closed within {took:.3f} s of the delete's commit")
