"""Real processes for tests: a redis-server, and daphne workers on one database.

Every process is started on a free loopback port and stopped by pid. Waits
poll for the event with a deadline; nothing sleeps for a fixed time.
"""

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import websockets

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=15.0, what="condition"):
    """Poll predicate until it is true; fail with `what` after the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except (OSError, ValueError, KeyError):
            pass  # not up yet; anything else is a real failure
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


async def eventually(predicate, timeout=15.0, what="condition"):
    """`wait_for` for async tests: polls in a thread, so the event loop keeps serving sockets."""
    await asyncio.to_thread(wait_for, predicate, timeout, what)


def port_open(port):
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class RedisServer:
    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.port = free_port()
        self.proc = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: port_open(self.port), what=f"redis-server on {self.port}")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        wait_for(lambda: not port_open(self.port), what="redis-server to stop")

    def restart(self):
        self.stop()
        self.start()


class Worker:
    def __init__(self, env, port=None, server="daphne", args=(), log=None):
        self.env = env
        self.port = port or free_port()
        self.server = server
        self.args = list(args)
        self.proc = None
        # The worker's stderr (its log) goes to a file: a pipe nobody reads
        # would block a chatty worker once 64 KiB wait in it.
        self.log = Path(log) if log else Path(tempfile.mkstemp(prefix=f"worker-{self.port}-", suffix=".log")[1])

    @property
    def http(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self):
        return f"ws://127.0.0.1:{self.port}/ws/"

    def start(self):
        if self.server == "uvicorn":
            cmd = [PYTHON, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
                   *self.args, "chatproject.asgi:application"]
        else:
            cmd = [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), *self.args,
                   "chatproject.asgi:application"]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=log)
        wait_for(self.healthy, timeout=30, what=f"worker on {self.port}")
        return self

    def log_text(self):
        """Everything the worker has logged so far."""
        return self.log.read_text(errors="replace")

    def healthy(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"worker exited: {self.log_text()[-2000:]}")
        with urllib.request.urlopen(f"{self.http}/health/", timeout=2) as response:
            return response.status == 200

    def health(self):
        try:
            with urllib.request.urlopen(f"{self.http}/health/", timeout=2) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            return json.loads(error.read())

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def rss_kib(self):
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0


class Service:
    """A database, optionally a redis-server, and several workers sharing them."""

    def __init__(self, workdir, *, workers=2, redis=True, shards=1, extra_env=None, server="daphne", server_args=()):
        self.workdir = Path(workdir)
        self.shards = [RedisServer(self.workdir / f"redis{i}") for i in range(shards)] if redis else []
        self.redis = self.shards[0] if redis else None
        self.env = dict(os.environ)
        self.env.update(
            {
                "DATABASE_URL": f"sqlite:///{self.workdir / 'db.sqlite3'}",
                "CHAT_RATE_LIMITS": "0",
                "DJANGO_DEBUG": "1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.env.pop("REDIS_URL", None)
        self.env.update(extra_env or {})
        self.n_workers = workers
        self.server = server
        self.server_args = list(server_args)
        self.workers = []

    def start(self):
        self.workdir.mkdir(parents=True, exist_ok=True)
        for shard in self.shards:
            shard.start()
        if self.shards:
            self.env["REDIS_URL"] = ",".join(shard.url for shard in self.shards)
        self.manage("migrate", "-v0")
        self.workers = [
            Worker(self.env, server=self.server, args=self.server_args, log=self.workdir / f"worker{i}.log").start()
            for i in range(self.n_workers)
        ]
        return self

    def stop(self):
        for worker in self.workers:
            worker.stop()
        for shard in self.shards:
            shard.stop()

    def manage(self, *args):
        result = subprocess.run(
            [PYTHON, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            raise RuntimeError(result.stderr[-3000:])
        return result.stdout

    def seed(self, count, prefix, room=None):
        args = ["seed_users", "--count", str(count), "--prefix", prefix]
        if room:
            args += ["--room", room]
        return json.loads(self.manage(*args))

    def api(self, method, path, token, body=None, worker=0):
        """Call the HTTP API; return (status, parsed JSON or None)."""
        status, _, data = self.call(method, path, token, body, worker=worker)
        return status, data

    def call(self, method, path, token, body=None, worker=0, timeout=10):
        """Call the HTTP API; return (status, headers, parsed JSON or None)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.workers[worker].http + path,
            data=data,
            method=method,
            headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read()
                return response.status, response.headers, json.loads(raw) if raw else None
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                return error.code, error.headers, json.loads(raw)
            except ValueError:
                return error.code, error.headers, None


class Device:
    """A WebSocket client with frame waiting helpers."""

    def __init__(self, ws):
        self.ws = ws
        self.frames = []

    @classmethod
    async def connect(cls, worker, token, *, start_live=True, **kwargs):
        ws = await websockets.connect(
            worker.ws_url, additional_headers={"Authorization": f"Token {token}"}, compression=None, **kwargs
        )
        device = cls(ws)
        device.hello = await device.next_frame("hello")
        if start_live:
            await device.send({"type": "ping"})
            await device.next_frame("pong")
        return device

    async def send(self, frame):
        await self.ws.send(json.dumps(frame))

    async def next_frame(self, kind=None, timeout=10.0):
        """The next frame of this type (others are kept in self.frames)."""
        async def read():
            while True:
                frame = json.loads(await self.ws.recv())
                self.frames.append(frame)
                if kind is None or frame.get("type") == kind:
                    return frame

        return await asyncio.wait_for(read(), timeout)

    async def collect(self, kind, count, timeout=10.0):
        """Wait until `count` frames of this type have arrived in total; return them."""
        async def read():
            while sum(1 for f in self.frames if f.get("type") == kind) < count:
                self.frames.append(json.loads(await self.ws.recv()))

        await asyncio.wait_for(read(), timeout)
        return [f for f in self.frames if f.get("type") == kind]

    async def close(self):
        await self.ws.close()


class PostgresServer:
    """A throw-away PostgreSQL cluster on a free loopback port (trust auth)."""

    def __init__(self):
        # Not under pytest's private temp folder: the postgres user must reach it.
        self.workdir = None
        self.port = free_port()
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        self.bindir = bins[-1].parent if bins else None
        # PostgreSQL will not run as root: run it as its own system user then.
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def available(self):
        return self.bindir is not None

    @property
    def url(self):
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *cmd):
        subprocess.run([*self.as_user, *cmd], check=True, capture_output=True, timeout=120)

    def start(self):
        self.workdir = Path(tempfile.mkdtemp(prefix="chat-pg-"))
        if self.as_user:
            shutil.chown(self.workdir, "postgres", "postgres")
        data = self.workdir / "data"
        self._run(str(self.bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(data), "-l", str(self.workdir / "log"), "-w", "start",
            "-o", f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 -c fsync=off",
        )
        return self

    def stop(self):
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.workdir / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.workdir, ignore_errors=True)


class StalledDevice:
    """A device that completes the handshake and then never reads a byte."""

    def __init__(self, worker, token):
        self.sock = socket.socket()
        # A tiny receive window, so the server's buffers fill as in real life, only sooner.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", worker.port))
        self.sock.sendall(
            (
                "GET /ws/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                f"Authorization: Token {token}\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head
        # Open the live stream (the server holds it until a first frame), then stop reading.
        self.sock.sendall(bytes([0x81, 0x80 | 15]) + b"\0\0\0\0" + b'{"type":"ping"}')

    def connection_ended(self):
        """Read what is left; True once the server has closed or dropped the connection."""
        self.sock.settimeout(0.5)
        try:
            while True:
                if not self.sock.recv(1 << 20):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()
