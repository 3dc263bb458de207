"""The chat page in a real browser against a real server: live delivery, typing, read markers, safety."""

import json
import re

import pytest
from .support import open_room
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def message(page, text):
    return page.locator("#messages .msg-body", has_text=text)


def badge(page, room_id):
    return page.locator(f'#room-list li[data-room-id="{room_id}"] .badge')


def test_live_message_reaches_both_tabs_and_typing_shows(sessions, people):
    room, alice, bob = people["room"], people["alice"], people["bob"]
    alice_session = sessions()
    alice_one = alice_session.login(alice["username"])
    alice_two = alice_session.tab()
    bob_page = sessions().login(bob["username"])
    for page in (alice_one, alice_two, bob_page):
        open_room(page, room)

    # Bob sends with Enter; it shows at once on his page, then in both of alice's tabs.
    bob_page.locator("#input").press_sequentially("hello from bob")
    bob_page.locator("#input").press("Enter")
    expect(bob_page.locator("#input")).to_have_value("")
    for page in (alice_one, alice_two):
        expect(message(page, "hello from bob")).to_be_visible()
        expect(message(page, "hello from bob")).to_have_count(1)
    # On bob's page the pending copy became the stored message (acknowledged).
    expect(bob_page.locator("#pending li")).to_have_count(0)
    expect(message(bob_page, "hello from bob")).to_have_count(1)

    # Shift+Enter breaks the line; Enter sends.
    bob_page.locator("#input").press_sequentially("line one")
    bob_page.locator("#input").press("Shift+Enter")
    bob_page.locator("#input").press_sequentially("line two")
    expect(bob_page.locator("#input")).to_have_value("line one\nline two")
    bob_page.locator("#input").press("Enter")
    expect(message(alice_one, "line two")).to_have_text("line one\nline two")

    # Typing in one of alice's tabs shows on bob's page, then fades.
    alice_one.locator("#input").press_sequentially("I am wri")
    expect(bob_page.locator("#typing")).to_have_text(f"{alice['username']} is typing…")
    expect(bob_page.locator("#typing")).to_have_class(re.compile(r"\bvisible\b"))
    expect(bob_page.locator("#typing")).not_to_have_class(re.compile(r"\bvisible\b"), timeout=12000)
    # Nobody sees their own typing.
    expect(alice_two.locator("#typing")).not_to_have_class(re.compile(r"\bvisible\b"))

    # Messages are in seq order, each once, on every page.
    for page in (alice_one, alice_two, bob_page):
        seqs = [int(s) for s in page.locator("#messages li").evaluate_all("els => els.map(e => e.dataset.seq)")]
        assert seqs == sorted(set(seqs)) and len(seqs) == 2


def test_reading_in_one_tab_clears_the_badge_in_the_other(sessions, people, server):
    room, alice, bob = people["room"], people["alice"], people["bob"]
    alice_session = sessions()
    tab_one = alice_session.login(alice["username"])
    tab_two = alice_session.tab()

    server.post_message(bob["token"], room, "are you there?")
    server.post_message(bob["token"], room, "ping")
    for page in (tab_one, tab_two):
        expect(badge(page, room)).to_have_text("2")
        expect(badge(page, room)).to_be_visible()
    expect(tab_two).to_have_title("(2) Chat")

    open_room(tab_one, room)
    expect(message(tab_one, "ping")).to_be_visible()
    # The read marker moved on the server, which told alice's other tab.
    expect(badge(tab_two, room)).to_be_hidden()
    expect(badge(tab_one, room)).to_be_hidden()
    expect(tab_two).to_have_title("Chat")

    # And it stays read after a reload (the server's unread count, not the page's).
    tab_two.reload()
    expect(tab_two.locator("#conn")).to_have_attribute("data-state", "online")
    expect(tab_two.locator(f'#room-list li[data-room-id="{room}"]')).to_be_visible()
    expect(badge(tab_two, room)).to_be_hidden()


