"""The load generator: many WebSocket devices in one process, kept lean.

Each device is an asyncio.Protocol driving websockets' Sans-I/O client
(`websockets.client.ClientProtocol`, no compression extension offered), so a
received frame costs one parse and a few byte searches: no task, no queue
and no json.loads per frame. A `message.new` frame is recognised by the
benchmark body `B|<index>|<send monotonic ns>|…`, found by byte search; its
latency is receipt time minus that send time (time.monotonic_ns() is
CLOCK_MONOTONIC, one clock for every process on the machine).

The parent (bench.fanout) drives each load process over a multiprocessing
Pipe: connect devices, stall/unstall some, collect statistics, close.
"""

import asyncio
import os
import socket
import time
import traceback
from array import array

from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from .procs import die_with_parent, raise_nofile

MARK = b'"B|'
SEQ = b'"seq":'
TCP_ESTABLISHED = 1
monotonic_ns = time.monotonic_ns


def body_for(index, pad):
    """(body, send ns): marker, index and send time in ns, padded to `pad` characters."""
    sent = monotonic_ns()
    head = f"B|{index}|{sent}|"
    return head + "x" * max(0, pad - len(head)), sent


def parse_mark(data, j):
    """(index, send ns) from a frame holding MARK at j."""
    k1 = data.find(b"|", j + 3)
    k2 = data.find(b"|", k1 + 1)
    return int(data[j + 3 : k1]), int(data[k1 + 1 : k2])


def parse_seq(data):
    j = data.find(SEQ)
    if j < 0:
        return None
    j += 6
    if data[j : j + 1] == b" ":
        j += 1
    k = j
    while 48 <= data[k] <= 57:
        k += 1
    return int(data[j:k])


class Device(asyncio.Protocol):
    """One WebSocket connection; frames go to `sink.on_frame(device, data, now)`."""

    def __init__(self, sink, dev_id, host, port, token, path="/ws/"):
        self.sink = sink
        self.dev_id = dev_id
        self.port = port
        self.token = token
        self.proto = ClientProtocol(parse_uri(f"ws://{host}:{port}{path}"), max_size=8 * 1024 * 1024)
        self.transport = None
        self.live = asyncio.get_running_loop().create_future()
        self.state = "connecting"
        self.last_seq = 0
        self.received = 0
        self.stalled = False
        self.close_code = None
        self.closed_at = None
        self.dropped_at = None  # when the TCP connection left ESTABLISHED while stalled

    # asyncio.Protocol

    def connection_made(self, transport):
        self.transport = transport
        request = self.proto.connect()
        request.headers["Authorization"] = f"Token {self.token}"
        self.proto.send_request(request)
        self._flush()

    def data_received(self, data):
        now = monotonic_ns()
        proto = self.proto
        proto.receive_data(data)
        for event in proto.events_received():
            if type(event) is Response:
                if event.status_code != 101:
                    self._fail(f"handshake status {event.status_code}")
                else:
                    self.state = "open"
            elif event.opcode is Opcode.TEXT:
                self.sink.on_frame(self, event.data, now)
            elif event.opcode is Opcode.CLOSE:
                close = proto.close_rcvd
                self.close_code = close.code if close is not None else 1005
                self.closed_at = now
        self._flush()
        if proto.close_expected() and self.transport is not None:
            self.transport.close()

    def eof_received(self):
        self.proto.receive_eof()
        self._flush()
        return False

    def connection_lost(self, exc):
        if self.closed_at is None:
            self.closed_at = monotonic_ns()
            if self.close_code is None:
                self.close_code = 1006
        if self.state != "closed":
            prev, self.state = self.state, "closed"
            if not self.live.done():
                self.live.set_exception(ConnectionError(f"closed during {prev}: {self.close_code} {exc or ''}"))
            self.sink.on_closed(self, prev)

    # helpers

    def _flush(self):
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        for chunk in self.proto.data_to_send():
            if chunk:
                transport.write(chunk)
            else:
                if transport.can_write_eof():
                    transport.write_eof()

    def _fail(self, why):
        if not self.live.done():
            self.live.set_exception(ConnectionError(why))
        if self.transport is not None:
            self.transport.abort()

    def send_text(self, text):
        if self.transport is None or self.transport.is_closing():
            return False
        self.proto.send_text(text.encode() if isinstance(text, str) else text)
        self._flush()
        return True

    def pause(self):
        self.stalled = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume(self):
        self.stalled = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def tcp_state(self):
        """The kernel's TCP state of this connection (1 = established); None if unknown."""
        if self.transport is None:
            return None
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return None
        try:
            return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
        except OSError:
            return None

    def close(self, code=1000):
        if self.transport is None or self.transport.is_closing():
            return
        if self.state == "open" or self.state == "live":
            try:
                self.proto.send_close(code)
                self._flush()
            except Exception:  # noqa: BLE001 - closing anyway
                pass
        self.transport.close()

    def abort(self):
        if self.transport is not None:
            self.transport.abort()


