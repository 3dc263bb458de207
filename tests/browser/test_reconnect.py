"""A server restart: the page shows it is offline, reconnects by itself, and misses nothing."""

import json

import pytest
from playwright.sync_api import expect

from .support import ChatServer

pytestmark = pytest.mark.browser


def test_server_restart_reconnects_and_resumes(sessions, people, server):
    room, alice, bob = people["room"], people["alice"], people["bob"]
    session = sessions()
    sockets = []  # every WebSocket the page opens, with the frames it sent and received

    def watch(ws):
        record = {"sent": [], "received": []}
        ws.on("framesent", lambda payload: record["sent"].append(json.loads(payload)))
        ws.on("framereceived", lambda payload: record["received"].append(json.loads(payload)))
        sockets.append(record)

    session.context.on("page", lambda p: p.on("websocket", watch))
    page = session.login(alice["username"])
    page.locator(f'#room-list li[data-room-id="{room}"] button').click()
    server.post_message(bob["token"], room, "before the restart")
    expect(page.locator("#messages .msg-body", has_text="before the restart")).to_be_visible()

    before = page.locator("#messages li").last.get_attribute("data-seq")
    server.kill()
    expect(page.locator("#conn")).to_have_attribute("data-state", "offline")
    expect(page.locator("#conn-banner")).to_be_visible()
    expect(page.locator("#conn-banner")).to_contain_text("Offline")

    # Written while offline: shown at once as waiting, sent after the reconnect.
    page.fill("#input", "written while offline")
    page.locator("#input").press("Enter")
    expect(page.locator("#pending li .msg-body")).to_have_text("written while offline")
    expect(page.locator("#pending li .msg-status-text")).to_have_text("Waiting for connection…")

    # Meanwhile bob posts over the HTTP API (through another worker on the same database).
    other = ChatServer(server.workdir)
    other.start()
    try:
        missed = other.post_message(bob["token"], room, "sent while you were away")
    finally:
        other.stop()

    server.start()  # the same port and database
    expect(page.locator("#conn")).to_have_attribute("data-state", "online", timeout=30000)
    expect(page.locator("#conn-banner")).to_be_hidden()
    away = page.locator("#messages .msg-body", has_text="sent while you were away")
    expect(away).to_be_visible()
    expect(away).to_have_count(1)
    expect(page.locator("#pending li")).to_have_count(0)
    offline = page.locator("#messages li", has=page.locator(".msg-body", has_text="written while offline"))
    expect(offline).to_have_count(1)
    assert int(offline.get_attribute("data-seq")) > missed["seq"]

    # Stored exactly once, and every seq shown once, in order.
    status, data = server.api("GET", f"/api/rooms/{room}/messages/", bob["token"])
    assert status == 200
    bodies = [m["body"] for m in data["results"]]
    assert bodies == ["before the restart", "sent while you were away", "written while offline"]
    seqs = [int(s) for s in page.locator("#messages li").evaluate_all("els => els.map(e => e.dataset.seq)")]
    assert seqs == [m["seq"] for m in data["results"]]

    # Every socket's first frame was `resume`; after the restart it carried the last seq seen,
    # and the missed message came back over the socket as a replay, before resume.done.
    opened = [record for record in sockets if record["received"]]  # attempts while down never opened
    assert len(opened) == 2
    assert all(record["sent"][0]["type"] == "resume" for record in opened)
    assert opened[0]["sent"][0]["rooms"] == {}
    last = opened[-1]
    assert last["sent"][0]["rooms"][str(room)] == int(before)
    kinds = [(f["type"], f.get("message", {}).get("seq")) for f in last["received"]]
    assert kinds[0][0] == "hello"
    assert kinds.index(("message.new", missed["seq"])) < kinds.index(("resume.done", None))
    # The offline message was sent once the connection was back, with its original client_id.
    sends = [f for record in sockets for f in record["sent"] if f["type"] == "message.send"]
    assert [f["body"] for f in sends] == ["written while offline"]


def test_reconnect_backoff_is_exponential_with_jitter(sessions, people):
    page = sessions().login(people["alice"]["username"])
    delays = page.evaluate(
        """async () => {
            const { backoffDelay } = await import("/static/chat/connection.js");
            return [1, 2, 3, 4, 5, 6, 7, 8, 9].map((n) => [backoffDelay(n, () => 0), backoffDelay(n, () => 1)]);
        }"""
    )
    lows, highs = [d[0] for d in delays], [d[1] for d in delays]
    assert highs[:6] == [500, 1000, 2000, 4000, 8000, 15000]  # doubling, then capped
    assert highs[6:] == [15000] * 3
    assert lows == [h // 2 for h in highs]  # jitter: anywhere in the upper half of the step


def test_a_long_absence_catches_up_without_a_reconnect_loop(sessions, people, server):
    """More missed than the server replays in one go: the page still catches up, once."""
    room, alice, bob = people["room"], people["alice"], people["bob"]
    session = sessions()
    hellos = []
    session.context.on(
        "page",
        lambda p: p.on("websocket", lambda ws: ws.on("framereceived", lambda payload: hellos.append(1) if '"hello"' in payload[:20] else None)),
    )
    page = session.login(alice["username"])
    page.locator(f'#room-list li[data-room-id="{room}"] button').click()
    server.post_message(bob["token"], room, "see you later")
    expect(page.locator("#messages .msg-body", has_text="see you later")).to_be_visible()

    server.kill()
    expect(page.locator("#conn")).to_have_attribute("data-state", "offline")
    server.bulk_messages(room, bob["username"], 1200, "while you were away #")
    server.start()

    expect(page.locator("#conn")).to_have_attribute("data-state", "online", timeout=30000)
    expect(page.locator("#messages .msg-body").last).to_have_text("while you were away #1199", timeout=30000)
    seqs = [int(s) for s in page.locator("#messages li").evaluate_all("els => els.map(e => e.dataset.seq)")]
    assert seqs[-1] == 1201 and seqs == list(range(seqs[0], 1202))
    assert page.locator("#conn").get_attribute("data-state") == "online"
    # One reconnect, maybe two (if the server refuses the big replay): not a loop.
    assert len(hellos) <= 3, len(hellos)
