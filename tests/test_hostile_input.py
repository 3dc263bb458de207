"""Hostile callers, case by case: outsiders at every room endpoint and frame,
cross-site requests with a visitor's cookie, hostile text, and what a server
error gives away.

Alice owns the lobby, Bob is a member (or was, until removed), Charlie never
was. Generated input is in test_fuzzing.py; that the browser shows hostile
bodies as text, never as HTML, is tests/browser/test_chat_ui.py
(test_message_bodies_are_text_never_html).
"""

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from chat import selectors, services
from chat import views as chat_views
from chat.models import Membership, Message, Room
from chatproject.asgi import application

from .api_conftest import api, fresh_throttles  # noqa: F401
from .test_device_protocol import connect, nothing_more, session_cookie

MISSING_ROOM = 999_999


def token_client(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {user.auth_token.key}")
    return client


@pytest.fixture
def lobby(alice, bob):
    room = services.create_group_room(creator=alice, name="lobby", member_ids=[bob.pk])
    services.post_message(room_id=room.pk, sender=alice, body="the secret plan")
    return room


@pytest.fixture(params=["charlie", "removed bob"])
def outsider(request, lobby, bob, charlie):
    """Charlie, never in the lobby; or Bob, removed from it by Alice."""
    if request.param == "charlie":
        return charlie
    services.remove_member(room=lobby, user_id=bob.pk)
    return bob


def room_state(room):
    """Everything an outsider's request could change."""
    return (
        Room.objects.filter(pk=room.pk).values_list("name", "last_seq").first(),
        sorted(Membership.objects.filter(room=room).values_list("user_id", "role", "last_read_seq")),
        list(Message.objects.filter(room=room).values_list("seq", "body")),
    )


# Every room endpoint: (method, path, body); {room}, {alice} and {me} are filled in.
ROOM_ENDPOINTS = [
    ("get", "/api/rooms/{room}/", None),
    ("patch", "/api/rooms/{room}/", {"name": "Mine now"}),
    ("delete", "/api/rooms/{room}/", None),
    ("get", "/api/rooms/{room}/members/", None),
    ("post", "/api/rooms/{room}/members/", {"users": ["{me}"]}),
    ("delete", "/api/rooms/{room}/members/{alice}/", None),
    ("delete", "/api/rooms/{room}/members/{me}/", None),
    ("get", "/api/rooms/{room}/messages/", None),
    ("get", "/api/rooms/{room}/messages/?after=0&limit=200", None),
    ("get", "/api/rooms/{room}/messages/?before=100", None),
    ("post", "/api/rooms/{room}/messages/", {"body": "let me in", "client_id": "x"}),
    ("post", "/api/rooms/{room}/read/", {"seq": 1}),
]


def fill(value, **ids):
    if isinstance(value, str):
        return int(value.format(**ids)) if value.startswith("{") else value.format(**ids)
    if isinstance(value, list):
        return [fill(v, **ids) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, **ids) for k, v in value.items()}
    return value


@pytest.mark.django_db
@pytest.mark.parametrize("method, path, body", ROOM_ENDPOINTS, ids=[f"{m} {p}" for m, p, _ in ROOM_ENDPOINTS])
def test_an_outsider_gets_at_every_room_endpoint_the_404_of_a_room_that_does_not_exist(
    outsider, lobby, alice, method, path, body
):
    client = token_client(outsider)
    before = room_state(lobby)

    def call(room):
        ids = {"room": room, "alice": alice.pk, "me": outsider.pk}
        return getattr(client, method)(fill(path, **ids), fill(body, **ids), format="json")

    reply, missing = call(lobby.pk), call(MISSING_ROOM)

    assert reply.status_code == 404
    # Whether the room exists, and what is in it, is none of the outsider's business.
    assert (reply.status_code, reply.json()) == (missing.status_code, missing.json())
    assert "secret" not in reply.content.decode()
    assert room_state(lobby) == before
    assert lobby.pk not in [r["id"] for r in client.get("/api/rooms/").json()["results"]]


