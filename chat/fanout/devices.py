"""One device connection's outbound side: a bounded outbox and its writer.

Level 2 never awaits a socket: it appends the (shared, already encoded)
frame to each target device's outbox and moves on. Each device has its own
writer task that drains the outbox into the ASGI server, so a slow socket
only ever blocks its own writer. A device whose outbox overflows is closed
with 4008 instead of silently losing a frame in the middle of its stream.

How a stalled socket becomes visible depends on the server:
- uvicorn: its ASGI `send` waits while the socket's buffer is full, so the
  writer stops and the outbox fills.
- daphne: `send` never waits (Twisted buffers without limit), so the device
  writes through a `wire.DaphneSocket`: Twisted pauses it when the socket's
  write buffer passes 64 KiB, and frames wait in the outbox from then on.
  While the socket keeps up, a frame is written at once, with no writer task
  in between (the writer exists only once a device has fallen behind).
"""

import asyncio
import logging
from collections import deque

logger = logging.getLogger(__name__)

SLOW_CLOSE_CODE = 4008


class Device:
    """The outbound side of one WebSocket connection."""

    def __init__(
        self, *, user_id, channel, send, max_frames, max_bytes, wire=None, on_closed_slow=None, credential=None
    ):
        self.user_id = user_id
        self.channel = channel
        # A fingerprint of how the device authenticated (which API token or
        # session): revoking that credential closes it (see chat.auth).
        self.credential = credential
        self.closed = False
        self._send = send
        self._max_frames = max_frames
        self._max_bytes = max_bytes
        self._on_closed_slow = on_closed_slow
        self._outbox = deque()
        self._outbox_bytes = 0
        self._wake = asyncio.Event()
        self._emptied = asyncio.Event()
        self._wire = wire
        # Per room: the highest seq this device was sent as message.new.
        self._seen = {}
        # Per room being resumed: live (seq, frame) held until the replay is out.
        self._held = {}
        self._hold_all = False
        self._writer = None

    def push(self, text):
        """Send or queue a frame; close the device with 4008 if its outbox overflows."""
        if self.closed:
            return
        if not self._outbox and self._wire is not None and self._wire.writable():
            self._wire.write(text)
            return
        self._outbox.append(text)
        self._outbox_bytes += len(text)
        if len(self._outbox) > self._max_frames or self._outbox_bytes > self._max_bytes:
            self.close_slow()
            return
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write())
        self._wake.set()

    def push_message(self, room, seq, text):
        """Queue a message.new frame unless this device was already sent that seq."""
        if self._hold_all or room in self._held:
            self._held.setdefault(room, []).append((seq, text))
            self._count(text)
            if self._outbox_bytes > self._max_bytes:
                self.close_slow()
        elif seq > self._seen.get(room, 0):
            self._seen[room] = seq
            self.push(text)

    def hold(self, rooms=None):
        """Hold live messages of these rooms (None: all) until `release`.

        A new device holds everything until its first frame, so that a
        `resume` sent first can be answered before any live message and the
        device still sees each room's seq strictly increasing.
        """
        if rooms is None:
            self._hold_all = True
        else:
            for room in rooms:
                self._held.setdefault(room, [])

    async def replay(self, room, after_seq, frames):
        """Send missed (seq, frame) of a held room, ahead of its held live messages.

        The client saw up to `after_seq`; what this connection already carried
        it has too, so a replay never goes back behind that. A long replay is
        paced by the writer: it never fills more than half the outbox, so a
        long absence is not mistaken for a slow device.
        """
        self._seen[room] = max(after_seq, self._seen.get(room, 0))
        for seq, text in frames:
            if seq <= self._seen[room]:
                continue
            while not self.closed and self._half_full():
                self._emptied.clear()
                await self._emptied.wait()
            self._seen[room] = seq
            self.push(text)

    def release(self):
        """Send the live messages held so far, in seq order, and stop holding."""
        held, self._held = self._held, {}
        self._hold_all = False
        for room, frames in held.items():
            for seq, text in frames:
                self._count(text, -1)
                self.push_message(room, seq, text)

    def _half_full(self):
        return len(self._outbox) * 2 > self._max_frames or self._outbox_bytes * 2 > self._max_bytes

    def _count(self, text, sign=1):
        self._outbox_bytes += sign * len(text)

    def close_slow(self):
        """Close with 4008: the device fell behind and no frame may be dropped."""
        if self.closed:
            return
        self.close(SLOW_CLOSE_CODE)
        if self._on_closed_slow is not None:
            self._on_closed_slow(self)

    def close(self, code=1000):
        """Stop writing and close the socket with this code."""
        if self.closed:
            return
        self.closed = True
        self._outbox.clear()
        self._outbox_bytes = 0
        self._emptied.set()
        if self._writer is not None:
            self._writer.cancel()
        # A socket that stopped reading may never take the close frame either;
        # the server's own ping time-out reaps it then.
        asyncio.get_running_loop().create_task(self._send_close(code))

    def detach(self):
        """Forget the device without sending anything: its socket is gone."""
        self.closed = True
        self._outbox.clear()
        self._emptied.set()
        if self._writer is not None:
            self._writer.cancel()

    async def _send_close(self, code):
        try:
            await asyncio.wait_for(self._send({"type": "websocket.close", "code": code}), 5)
        except Exception:
            logger.debug("close of device %s not sent", self.channel, exc_info=True)

    async def _write(self):
        outbox, wake, wire = self._outbox, self._wake, self._wire
        send = self._send
        try:
            while True:
                if not outbox:
                    self._emptied.set()
                    wake.clear()
                    await wake.wait()
                    continue
                if wire is not None and not wire.flowing.is_set():
                    await wire.flowing.wait()
                    continue
                text = outbox.popleft()
                self._outbox_bytes -= len(text)
                if wire is not None and wire.writable():
                    wire.write(text)
                else:
                    await send({"type": "websocket.send", "text": text})
        except asyncio.CancelledError:
            raise
        except Exception:
            # The connection is gone; the consumer's disconnect handler detaches us.
            logger.debug("writer of device %s stopped", self.channel, exc_info=True)
            self.closed = True