def test_message_bodies_are_text_never_html(sessions, people):
    room, alice, bob = people["room"], people["alice"], people["bob"]
    alice_session, bob_session = sessions(), sessions()
    alice_page = alice_session.login(alice["username"])
    bob_page = bob_session.login(bob["username"])
    open_room(alice_page, room)
    open_room(bob_page, room)

    evil = "<img src=x onerror=alert(1)>"
    bob_page.fill("#input", evil)
    bob_page.locator("#input").press("Enter")
    long_word = "W" * 1500
    bob_page.fill("#input", long_word)
    bob_page.locator("#input").press("Enter")

    for page in (alice_page, bob_page):
        expect(page.locator("#messages .msg-body").filter(has_text=long_word)).to_be_visible()
        shown = page.locator("#messages .msg-body").filter(has_text="onerror")
        expect(shown).to_have_text(evil)
        expect(shown).to_be_visible()
        assert page.locator("#scroller img").count() == 0
        assert page.locator("#room-list img").count() == 0
        # A long unbroken word wraps inside its bubble: nothing scrolls sideways.
        overflow = page.locator("#scroller").evaluate("el => el.scrollWidth - el.clientWidth")
        assert overflow <= 0
    # The room list preview is text too.
    expect(alice_page.locator(f'#room-list li[data-room-id="{room}"] .room-sub')).to_contain_text("W" * 20)
    assert alice_session.dialogs == [] and bob_session.dialogs == []


def test_history_loads_older_messages_on_scroll_up(sessions, people, server):
    room, alice, bob, carol = people["room"], people["alice"], people["bob"], people["carol"]
    total = 130
    for seq in range(1, total + 1):
        server.post_message((bob if seq % 2 else carol)["token"], room, f"history message {seq}")
    page = sessions().login(alice["username"])
    open_room(page, room)

    items = page.locator("#messages li")
    expect(items).to_have_count(50)
    expect(message(page, f"history message {total}")).to_be_in_viewport()
    for expected in (100, total):
        page.locator("#scroller").evaluate("el => { el.scrollTop = 0; }")
        expect(items).to_have_count(expected)
        # The reader's place is kept: the list did not jump to the top of the older page.
        assert page.locator("#scroller").evaluate("el => el.scrollTop") > 0
    expect(page.locator("#history-status")).to_have_text("This is the beginning of the conversation.")
    seqs = [int(s) for s in items.evaluate_all("els => els.map(e => e.dataset.seq)")]
    assert seqs == list(range(1, total + 1))


def test_create_group_add_member_and_direct_conversation(sessions, people):
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    alice_page = sessions().login(alice["username"])
    bob_page = sessions().login(bob["username"])
    carol_page = sessions().login(carol["username"])

    # A new group with bob in it.
    alice_page.click("#new-group")
    alice_page.fill("#group-name", "Project X")
    alice_page.locator("#group-search").press_sequentially(bob["username"])
    alice_page.locator("#dlg-group .picker-option", has_text=bob["username"]).click()
    expect(alice_page.locator("#dlg-group .chip")).to_have_text(re.compile(bob["username"]))
    alice_page.click("#dlg-group button[type=submit]")
    expect(alice_page.locator("#dlg-group")).to_be_hidden()
    expect(alice_page.locator("#room-title")).to_have_text("Project X")
    # Bob's open page learns of it at once (room.joined); carol's does not.
    expect(bob_page.locator("#room-list .room-name", has_text="Project X")).to_be_visible()
    expect(carol_page.locator("#room-list .room-name", has_text="Project X")).to_have_count(0)

    # Add carol by name.
    alice_page.click("#members-btn")
    expect(alice_page.locator("#member-list .member")).to_have_count(2)
    alice_page.locator("#members-search").press_sequentially(carol["username"])
    alice_page.locator("#dlg-members .picker-option", has_text=carol["username"]).click()
    alice_page.click("#add-members-btn")
    expect(alice_page.locator("#dlg-members [data-note]")).to_have_text(f"Added {carol['username']}.")
    expect(alice_page.locator("#member-list .member")).to_have_count(3)
    alice_page.locator("#dlg-members [data-close]").click()
    expect(carol_page.locator("#room-list .room-name", has_text="Project X")).to_be_visible()

    alice_page.fill("#input", "welcome, both of you")
    alice_page.locator("#input").press("Enter")
    carol_item = carol_page.locator("#room-list li", has=carol_page.locator(".room-name", has_text="Project X"))
    expect(carol_item.locator(".badge")).to_have_text("1")

    # A direct conversation: named after the other person on both sides.
    alice_page.click("#new-direct")
    alice_page.locator("#direct-search").press_sequentially(bob["username"])
    alice_page.locator("#dlg-direct .picker-option", has_text=bob["username"]).click()
    expect(alice_page.locator("#room-title")).to_have_text(bob["username"])
    alice_page.fill("#input", "psst, just between us")
    alice_page.locator("#input").press("Enter")
    bob_item = bob_page.locator("#room-list li", has=bob_page.locator(".room-name", has_text=alice["username"]))
    expect(bob_item.locator(".badge")).to_have_text("1")
    bob_item.locator("button").click()
    expect(message(bob_page, "psst, just between us")).to_be_visible()
    expect(bob_item.locator(".badge")).to_be_hidden()


