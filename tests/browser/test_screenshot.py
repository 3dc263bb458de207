"""docs/chat.png: the chat page at desktop size with a conversation, typing and unread badges.

Also checks that times are shown in the viewer's own time zone.
"""

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect
from websockets.sync.client import connect

from .support import DOCS, open_room

pytestmark = pytest.mark.browser

PASSWORD = "screenshot-pass-1234"
VIEWER_TZ = "Asia/Kathmandu"  # UTC+5:45: no other zone could show the same clock time


def register(server, username):
    status, data = server.api("POST", "/api/auth/register/", body={"username": username, "password": PASSWORD})
    assert status == 201, (status, data)
    return data


def create_room(server, owner, members, name="", kind="group"):
    body = {"kind": kind, "members": [m["id"] for m in members]}
    if name:
        body["name"] = name
    status, data = server.api("POST", "/api/rooms/", owner["token"], body)
    assert status in (200, 201), (status, data)
    return data["id"]


def local_clock(iso):
    when = datetime.fromisoformat(iso).astimezone(ZoneInfo(VIEWER_TZ))
    return f"{when.hour % 12 or 12}:{when.minute:02d} {'AM' if when.hour < 12 else 'PM'}"


def test_desktop_screenshot(sessions, server):
    alice, bob, carol, dave = (register(server, name) for name in ("alice", "bob", "carol", "dave"))
    say = server.post_message

    launch = create_room(server, alice, [dave], "Launch plan")
    say(dave["token"], launch, "Press kit is final. Sending it to the partners today.")
    say(alice["token"], launch, "Perfect, thanks Dave!")

    trip = create_room(server, carol, [alice, bob], "Weekend trip")
    say(carol["token"], trip, "Cabin is booked for Friday and Saturday.")
    say(bob["token"], trip, "I can drive. Leaving around 5?")
    say(carol["token"], trip, "5 works. Who brings the board games?")

    direct = create_room(server, bob, [alice], kind="direct")
    say(bob["token"], direct, "Got a minute after lunch?")

    design = create_room(server, alice, [bob, carol, dave], "Design review")
    conversation = [
        (bob, "Morning! I pushed the new onboarding screens to the staging build."),
        (carol, "Nice, the empty states look so much better now."),
        (carol, "The illustrations finally match the rest of the app."),
        (alice, "Agreed. One thing: the “Skip” link is hard to see on small phones."),
        (bob, "Good catch. I'll bump the contrast and make the tap target 44 px."),
        (dave, "Can we ship it behind the feature flag on Thursday?"),
        (alice, "Thursday works for me.\nI'll write the release notes tonight."),
        (carol, "I'll run the usability check tomorrow morning and post the results here."),
    ]
    posted = [say(person["token"], design, text) for person, text in conversation]

    session = sessions(viewport={"width": 1280, "height": 800}, timezone_id=VIEWER_TZ)
    page = session.login("alice", PASSWORD)
    expect(page.locator(f'#room-list li[data-room-id="{trip}"] .badge')).to_have_text("3")
    expect(page.locator(f'#room-list li[data-room-id="{direct}"] .badge')).to_have_text("1")
    expect(page.locator(f'#room-list li[data-room-id="{direct}"] .room-name')).to_have_text("bob")
    expect(page.locator(f'#room-list li[data-room-id="{trip}"] .room-sub')).to_have_text(
        "carol: 5 works. Who brings the board games?"
    )
    open_room(page, design)
    expect(page.locator("#messages li")).to_have_count(len(conversation))

    # Times are the viewer's clock time.
    first_time = page.locator(f'#messages li[data-seq="{posted[0]["seq"]}"] time')
    shown = first_time.text_content().replace("\u202f", " ").replace("\xa0", " ")
    assert shown == local_clock(posted[0]["created_at"])

    # Bob starts typing (a phone app: token auth, no browser).
    with connect(f"ws://127.0.0.1:{server.port}/ws/", additional_headers={"Authorization": f"Token {bob['token']}"}) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "hello"
        ws.send(json.dumps({"type": "resume", "rooms": {}}))
        ws.send(json.dumps({"type": "typing", "room": design}))
        expect(page.locator("#typing")).to_have_text("bob is typing…")
        expect(page.locator("#typing")).to_have_css("opacity", "1")
        page.mouse.move(0, 0)
        DOCS.mkdir(exist_ok=True)
        page.screenshot(path=DOCS / "chat.png")
