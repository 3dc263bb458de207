"""Device consumers of the comparators: same frames as the product's, another fan-out.

They speak the subset of the API contract the benchmark uses (hello, ping/
pong, message.send → message.ack, message.new) and store messages through
the product's own service, so only the fan-out differs.
"""

import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from chat import events, selectors, services
from chat.errors import ChatError

from .layers import room_group, user_group


def dumps(frame):
    return json.dumps(frame, separators=(",", ":"))


class BenchDeviceConsumer(AsyncWebsocketConsumer):
    groups_joined = ()

    async def connect(self):
        self.user = self.scope.get("user")
        if self.user is None or not self.user.is_authenticated:
            await self.close(code=4001)
            return
        await self.accept()
        rooms = await database_sync_to_async(selectors.room_summaries)(self.user)
        await self.join(rooms)
        await self.send(text_data=dumps({"type": "hello", "user": events.user_data(self.user), "rooms": rooms}))

    async def join(self, rooms):
        raise NotImplementedError

    async def leave(self):
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def disconnect(self, code):
        if getattr(self, "user", None) is not None and self.user.is_authenticated:
            await self.leave()

    async def receive(self, text_data=None, bytes_data=None):
        try:
            frame = json.loads(text_data or "")
        except ValueError:
            return await self.send(text_data=dumps({"type": "error", "code": "invalid", "detail": "Not JSON."}))
        kind = frame.get("type") if isinstance(frame, dict) else None
        if kind == "ping":
            await self.send(text_data=dumps({"type": "pong"}))
        elif kind == "message.send":
            try:
                message, _ = await database_sync_to_async(services.post_message)(
                    room_id=frame.get("room"),
                    sender=self.user,
                    body=frame.get("body"),
                    client_id=frame.get("client_id"),
                    device=self.channel_name,
                )
            except ChatError as error:
                return await self.send(
                    text_data=dumps({"type": "error", "code": error.code, "detail": error.detail, "ref": frame.get("client_id")})
                )
            await self.send(
                text_data=dumps({"type": "message.ack", "client_id": message.client_id, "message": events.message_data(message)})
            )
        else:
            await self.send(text_data=dumps({"type": "error", "code": "unknown_type", "detail": str(kind)}))

    async def chat_event(self, message):
        """A fan-out event from the channel layer: encode it and send it, as Channels tutorials do."""
        if message.get("exclude") == self.channel_name or self.user.pk in message.get("skip_users", ()):
            return
        await self.send(text_data=json.dumps(message["event"]))


class RoomGroupConsumer(BenchDeviceConsumer):
    """The stock way: each device joins its rooms' groups."""

    async def join(self, rooms):
        self.groups_joined = [room_group(room["id"]) for room in rooms]
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)


class UserGroupConsumer(BenchDeviceConsumer):
    """Each device joins its user's group; the sender sends once per member."""

    async def join(self, rooms):
        self.groups_joined = [user_group(self.user.pk)]
        await self.channel_layer.group_add(self.groups_joined[0], self.channel_name)


class SeedConsumer(BenchDeviceConsumer):
    """The seed's connection manager: the layer's subscriber sends to it directly."""

    async def join(self, rooms):
        self.channel_layer.register(self.user.pk, self)

    async def leave(self):
        self.channel_layer.unregister(self.user.pk, self)

    async def send_json(self, payload):
        # Starlette's WebSocket.send_json: one encoding per socket.
        await self.send(text_data=json.dumps(payload, separators=(",", ":"), ensure_ascii=False))


CONSUMERS = {
    "room-group": RoomGroupConsumer,
    "user-group": UserGroupConsumer,
    "seed": SeedConsumer,
}
