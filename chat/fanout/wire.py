"""How frames reach a daphne socket: flow control, and one cheap write per frame.

daphne takes every ASGI send into Twisted's unbounded buffer, so a stalled
socket never pushes back, and each send walks through Channels' session
wrapper, daphne's reply handler, autobahn's frame builder and Twisted's
writer registration (two epoll_ctl calls per frame under the asyncio
reactor). Profiled with py-spy during a fan-out to 1,000 devices per worker,
that walk was most of the worker's time. No library offers a cheaper way
in, so for a daphne connection this module

- registers a Twisted push producer on the socket: Twisted pauses it once
  more than 64 KiB wait to be written, which is how a device sees that its
  socket stopped keeping up (see devices.py);
- writes text frames itself: a message's frame is built once for all the
  devices it goes to, and written straight to the socket when Twisted holds
  nothing else for it, or appended to Twisted's buffer so the order holds.

Everything else (handshake, pings, close, reading) stays daphne's. Other
servers (uvicorn, the test communicator) get the plain ASGI send.
"""

import asyncio
import logging
import socket
import struct
from collections import Counter
from functools import partial

logger = logging.getLogger(__name__)

SCOPE_KEY = "chat.wire"

# How frames went out ("direct": whole, by this module's own send; "buffered":
# into Twisted's buffer), shown by the health endpoint: a daphne worker whose
# "direct" stays at 0 while it delivers is off the fast path.
written = Counter()

# The kernel's send buffer of a daphne WebSocket (Linux doubles the value asked for).
SEND_BUFFER_BYTES = 128 * 1024

# The frame of the last text written: one message fanned out to N devices is
# the same str object N times in a row, so it is encoded once.
_last_text = None
_last_frame = b""


def text_frame(text):
    """Return `text` as one unmasked RFC 6455 text frame (a server's frame)."""
    global _last_text, _last_frame
    if text is _last_text:
        return _last_frame
    payload = text.encode()
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x81, size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x81, 126, size)
    else:
        head = struct.pack("!BBQ", 0x81, 127, size)
    _last_text, _last_frame = text, head + payload
    return _last_frame


class DaphneSocket:
    """A daphne WebSocket connection, seen from below ASGI.

    It stands in for the producer already registered on the transport (the
    HTTP channel the WebSocket was upgraded from) and passes every call on
    to it, so Twisted's own flow control is unchanged.
    """

    def __init__(self, protocol, transport):
        self.protocol = protocol
        self.transport = transport
        self.flowing = asyncio.Event()
        self.flowing.set()
        self._inner = getattr(transport, "producer", None)
        sock = getattr(transport, "socket", None)
        # Behind TLS the bytes must go through Twisted; so must they if
        # autobahn compresses messages (daphne never negotiates it).
        self._direct = (
            isinstance(sock, socket.socket)
            and not getattr(transport, "TLS", False)
            and getattr(protocol, "_perMessageCompress", None) is None
        )
        self._sock = sock
        if isinstance(sock, socket.socket):
            # Left to autotuning, Linux lets a socket buffer up to 4 MiB that its
            # reader never takes, and a device that stopped reading is noticed
            # (and closed with 4008) only once that is full: 20 s at 200 KB/s.
            # A fixed buffer bounds that; 256 KiB still fills a LAN or a long
            # link at the rates a chat device reads.
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
            except OSError:
                logger.debug("could not set the socket's send buffer", exc_info=True)

    # Twisted's IPushProducer

    def pauseProducing(self):  # noqa: N802
        self.flowing.clear()
        if self._inner is not None:
            self._inner.pauseProducing()

    def resumeProducing(self):  # noqa: N802
        self.flowing.set()
        if self._inner is not None:
            self._inner.resumeProducing()

    def stopProducing(self):  # noqa: N802
        self.flowing.set()
        if self._inner is not None:
            self._inner.stopProducing()

    # Writing

    def writable(self):
        """Whether a frame written now goes out without growing any buffer past 64 KiB."""
        return (
            self.flowing.is_set()
            and self.protocol.state == self.protocol.STATE_OPEN
            and not self.transport.disconnecting
        )

    def write(self, text):
        """Write one text frame; never blocks. Call only while `writable()`."""
        frame = text_frame(text)
        transport = self.transport
        if self._direct and not transport.dataBuffer and not transport._tempDataBuffer:
            try:
                sent = self._sock.send(frame)
            except OSError:
                # Full (EAGAIN) or broken: Twisted's own write below buffers
                # the frame, or sees the error and closes the connection.
                sent = 0
            if sent == len(frame):
                written["direct"] += 1
                return
            frame = frame[sent:]
        written["buffered"] += 1
        transport.write(frame)


def watch_daphne_socket(send):
    """Return a DaphneSocket for a daphne connection's `send`, or None for other servers.

    daphne hands each application `partial(server.handle_reply, protocol)`;
    its protocol's transport is a Twisted one, which takes a push producer.
    """
    if not isinstance(send, partial) or not send.args:
        return None
    protocol = send.args[0]
    transport = getattr(protocol, "transport", None)
    if transport is None or not hasattr(transport, "registerProducer") or not hasattr(protocol, "state"):
        return None
    wire = DaphneSocket(protocol, transport)
    try:
        if wire._inner is not None:
            transport.unregisterProducer()
        transport.registerProducer(wire, True)
    except Exception:  # a transport that takes no producer: fall back to plain sends
        logger.debug("daphne connection refused a producer", exc_info=True)
        return None
    return wire


class WireMiddleware:
    """Put the daphne connection's DaphneSocket in the scope, as `chat.wire`.

    It must wrap the application outermost: middleware further in (Channels'
    sessions) wrap `send`, hiding the server's own callable.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket":
            scope = dict(scope, **{SCOPE_KEY: watch_daphne_socket(send)})
        return await self.app(scope, receive, send)