class Generator:
    """All the devices of one load process, and their statistics."""

    def __init__(self, conn, index):
        self.conn = conn
        self.index = index
        self.loop = asyncio.get_running_loop()
        self.devices = {}
        self.done = self.loop.create_future()
        self.reset(False)

    # statistics

    def reset(self, notify, expected=None):
        self.notify = notify
        self.idx = array("q")
        self.lat = array("q")  # microseconds
        self.per_msg = {}  # index -> [count, first ns, last ns]
        self.disorder = 0
        self.other = 0
        self.unexpected_closes = []
        live = sum(1 for d in self.devices.values() if d.state == "live" and not d.stalled)
        self.expected = live if expected is None else expected
        self.cpu0 = os.times()

    def on_frame(self, dev, data, now):
        j = data.find(MARK)
        if j >= 0 and b"message.new" in data[:32]:
            index, sent = parse_mark(data, j)
            seq = parse_seq(data)
            if seq is not None:
                if seq <= dev.last_seq:
                    self.disorder += 1
                dev.last_seq = seq
            dev.received += 1
            self.idx.append(index)
            self.lat.append((now - sent) // 1000)
            m = self.per_msg.get(index)
            if m is None:
                self.per_msg[index] = m = [0, now, now]
            m[0] += 1
            if now > m[2]:
                m[2] = now
            if self.notify and m[0] == self.expected:
                self.conn.send(("got", index, m[2], m[0]))
            return
        if data.startswith(b'{"type":"hello"') or data.startswith(b'{"type": "hello"'):
            if dev.state == "open":
                dev.state = "hello"
                dev.send_text(b'{"type":"ping"}')
            return
        if data.startswith(b'{"type":"pong"') or data.startswith(b'{"type": "pong"'):
            if dev.state == "hello":
                dev.state = "live"
                if not dev.live.done():
                    dev.live.set_result(True)
            return
        self.other += 1

    def on_closed(self, dev, prev_state):
        if prev_state == "live":
            self.unexpected_closes.append((dev.dev_id, dev.close_code, dev.closed_at, dev.stalled))

    # commands

    async def connect(self, devices, concurrency, timeout):
        sem = asyncio.Semaphore(concurrency)
        errors = {}
        ok = 0
        t0 = time.monotonic()

        async def one(dev_id, host, port, token):
            nonlocal ok
            async with sem:
                try:
                    _, dev = await asyncio.wait_for(
                        self.loop.create_connection(lambda: Device(self, dev_id, host, port, token), host, port),
                        timeout,
                    )
                    self.devices[dev_id] = dev
                    await asyncio.wait_for(asyncio.shield(dev.live), timeout)
                    ok += 1
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    key = f"{type(exc).__name__}: {exc}"[:120]
                    errors[key] = errors.get(key, 0) + 1

        await asyncio.gather(*(one(*d) for d in devices))
        return {"ok": ok, "failed": len(devices) - ok, "errors": errors, "seconds": time.monotonic() - t0}

    def stall(self, dev_ids):
        n = 0
        for dev_id in dev_ids:
            dev = self.devices.get(dev_id)
            if dev is not None:
                dev.pause()
                n += 1
        self.expected = sum(1 for d in self.devices.values() if d.state == "live" and not d.stalled)
        return n

    def stalled_state(self):
        """Per stalled device: (dev_id, TCP state, dropped_at ns)."""
        now = monotonic_ns()
        out = []
        for dev in self.devices.values():
            if dev.stalled:
                state = dev.tcp_state()
                if dev.dropped_at is None and (state is None or state != TCP_ESTABLISHED or dev.state == "closed"):
                    dev.dropped_at = now
                out.append((dev.dev_id, state, dev.dropped_at))
        return out

    async def unstall(self, settle):
        """Resume reading the stalled devices and give them `settle` s to read what is buffered."""
        stalled = [d for d in self.devices.values() if d.stalled]
        for dev in stalled:
            dev.resume()
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline and any(d.state != "closed" and d.close_code is None for d in stalled):
            await asyncio.sleep(0.05)
        return [(d.dev_id, d.close_code, d.closed_at, d.dropped_at, d.received) for d in stalled]

    def collect(self):
        cpu = os.times()
        live = [d for d in self.devices.values() if d.state == "live"]
        return {
            "idx": self.idx.tobytes(),
            "lat": self.lat.tobytes(),
            "per_msg": {k: tuple(v) for k, v in self.per_msg.items()},
            "disorder": self.disorder,
            "other": self.other,
            "live": len(live),
            "live_healthy": sum(1 for d in live if not d.stalled),
            "unexpected_closes": list(self.unexpected_closes),
            "cpu": (cpu.user - self.cpu0.user) + (cpu.system - self.cpu0.system),
        }

    def count(self):
        return {"received": len(self.idx), "live": sum(1 for d in self.devices.values() if d.state == "live")}

    async def close_all(self, timeout):
        devices = list(self.devices.values())
        self.devices = {}
        for dev in devices:
            if dev.stalled:
                dev.abort()
            else:
                dev.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(d.state != "closed" for d in devices):
            await asyncio.sleep(0.05)
        for dev in devices:
            if dev.state != "closed":
                dev.abort()
        await asyncio.sleep(0)
        return {"closed": len(devices)}

    async def handle(self, op, args):
        if op == "connect":
            return await self.connect(args["devices"], args.get("concurrency", 64), args.get("timeout", 20.0))
        if op == "reset":
            self.reset(args.get("notify", False))
            return {"expected": self.expected}
        if op == "stall":
            return {"stalled": self.stall(args["dev_ids"])}
        if op == "stalled_state":
            return {"stalled": self.stalled_state()}
        if op == "unstall":
            return {"devices": await self.unstall(args.get("settle", 2.0))}
        if op == "collect":
            return self.collect()
        if op == "count":
            return self.count()
        if op == "close_all":
            return await self.close_all(args.get("timeout", 3.0))
        if op == "exit":
            await self.close_all(1.0)
            if not self.done.done():
                self.done.set_result(None)
            return {}
        raise ValueError(f"unknown op {op!r}")

    def on_command(self):
        while self.conn.poll():
            try:
                call_id, op, args = self.conn.recv()
            except EOFError:
                self.loop.remove_reader(self.conn.fileno())
                if not self.done.done():
                    self.done.set_result(None)
                return
            self.loop.create_task(self._run(call_id, op, args))

    async def _run(self, call_id, op, args):
        try:
            result = await self.handle(op, args)
            self.conn.send(("reply", call_id, True, result))
        except Exception:  # noqa: BLE001 - the parent reports it
            self.conn.send(("reply", call_id, False, traceback.format_exc()))


def main(conn, index, use_uvloop=True):
    """Entry point of a load process (multiprocessing target)."""
    raise_nofile()
    die_with_parent()
    if use_uvloop:
        try:
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        except ImportError:
            pass

    async def run():
        gen = Generator(conn, index)
        loop = asyncio.get_running_loop()
        loop.add_reader(conn.fileno(), gen.on_command)
        # libuv makes a polled fd non-blocking; the pipe's send() needs it blocking.
        os.set_blocking(conn.fileno(), True)
        conn.send(("ready", os.getpid()))
        await gen.done

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