def test_narrow_screen_shows_one_pane_at_a_time(sessions, people, server, tmp_path):
    room, alice, bob = people["room"], people["alice"], people["bob"]
    server.post_message(bob["token"], room, "hello on a small screen " + "long " * 40)
    phone = sessions(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = phone.login(alice["username"])
    expect(page.locator(".sidebar")).to_be_visible()
    expect(page.locator(".conversation")).to_be_hidden()
    page.screenshot(path=tmp_path / "phone-rooms.png")

    page.locator(f'#room-list li[data-room-id="{room}"] button').click()
    expect(page.locator(".conversation")).to_be_visible()
    expect(page.locator(".sidebar")).to_be_hidden()
    expect(message(page, "hello on a small screen")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=tmp_path / "phone-room.png")

    page.click("#back")
    expect(page.locator(".sidebar")).to_be_visible()
    expect(page.locator(".conversation")).to_be_hidden()


def test_failed_message_offers_retry_with_the_same_client_id(sessions, people, server):
    room, alice = people["room"], people["alice"]
    sends = []

    def route(ws):
        # Between the page and the real server: refuse the first message.send as the server would.
        upstream = ws.connect_to_server()

        def from_page(text):
            frame = json.loads(text)
            if frame["type"] == "message.send":
                sends.append(frame)
                if len(sends) == 1:
                    ws.send(json.dumps({"type": "error", "code": "rate_limited", "detail": "Too many messages; slow down.", "ref": frame["client_id"]}))
                    return
            upstream.send(text)

        ws.on_message(from_page)

    session = sessions()
    session.context.route_web_socket(re.compile(r"/ws/$"), route)
    page = session.login(alice["username"])
    open_room(page, room)
    page.fill("#input", "third time lucky")
    page.locator("#input").press("Enter")

    failed = page.locator("#pending li.failed")
    expect(failed.locator(".msg-status-text")).to_have_text("Not sent: Too many messages; slow down.")
    expect(failed.locator(".msg-body")).to_have_text("third time lucky")
    failed.get_by_role("button", name="Retry").click()
    expect(page.locator("#pending li")).to_have_count(0)
    expect(message(page, "third time lucky")).to_have_count(1)
    assert len(sends) == 2 and sends[0]["client_id"] == sends[1]["client_id"]
    status, data = server.api("GET", f"/api/rooms/{room}/messages/", alice["token"])
    assert [m["body"] for m in data["results"]] == ["third time lucky"]
    assert data["results"][0]["client_id"] == sends[0]["client_id"]
