"""One consumer per device connection at /ws/: parse a frame, call a service, reply.

Live events do not pass through this consumer's dispatch: the layer writes
them straight into the device's outbox (see chat.fanout.devices), which is
what keeps per-message cost flat as rooms grow. What comes here is only the
device's own frames.
"""

import asyncio
import json
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from . import auth, events, selectors, services
from .errors import DATABASE_UNAVAILABLE, UNAVAILABLE_DETAIL, ChatError, Invalid
from .fanout import wire
from .ratelimit import SlidingWindow

logger = logging.getLogger(__name__)

UNAUTHENTICATED = 4001
TOO_BIG = 1009
# A device that sends nothing still gets live messages after this long.
LIVE_AFTER_SECONDS = 1.0
RESUME_PAGE = 200
# Ids and seqs are bigint columns: a larger number is a malformed field, and
# must not reach the database driver (SQLite raises OverflowError on it).
MAX_INT = 2**63 - 1


def dumps(frame):
    return json.dumps(frame, separators=(",", ":"))


def non_negative_int(value):
    """Whether a JSON value is an integer an id or seq column can hold (true is not 1)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_INT


def int_field(frame, name):
    value = frame.get(name)
    if not non_negative_int(value):
        raise Invalid(f"{name} must be a non-negative integer.", field=name)
    return value


class DeviceConsumer(AsyncWebsocketConsumer):
    device = None

    async def connect(self):
        self.user = self.scope.get("user")
        if self.user is None or not self.user.is_authenticated:
            await self.close(code=UNAUTHENTICATED)
            return
        await self.accept()
        self.send_rate = SlidingWindow(settings.CHAT_DEVICE_MESSAGE_RATE)
        self.typing_rate = SlidingWindow(settings.CHAT_DEVICE_TYPING_RATE)
        credential = self.scope.get(auth.CREDENTIAL_SCOPE_KEY)
        self.device = await self.channel_layer.attach_device(
            user_id=self.user.pk,
            channel=self.channel_name,
            send=self.base_send,
            wire=self.scope.get(wire.SCOPE_KEY),
            credential=auth.fingerprint(credential),
        )
        if not await database_sync_to_async(auth.credential_valid)(credential, self.user.pk):
            # Revoked between the handshake's lookup and the attach above: the
            # revocation found no device to close then, so close it now.
            self.channel_layer.detach_device(self.device)
            self.device = None
            return await self.close(code=UNAUTHENTICATED)
        rooms = await database_sync_to_async(selectors.room_summaries)(self.user)
        self.device.push(dumps({"type": "hello", "user": events.user_data(self.user), "rooms": rooms}))
        self.live_timer = asyncio.get_running_loop().call_later(LIVE_AFTER_SECONDS, self.device.release)
        self.first_frame = True

    async def disconnect(self, code):
        if self.device is not None:
            self.live_timer.cancel()
            self.channel_layer.detach_device(self.device)

    def reply(self, frame):
        self.device.push(dumps(frame))

    def refuse(self, code, detail, ref=None):
        self.reply({"type": "error", "code": code, "detail": detail, "ref": ref})

    async def receive(self, text_data=None, bytes_data=None):
        if self.device is None or self.device.closed:
            return
        if text_data is None:
            return self.refuse("invalid", "Frames must be JSON text.")
        if len(text_data) > settings.CHAT_MAX_FRAME_BYTES or len(text_data.encode()) > settings.CHAT_MAX_FRAME_BYTES:
            return await self.close(code=TOO_BIG)
        try:
            frame = json.loads(text_data)
        except (ValueError, RecursionError):
            # RecursionError: arrays or objects nested thousands deep fit in 64 KiB.
            return self.refuse("invalid", "Frames must be JSON.")
        if not isinstance(frame, dict):
            return self.refuse("invalid", "A frame must be a JSON object.")
        kind = frame.get("type")
        handler = self.handlers.get(kind) if isinstance(kind, str) else None
        ref = frame.get("client_id") if isinstance(frame.get("client_id"), str) else None
        try:
            if handler is None:
                self.refuse("unknown_type", f"Unknown frame type {kind!r}.")
            else:
                await handler(self, frame)
        except ChatError as error:
            self.refuse(error.code, error.detail, ref)
        except DATABASE_UNAVAILABLE as error:
            # A locked SQLite file or a dropped connection: transient and rolled
            # back, so nothing was stored. Say so ("unavailable": retry with the
            # same client_id) and keep the connection, instead of crashing the
            # consumer. database_sync_to_async ran close_old_connections after
            # the call, which discards a broken connection; the retry reconnects.
            logger.warning("database unavailable for a %s frame: %s", kind, error)
            self.refuse("unavailable", UNAVAILABLE_DETAIL, ref)
        finally:
            if self.first_frame:
                # The first frame opens the live stream (a resume has done it already).
                self.first_frame = False
                self.live_timer.cancel()
                self.device.release()

    async def on_ping(self, frame):
        self.reply({"type": "pong"})

    async def on_message_send(self, frame):
        room = int_field(frame, "room")
        client_id = frame.get("client_id")
        if not self.send_rate.allow():
            return self.refuse("rate_limited", "Too many messages; slow down.", client_id if isinstance(client_id, str) else None)
        message, _ = await database_sync_to_async(services.post_message)(
            room_id=room, sender=self.user, body=frame.get("body"), client_id=client_id, device=self.channel_name
        )
        self.reply({"type": "message.ack", "client_id": message.client_id, "message": events.message_data(message)})

    async def on_typing(self, frame):
        room = int_field(frame, "room")
        if self.typing_rate.allow():
            await database_sync_to_async(services.relay_typing)(user=self.user, room_id=room)

    async def on_read(self, frame):
        room, seq = int_field(frame, "room"), int_field(frame, "seq")
        await database_sync_to_async(services.mark_read)(user=self.user, room_id=room, seq=seq)

    async def on_resume(self, frame):
        rooms = frame.get("rooms")
        if not isinstance(rooms, dict):
            raise Invalid("rooms must be an object of room id to last seq seen.", field="rooms")
        wanted = {}
        for key, seq in rooms.items():
            # ASCII digits only: str.isdigit() is also true of "²", which int() refuses.
            room = int(key) if key.isascii() and key.isdigit() and len(key) <= 19 else None
            if not (non_negative_int(room) and non_negative_int(seq)):
                raise Invalid("rooms must map room ids to non-negative integers.", field="rooms")
            wanted[room] = seq
        self.device.hold(wanted)
        try:
            for room, after in wanted.items():
                await self.replay_room(room, after)
        finally:
            self.device.release()
        self.reply({"type": "resume.done"})

    async def replay_room(self, room, after):
        """Send the room's messages after `after`, page by page, paced by the device."""
        try:
            await database_sync_to_async(selectors.access_membership)(user=self.user, room_id=room)
        except ChatError:
            return self.refuse("not_member", f"Not a member of room {room}.")
        cursor = after
        while not self.device.closed:
            page, more = await database_sync_to_async(selectors.messages_page)(
                room_id=room, after=cursor, limit=RESUME_PAGE
            )
            await self.device.replay(room, after, [(m.seq, dumps(events.message_new(m))) for m in page])
            if not more:
                return
            cursor = page[-1].seq

    handlers = {
        "ping": on_ping,
        "message.send": on_message_send,
        "typing": on_typing,
        "read": on_read,
        "resume": on_resume,
    }