# Every frame that names a room: (frame, what the outsider's device gets back).
ROOM_FRAMES = [
    ({"type": "message.send", "room": "{room}", "body": "let me in", "client_id": "x"}, [("not_member", "x")]),
    ({"type": "typing", "room": "{room}"}, [("not_member", None)]),
    ({"type": "read", "room": "{room}", "seq": 1}, [("not_member", None)]),
    ({"type": "resume", "rooms": {"{room}": 0}}, [("not_member", None), "resume.done"]),
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("who", ["charlie", "removed bob"])
@pytest.mark.parametrize("frame, answers", ROOM_FRAMES, ids=[f["type"] for f, _ in ROOM_FRAMES])
async def test_an_outsiders_frames_get_not_member_reach_nobody_and_store_nothing(
    alice, bob, charlie, who, frame, answers
):
    lobby = await sync_to_async(services.create_group_room)(creator=alice, name="lobby", member_ids=[bob.pk])
    await sync_to_async(services.post_message)(room_id=lobby.pk, sender=alice, body="the secret plan")
    alices = await connect(alice)
    if who == "charlie":
        intruder = await connect(charlie)
    else:
        # Bob's device is open when he is removed: it stops receiving at once.
        intruder = await connect(bob)
        await sync_to_async(services.remove_member)(room=lobby, user_id=bob.pk)
        assert await intruder.receive_json_from() == {"type": "room.left", "room": lobby.pk}
    before = await sync_to_async(room_state)(lobby)

    room = lobby.pk
    await intruder.send_json_to(
        {k: ({str(room): 0} if k == "rooms" else room if v == "{room}" else v) for k, v in frame.items()}
    )
    for answer in answers:
        got = await intruder.receive_json_from()
        if answer == "resume.done":
            assert got == {"type": "resume.done"}
        else:
            assert (got["type"], got["code"], got["ref"]) == ("error", *answer)
    assert await nothing_more(intruder)
    # Nothing reached Alice (no typing hint, no message), nothing was stored.
    assert await nothing_more(alices)
    assert await sync_to_async(room_state)(lobby) == before
    # And what Alice says next does not reach the outsider.
    await alices.send_json_to({"type": "message.send", "room": room, "body": "members only", "client_id": "m"})
    assert (await alices.receive_json_from())["type"] == "message.ack"
    assert await nothing_more(intruder)
    await alices.disconnect()
    await intruder.disconnect()


# Cross-site requests with a visitor's cookie


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "origin",
    [b"http://localhost.evil.example", b"http://localhost@evil.example", b"http://evil.example#@localhost",
     b"http://127.0.0.1.nip.io", b"null", b"file://"],
)
async def test_a_session_cookie_from_a_look_alike_origin_opens_no_socket(alice, origin):
    cookie = await session_cookie(alice)
    device = WebsocketCommunicator(application, "/ws/", headers=[(b"cookie", cookie), (b"origin", origin)])
    assert await device.connect() == (False, 4001)
    # The very same cookie from the site's own page works.
    own = await connect(headers=[(b"cookie", cookie), (b"origin", b"http://LOCALHOST:8000")])
    assert own.hello["user"]["id"] == alice.pk
    await own.disconnect()


def logged_in_browser(user):
    """A browser session as the chat page leaves it: session cookie and csrftoken cookie."""
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    assert browser.get("/").status_code == 200
    browser.csrf_token = browser.cookies["csrftoken"].value
    return browser


WRITES = {
    "create a room": ("/api/rooms/", {"name": "Forged"}, lambda: Room.objects.count()),
    "send a message": ("/api/rooms/{room}/messages/", {"body": "forged"}, lambda: Message.objects.count()),
}


@pytest.mark.django_db
@pytest.mark.parametrize("write", list(WRITES))
def test_a_logged_in_browser_writes_only_with_the_csrf_token_from_its_own_origin(alice, lobby, write):
    url, body, stored = WRITES[write]
    url = url.format(room=lobby.pk)
    browser = logged_in_browser(alice)
    before = stored()

    def post(**headers):
        return browser.post(url, body, content_type="application/json", **headers)

    forged = [
        post(),  # what another site's form or fetch() could send along with the cookie
        post(HTTP_X_CSRFTOKEN="x" * 32),
        post(HTTP_X_CSRFTOKEN=browser.csrf_token, HTTP_ORIGIN="https://evil.example"),
    ]
    for reply in forged:
        assert reply.status_code == 403
        assert "CSRF" in reply.json()["detail"]
    assert stored() == before

    reply = post(HTTP_X_CSRFTOKEN=browser.csrf_token)
    assert reply.status_code == 201
    assert stored() == before + 1


@pytest.mark.django_db
def test_token_requests_need_no_csrf_token(alice, lobby):
    app = APIClient(enforce_csrf_checks=True)
    app.credentials(HTTP_AUTHORIZATION=f"Token {alice.auth_token.key}")

    assert app.post("/api/rooms/", {"name": "From the app"}, format="json").status_code == 201
    assert app.post(f"/api/rooms/{lobby.pk}/messages/", {"body": "from the app"}, format="json").status_code == 201


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["ＡＬＩＣＥ", "ａｌｉｃｅ", "Ａlice"])
def test_nobody_registers_a_full_width_look_alike_of_alices_name(api, alice, name):
    # Django stores usernames NFKC-normalised: "ＡＬＩＣＥ" would be stored as "ALICE".
    reply = api.post("/api/auth/register/", {"username": name, "password": "lilac-meadow-42"}, format="json")

    assert reply.status_code == 400
    assert list(reply.json()) == ["username"]
    assert get_user_model().objects.filter(username__iexact="alice").count() == 1


