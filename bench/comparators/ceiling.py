"""The ceiling: one process, the `websockets` library, each message encoded once and broadcast.

No Redis, no database, no Django. It speaks the frames the benchmark uses
(hello, ping/pong, message.send → message.new to everyone else + message.ack
to the sender), with tokens read from the seed file the harness wrote, so
the load client cannot tell it from the product except by speed.

    python -m bench.comparators.ceiling --port PORT --users SEED.json [SEED.json …]
"""

import argparse
import asyncio
import json
import logging
from datetime import datetime, timezone
from http import HTTPStatus

from websockets.asyncio.server import broadcast, serve

from bench.procs import die_with_parent, raise_nofile


def dumps(frame):
    return json.dumps(frame, separators=(",", ":"))


class Ceiling:
    def __init__(self, users):
        self.users = users  # token -> {"id", "username"}
        self.clients = set()
        self.seq = {}
        self.next_id = 1

    def authenticate(self, connection, request):
        value = request.headers.get("Authorization", "")
        scheme, _, key = value.partition(" ")
        if scheme.lower() != "token" or key.strip() not in self.users:
            return connection.respond(HTTPStatus.FORBIDDEN, "no\n")
        return None

    async def handler(self, ws):
        key = ws.request.headers["Authorization"].partition(" ")[2].strip()
        user = self.users[key]
        rooms = [{"id": room, "name": f"room {room}", "kind": "group", "role": "member", "last_seq": self.seq.get(room, 0), "unread": 0, "created_at": None} for room in user["rooms"]]
        await ws.send(dumps({"type": "hello", "user": {"id": user["id"], "username": user["username"]}, "rooms": rooms}))
        self.clients.add(ws)
        try:
            async for text in ws:
                try:
                    frame = json.loads(text)
                except ValueError:
                    await ws.send(dumps({"type": "error", "code": "invalid", "detail": "Not JSON."}))
                    continue
                kind = frame.get("type")
                if kind == "ping":
                    await ws.send('{"type":"pong"}')
                elif kind == "message.send":
                    room = frame.get("room")
                    seq = self.seq[room] = self.seq.get(room, 0) + 1
                    message = {
                        "id": self.next_id,
                        "room": room,
                        "seq": seq,
                        "sender": {"id": user["id"], "username": user["username"]},
                        "body": frame.get("body"),
                        "client_id": frame.get("client_id"),
                        "created_at": datetime.now(timezone.utc).isoformat(),
                    }
                    self.next_id += 1
                    text = dumps({"type": "message.new", "message": message})  # encoded once
                    broadcast((c for c in self.clients if c is not ws), text)
                    await ws.send(dumps({"type": "message.ack", "client_id": frame.get("client_id"), "message": message}))
                else:
                    await ws.send(dumps({"type": "error", "code": "unknown_type", "detail": str(kind)}))
        finally:
            self.clients.discard(ws)


async def main(port, seed_files):
    users = {}
    for path in seed_files:
        with open(path) as f:
            seed = json.load(f)
        for user in seed["users"]:
            entry = users.setdefault(user["token"], {"id": user["id"], "username": user["username"], "rooms": []})
            if seed.get("room") is not None:
                entry["rooms"].append(seed["room"])
    ceiling = Ceiling(users)
    async with serve(
        ceiling.handler,
        "127.0.0.1",
        port,
        compression=None,
        process_request=ceiling.authenticate,
        max_size=64 * 1024,
        backlog=4096,
    ):
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    raise_nofile()
    die_with_parent()
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--users", nargs="+", required=True)
    args = parser.parse_args()
    # The harness's readiness probes are not WebSocket handshakes; don't log them as failures.
    logging.getLogger("websockets.server").setLevel(logging.CRITICAL)
    try:
        asyncio.run(main(args.port, args.users))
    except KeyboardInterrupt:
        pass