@pytest.mark.django_db
def test_a_username_is_checked_as_it_will_be_stored(api):
    # One character that normalises to 18, spaces among them: not a username.
    reply = api.post("/api/auth/register/", {"username": "\ufdfa" * 10, "password": "lilac-meadow-42"}, format="json")

    assert reply.status_code == 400
    assert not get_user_model().objects.exists()


# Hostile text, verbatim


HOSTILE_BODIES = [
    "<script>alert('x')</script>",
    '<img src=x onerror="alert(1)">',
    "'; DROP TABLE chat_message; --",
    "Robert'); DELETE FROM auth_user WHERE ('1'='1",
    "\x01\x02\x07\x1b[31mred\x1b[0m\x7f",
    "tab\there\r\nnew line\u2028and\u2029more",
    "\u202eevil\u202c right to left",
    "{{ request.user }} {% csrf_token %} ${7*7} %s %n",
    "&lt;b&gt; &amp; &#x3C;",
    "\ufeff\u200bzero width\u200d",
    "  \t padded, trimmed only \n ",
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("body", HOSTILE_BODIES, ids=range(len(HOSTILE_BODIES)))
async def test_a_hostile_body_is_stored_verbatim_and_comes_back_identical_over_http_and_websocket(
    alice, bob, body
):
    lobby = await sync_to_async(services.create_group_room)(creator=alice, name="lobby", member_ids=[bob.pk])
    alices, bobs = await connect(alice), await connect(bob)
    expected = body.strip()

    await alices.send_json_to({"type": "message.send", "room": lobby.pk, "body": body, "client_id": "ws"})
    ack = await alices.receive_json_from()
    assert ack["message"]["body"] == expected
    assert (await bobs.receive_json_from())["message"] == ack["message"]

    reply = await sync_to_async(lambda: token_client(bob).post(
        f"/api/rooms/{lobby.pk}/messages/", {"body": body, "client_id": "http"}, format="json"
    ))()
    assert reply.status_code == 201
    assert reply.json()["body"] == expected
    assert (await alices.receive_json_from())["message"] == reply.json()

    stored = await sync_to_async(lambda: list(Message.objects.order_by("seq").values_list("body", flat=True)))()
    assert stored == [expected, expected]
    history = await sync_to_async(lambda: token_client(alice).get(f"/api/rooms/{lobby.pk}/messages/").json())()
    assert [m["body"] for m in history["results"]] == [expected, expected]
    assert history["results"] == [ack["message"], reply.json()]
    await alices.disconnect()
    await bobs.disconnect()


# What a server error gives away


def kaboom(*args, **kwargs):
    raise RuntimeError("kaboom: /srv/chat/internals.py line 42")


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [False, True], ids=["DJANGO_DEBUG=0", "DJANGO_DEBUG=1"])
def test_a_server_error_shows_a_plain_500_without_internals_unless_debug_is_on(alice, settings, monkeypatch, caplog, debug):
    settings.DEBUG = debug
    monkeypatch.setattr(chat_views, "render", kaboom)  # the chat page
    monkeypatch.setattr(selectors, "memberships_of", kaboom)  # GET /api/rooms/
    browser = Client(raise_request_exception=False)
    browser.force_login(alice)

    page, api_reply = browser.get("/"), browser.get("/api/rooms/")

    assert page.status_code == api_reply.status_code == 500
    if debug:
        # Development shows everything: the difference is what this test is about.
        assert "Traceback" in page.content.decode() and "kaboom" in page.content.decode()
        return
    for reply in (page, api_reply):
        text = reply.content.decode()
        assert "Traceback" not in text and "kaboom" not in text and "internals.py" not in text
        assert settings.SECRET_KEY not in text and "SECRET_KEY" not in text and "DATABASES" not in text
    assert page["Content-Type"].startswith("text/html")
    assert "Server Error (500)" in page.content.decode()
    # Under /api/ it is JSON, as every other API error.
    assert api_reply["Content-Type"] == "application/json"
    assert api_reply.json() == {"detail": "Server error."}
    # The operator still gets the traceback: in the log.
    assert "kaboom" in caplog.text
