"""Fan-out benchmark: the project's layer against the stock Channels ways, the seed's design and a ceiling.

    .venv/bin/python -m bench.fanout --quick     # seconds: small N, one round (CI-like)
    .venv/bin/python -m bench.fanout             # the README figures (tens of minutes; run on a quiet machine)

One command starts its own redis-server on a free loopback port, a fresh
SQLite database (`manage.py migrate` into a temporary file), seeds one room
per size with `manage.py seed_users`, then for each comparator starts K
worker processes (daphne by default), connects N = U·D devices from separate
load processes spread round-robin over the workers, and measures. Every
process it starts it stops by pid; every loop is bounded in count and time;
only 127.0.0.1 is used.

Scenarios (see bench/README.md): burst, rate, stall, idle, redis.
Output: bench/out/fanout-<time>.jsonl (+ latest.jsonl), bench/out/latest.md,
bench/out/fanout.png, and the claims printed at the end.
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

from . import loadgen, report
from .loadgen import MARK, Device, body_for, parse_mark
from .procs import ROOT, VENV_BIN, Managed, free_port, memory_kb, raise_nofile, self_cpu, snapshot

OUT = ROOT / "bench" / "out"
MANAGE = ROOT / "manage.py"


# Comparators


@dataclass(frozen=True)
class Comparator:
    name: str
    label: str
    app: str = "bench.comparators.asgi:application"
    settings: str = "bench.comparators.settings"
    layer: str | None = None
    layer_config: dict = field(default_factory=dict)
    fanout: str | None = None
    ceiling: bool = False

    @property
    def uses_redis(self):
        return not self.ceiling


COMPARATORS = {
    c.name: c
    for c in [
        Comparator("project", "project layer", app="chatproject.asgi:application", settings="chatproject.settings"),
        Comparator("stock", "channels_redis, group per room", layer="bench.comparators.layers.RoomGroupRedisLayer", fanout="room-group"),
        Comparator("pubsub", "RedisPubSub layer, group per room", layer="bench.comparators.layers.RoomGroupPubSubLayer", fanout="room-group"),
        Comparator("per-user", "channels_redis, group_send per user", layer="bench.comparators.layers.PerUserRedisLayer", fanout="user-group"),
        Comparator("seed-seq", "seed: PUBLISH + sequential socket loop", layer="bench.comparators.layers.SeedLayer", layer_config={"strategy": "sequential"}, fanout="seed"),
        Comparator("seed-gather", "seed: PUBLISH + asyncio.gather", layer="bench.comparators.layers.SeedLayer", layer_config={"strategy": "gather"}, fanout="seed"),
        Comparator("ceiling", "ceiling: websockets.broadcast, 1 process", ceiling=True),
    ]
}


# Small async helpers


async def wait_port_async(port, timeout, alive=lambda: True):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            return False
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
            writer.close()
            return True
        except (OSError, asyncio.TimeoutError):
            await asyncio.sleep(0.05)
    return False


async def http_request(port, method, path, *, body=None, headers=(), timeout=5.0):
    """One HTTP/1.0 request on loopback: (status, body bytes)."""

    async def go():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        data = b"" if body is None else body
        head = f"{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {len(data)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers)
        writer.write(head.encode() + b"\r\n" + data)
        raw = await reader.read()
        writer.close()
        top, _, rest = raw.partition(b"\r\n\r\n")
        status = int(top.split(b" ", 2)[1]) if top.startswith(b"HTTP/") else 0
        return status, rest

    return await asyncio.wait_for(go(), timeout)


class Progress:
    """One status line, rewritten in place on a terminal, every few seconds otherwise."""

    def __init__(self):
        self.fields = {}
        self.t0 = time.monotonic()
        self.tty = sys.stderr.isatty()
        self._task = None
        self._last = 0.0

    def set(self, **fields):
        self.fields.update(fields)

    def line(self):
        elapsed = int(time.monotonic() - self.t0)
        parts = [f"[{elapsed // 60}:{elapsed % 60:02d}]"] + [f"{v}" if k.startswith("_") else f"{k}={v}" for k, v in self.fields.items() if v is not None]
        return " ".join(parts)

    async def _run(self):
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            if self.tty:
                sys.stderr.write("\r\x1b[2K" + self.line()[:200])
                sys.stderr.flush()
            elif now - self._last >= 10:
                self._last = now
                print(self.line(), file=sys.stderr, flush=True)

    def start(self):
        self._task = asyncio.get_running_loop().create_task(self._run())

    def say(self, text):
        if self.tty:
            sys.stderr.write("\r\x1b[2K")
        print(text, file=sys.stderr, flush=True)

    def stop(self):
        if self._task:
            self._task.cancel()
        if self.tty:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()


# Load processes


class LoadGens:
    """The load-generator processes (multiprocessing), driven over pipes."""

    def __init__(self, count, use_uvloop):
        ctx = multiprocessing.get_context("spawn")
        self.procs = []
        self.conns = []
        for i in range(count):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=loadgen.main, args=(child, i, use_uvloop), daemon=True, name=f"bench-load-{i}")
            proc.start()
            child.close()
            self.procs.append(proc)
            self.conns.append(parent)
        self.pids = [p.pid for p in self.procs]
        self.pending = {}
        self.next_id = 0
        self.on_got = None
        self.ready = [asyncio.get_running_loop().create_future() for _ in range(count)]
        loop = asyncio.get_running_loop()
        for i, conn in enumerate(self.conns):
            loop.add_reader(conn.fileno(), partial(self._readable, i))
            os.set_blocking(conn.fileno(), True)

    def __len__(self):
        return len(self.conns)

    async def wait_ready(self, timeout=30):
        await asyncio.wait_for(asyncio.gather(*self.ready), timeout)

    def _readable(self, i):
        conn = self.conns[i]
        try:
            while conn.poll():
                msg = conn.recv()
                kind = msg[0]
                if kind == "got":
                    if self.on_got is not None:
                        self.on_got(i, msg[1], msg[2], msg[3])
                elif kind == "reply":
                    fut = self.pending.pop(msg[1], None)
                    if fut is not None and not fut.done():
                        if msg[2]:
                            fut.set_result(msg[3])
                        else:
                            fut.set_exception(RuntimeError(f"load process {i}: {msg[3]}"))
                elif kind == "ready":
                    if not self.ready[i].done():
                        self.ready[i].set_result(msg[1])
        except Exception:  # noqa: BLE001 - EOF, a broken pipe or a garbled message: that process is lost
            asyncio.get_running_loop().remove_reader(conn.fileno())
            for fut in list(self.pending.values()):
                if not fut.done():
                    fut.set_exception(RuntimeError(f"load process {i} died"))

    async def call(self, i, op, args=None, timeout=60.0):
        self.next_id += 1
        call_id = self.next_id
        fut = asyncio.get_running_loop().create_future()
        self.pending[call_id] = fut
        self.conns[i].send((call_id, op, args or {}))
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self.pending.pop(call_id, None)

    async def all(self, op, args=None, timeout=60.0, per=None):
        """Call op on every process; `per(i)` gives per-process args."""
        return await asyncio.gather(*(self.call(i, op, per(i) if per else args, timeout) for i in range(len(self))))

    def stop(self):
        for conn in self.conns:
            try:
                conn.send((0, "exit", {}))
            except (OSError, BrokenPipeError):
                pass
        for proc in self.procs:
            proc.join(3)
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)
                proc.join(2)
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGKILL)
                proc.join(2)


# The sending side


class SenderSink:
    """Frames reaching a sender device: acks (by benchmark index), errors."""

    def __init__(self):
        self.acks = {}
        self.errors = []

    def on_frame(self, dev, data, now):
        if data.startswith(b'{"type":"message.ack"'):
            j = data.find(MARK)
            if j >= 0:
                self.acks[parse_mark(data, j)[0]] = now
        elif data.startswith(b'{"type":"hello"'):
            if dev.state == "open":
                dev.state = "hello"
                dev.send_text(b'{"type":"ping"}')
        elif data.startswith(b'{"type":"pong"'):
            if dev.state == "hello":
                dev.state = "live"
                if not dev.live.done():
                    dev.live.set_result(True)
        elif data.startswith(b'{"type":"error"'):
            if len(self.errors) < 20:
                self.errors.append(data[:300].decode(errors="replace"))

    def on_closed(self, dev, prev_state):
        if prev_state == "live":
            self.errors.append(f"sender closed: {dev.close_code}")


class WsSender:
    """A dedicated sender device: message.send frames over its own WebSocket."""

    def __init__(self, room, pad):
        self.room = room
        self.pad = pad
        self.sink = SenderSink()
        self.dev = None
        self.prefix = uuid.uuid4().hex[:8]

    async def connect(self, port, token, timeout=10):
        loop = asyncio.get_running_loop()
        _, self.dev = await asyncio.wait_for(
            loop.create_connection(lambda: Device(self.sink, "sender", "127.0.0.1", port, token), "127.0.0.1", port), timeout
        )
        await asyncio.wait_for(asyncio.shield(self.dev.live), timeout)

    def send(self, index):
        body, sent = body_for(index, self.pad)
        frame = json.dumps({"type": "message.send", "room": self.room, "body": body, "client_id": f"{self.prefix}-{index}"})
        if not self.dev.send_text(frame):
            raise ConnectionError("sender connection closed")
        return sent

    @property
    def acks(self):
        return self.sink.acks

    @property
    def errors(self):
        return self.sink.errors

    def close(self):
        if self.dev is not None:
            self.dev.close()


class HttpSender:
    """POST /api/rooms/{id}/messages/ over a few keep-alive connections."""

    def __init__(self, room, pad, connections=4):
        self.room = room
        self.pad = pad
        self.n = connections
        self.conns = []
        self.acks = {}
        self.errors = []
        self.prefix = uuid.uuid4().hex[:8]
        self.turn = 0
        self.tasks = set()

    async def connect(self, port, token, timeout=10):
        self.port = port
        self.token = token
        for _ in range(self.n):
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
            self.conns.append((reader, writer, asyncio.Lock()))
        # One probe: the API must be there.
        status = await self._post(0, "probe", "B|-1|0|probe", record=False)
        if status not in (200, 201):
            raise RuntimeError(f"POST /api/rooms/{self.room}/messages/ answered {status}: the HTTP sender needs the messages API")

    async def _post(self, which, client_id, body, record=True, index=None):
        reader, writer, lock = self.conns[which]
        payload = json.dumps({"body": body, "client_id": client_id}).encode()
        request = (
            f"POST /api/rooms/{self.room}/messages/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Token {self.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        ).encode() + payload
        async with lock:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
        if record:
            if status in (200, 201):
                self.acks[index] = time.monotonic_ns()
            elif len(self.errors) < 20:
                self.errors.append(f"HTTP {status}")
        return status

    def send(self, index):
        body, sent = body_for(index, self.pad)
        which = self.turn % self.n
        self.turn += 1
        task = asyncio.get_running_loop().create_task(self._post(which, f"{self.prefix}-{index}", body, index=index))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return sent

    def close(self):
        for task in self.tasks:
            task.cancel()
        for _, writer, _ in self.conns:
            writer.close()


# The benchmark


class Bench:
    def __init__(self, opts, progress):
        self.opts = opts
        self.progress = progress
        self.tmp = Path(tempfile.mkdtemp(prefix="chat-fanout-bench-"))
        self.logs = self.tmp / "logs"
        self.logs.mkdir()
        self.redis = None
        self.redis_port = None
        self.gens = None
        self.rooms = {}
        self.next_index = 0
        self.records = []
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        OUT.mkdir(parents=True, exist_ok=True)
        self.jsonl = OUT / f"fanout-{stamp}{'-quick' if opts.quick else ''}.jsonl"
        self.deadline = time.monotonic() + opts.max_minutes * 60
        self.skipped = []
        self.got = {}
        self.got_waiters = {}

    # Infrastructure

    @property
    def redis_url(self):
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def db_env(self):
        env = dict(os.environ)
        for name in ("REDIS_URL", "BENCH_CHANNEL_LAYERS", "BENCH_FANOUT"):
            env.pop(name, None)
        env.update(
            DATABASE_URL=f"sqlite:///{self.tmp / 'bench.sqlite3'}",
            DJANGO_SETTINGS_MODULE="chatproject.settings",
            CHAT_RATE_LIMITS="0",
            PYTHONPATH=str(ROOT),
            LOG_LEVEL="WARNING",
        )
        return env

    def start_redis(self):
        for _ in range(3):
            port = free_port()
            redis = Managed(
                "redis",
                [
                    self.opts.redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                    "--daemonize", "no", "--maxclients", "20000", "--loglevel", "warning", "--dir", str(self.tmp),
                ],
                log_path=self.logs / "redis.log",
            )
            from .procs import wait_port

            if wait_port(port, 10, redis.proc):
                self.redis, self.redis_port = redis, port
                import redis as redis_py

                self.redis_client = redis_py.Redis(port=port)
                return
            redis.stop()
        raise RuntimeError("redis-server did not start: " + (self.logs / "redis.log").read_text()[-2000:])

    def manage(self, *args, timeout=300):
        result = subprocess.run(
            [sys.executable, str(MANAGE), *args], env=self.db_env(), cwd=ROOT, capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
        return result.stdout

    def prepare_db(self):
        self.manage("migrate", "--noinput", timeout=300)

    def seed_room(self, key, users):
        """A room with `users` receiving users plus one sender (users[0], the room's owner)."""
        if key in self.rooms:
            return self.rooms[key]
        out = self.manage("seed_users", "--count", str(users + 1), "--prefix", f"{key}_", "--room", f"bench {key}")
        seed = json.loads(out.strip().splitlines()[-1])
        path = self.tmp / f"seed-{key}.json"
        path.write_text(json.dumps(seed))
        seed["path"] = str(path)
        self.rooms[key] = seed
        return seed

    def flush_redis(self):
        self.redis_client.flushall()

    def redis_info(self):
        return self.redis_client.execute_command("INFO", "stats", "commandstats")

    def time_left(self):
        return self.deadline - time.monotonic()

    # Workers

    def worker_env(self, comp):
        env = self.db_env()
        env.update(
            REDIS_URL=self.redis_url,
            DJANGO_DEBUG="0" if not self.opts.debug else "1",
            DJANGO_SECRET_KEY="bench-" + uuid.uuid4().hex,
            DJANGO_SETTINGS_MODULE=comp.settings,
        )
        if comp.layer:
            config = {"hosts": [self.redis_url], **comp.layer_config}
            env["BENCH_CHANNEL_LAYERS"] = json.dumps({"default": {"BACKEND": comp.layer, "CONFIG": config}})
            env["BENCH_FANOUT"] = comp.fanout
        return env

    async def start_workers(self, comp, seed_paths, env=None):
        count = 1 if comp.ceiling else self.opts.workers
        workers = []
        for i in range(count):
            for attempt in range(3):
                port = free_port()
                if comp.ceiling:
                    argv = [sys.executable, "-m", "bench.comparators.ceiling", "--port", str(port), "--users", *seed_paths]
                elif self.opts.server == "daphne":
                    argv = [str(VENV_BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "-v", "0", comp.app]
                else:
                    argv = [
                        str(VENV_BIN / "uvicorn"), comp.app, "--host", "127.0.0.1", "--port", str(port),
                        "--log-level", "warning", "--no-access-log", "--lifespan", "off",
                    ]
                log = self.logs / f"{comp.name}-{i}-{port}.log"
                worker = Managed(f"{comp.name}-{i}", argv, env={**self.worker_env(comp), **(env or {})}, log_path=log)
                worker.port = port
                if await wait_port_async(port, 30, worker.alive):
                    workers.append(worker)
                    break
                tail = worker.log_tail()
                worker.stop()
                if attempt == 2:
                    for w in workers:
                        w.stop()
                    raise RuntimeError(f"worker {comp.name}-{i} did not start:\n{tail}")
        # daphne, uvicorn and the ceiling load the application before they listen:
        # an open port is a ready worker (the warm-up message then opens its pools).
        return workers

    def stop_workers(self, workers):
        for worker in workers:
            worker.stop(grace=self.opts.stop_grace)

    async def server_counters(self, comp, workers):
        """The product's own /health/ counters of each worker (the project only)."""
        if comp.name != "project":
            return None
        out = []
        for worker in workers:
            try:
                status, body = await http_request(worker.port, "GET", "/health/", timeout=5)
                out.append(json.loads(body).get("counters", {}))
            except Exception as exc:  # noqa: BLE001
                out.append({"error": str(exc)})
        total = {}
        for counters in out:
            for key, value in counters.items():
                if isinstance(value, (int, float)):
                    total[key] = total.get(key, 0) + value
        return total

    # Devices

    def plan_devices(self, seed, n, per_user, workers):
        """(process, (dev_id, host, port, token)) for n devices: users in turn, workers round-robin."""
        receivers = seed["users"][1:]
        out = [[] for _ in range(len(self.gens))]
        for j in range(n):
            user = receivers[j // per_user]
            worker = workers[j % len(workers)]
            out[j % len(self.gens)].append((j, "127.0.0.1", worker.port, user["token"]))
        return out

    async def connect_devices(self, seed, n, per_user, workers):
        plan = self.plan_devices(seed, n, per_user, workers)
        self.progress.set(phase=f"connecting {n}")
        timeout = max(30.0, n / 50)
        replies = await self.gens.all(
            "connect",
            per=lambda i: {"devices": plan[i], "concurrency": self.opts.connect_concurrency, "timeout": 20.0},
            timeout=timeout + 30,
        )
        ok = sum(r["ok"] for r in replies)
        errors = {}
        for r in replies:
            for key, count in r["errors"].items():
                errors[key] = errors.get(key, 0) + count
        return ok, errors, max(r["seconds"] for r in replies)

    async def disconnect_devices(self):
        await self.gens.all("close_all", {"timeout": 3.0}, timeout=30)

    # Message tracking ("got" notices in burst mode)

    def on_got(self, proc, index, last_ns, count):
        seen = self.got.setdefault(index, set())
        seen.add(proc)
        waiter = self.got_waiters.get(index)
        if waiter is not None and not waiter[1].done() and waiter[0] <= seen:
            waiter[1].set_result(None)

    def new_index(self):
        self.next_index += 1
        return self.next_index

    async def connect_sender(self, seed, workers):
        cls = HttpSender if self.opts.send_via == "http" else WsSender
        sender = cls(seed["room"], self.opts.body_chars)
        await sender.connect(workers[0].port, seed["users"][0]["token"])
        return sender

    async def warm_up(self, sender):
        index = self.new_index()
        sender.send(index)
        deadline = time.monotonic() + 10
        while index not in sender.acks and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return index in sender.acks

    # Phases

    async def collect(self, sent, n_live, sender=None):
        collects = await self.gens.all("collect", timeout=60)
        stats = report.phase_stats(collects, sent, n_live, sender.acks if sender is not None else None)
        if sender is not None:
            # Send → ack: storing the message (and, for the sender's own worker, publishing it).
            acks = [(sender.acks[i] - s) / 1e6 for i, s in sent.items() if i in sender.acks]
            stats["acks"] = len(acks)
            stats["ack_ms"] = {"p50": report._pct(acks, 50), "p99": report._pct(acks, 99)}
        return stats

    async def drain(self, n_live, sent, idle_s, timeout_s, sender=None):
        """Wait until every live device got every message, or nothing more arrives for idle_s
        once the sender has every ack, or timeout_s."""
        expected = n_live * len(sent)
        deadline = time.monotonic() + timeout_s
        last, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            counts = await self.gens.all("count", timeout=10)
            received = sum(c["received"] for c in counts)
            if received >= expected:
                return received
            if received != last:
                last, last_change = received, time.monotonic()
            elif time.monotonic() - last_change >= idle_s:
                if sender is None or all(i in sender.acks for i in sent):
                    return received
            await asyncio.sleep(0.1)
        return last

    def proc_pids(self, workers):
        return [w.pid for w in workers]

    def usage(self, workers, before, after):
        """Worker CPU, RSS and Redis CPU between two snapshots."""
        pids = self.proc_pids(workers)
        cpu = sum((after[p]["cpu"] or 0) - (before[p]["cpu"] or 0) for p in pids)
        out = {
            "worker_cpu_s": round(cpu, 3),
            "worker_rss_mb_start": round(sum(before[p].get("rss", 0) for p in pids) / 1024, 1),
            "worker_rss_mb_end": round(sum(after[p].get("rss", 0) for p in pids) / 1024, 1),
            "worker_hwm_mb": round(sum(after[p].get("hwm", 0) for p in pids) / 1024, 1),
            "worker_hwm_mb_max": round(max(after[p].get("hwm", 0) for p in pids) / 1024, 1),
        }
        if self.redis is not None and self.redis.pid in before:
            out["redis_cpu_s"] = round((after[self.redis.pid]["cpu"] or 0) - (before[self.redis.pid]["cpu"] or 0), 3)
        return out

    def snap(self, workers):
        pids = self.proc_pids(workers) + ([self.redis.pid] if self.redis else [])
        return snapshot(pids)

    async def burst(self, sender, workers, messages, timeout):
        resets = await self.gens.all("reset", {"notify": True})
        expected = [r["expected"] for r in resets]
        n_live = sum(expected)
        active = {i for i, e in enumerate(expected) if e > 0}
        self.got, self.got_waiters = {}, {}
        sent = {}
        timeouts = 0
        before, cpu0, t0 = self.snap(workers), self_cpu(), time.monotonic()
        loop = asyncio.get_running_loop()
        for m in range(messages):
            if self.time_left() < 0:
                break
            index = self.new_index()
            fut = loop.create_future()
            self.got_waiters[index] = (active, fut)
            sent[index] = sender.send(index)
            self.progress.set(phase=f"burst {m + 1}/{messages}")
            try:
                await asyncio.wait_for(fut, timeout)
            except asyncio.TimeoutError:
                timeouts += 1
            self.got_waiters.pop(index, None)
        wall = time.monotonic() - t0
        if timeouts:
            await self.drain(n_live, sent, 1.0, timeout, sender)
        after, cpu1 = self.snap(workers), self_cpu()
        stats = await self.collect(sent, n_live, sender)
        stats.update(self.usage(workers, before, after))
        stats.update(
            scenario="burst", messages=len(sent), timeouts=timeouts, wall_s=round(wall, 3),
            driver_cpu_s=round(cpu1 - cpu0, 3), sender_errors=list(sender.errors[:5]),
        )
        return stats

    async def paced(self, sender, rate, seconds, on_tick=None):
        """Send `rate` messages per second for `seconds`; returns {index: send ns}."""
        sent = {}
        total = max(1, int(rate * seconds))
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.02
        behind = 0.0
        for i in range(total):
            target = start + i / rate
            delay = target - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                behind = max(behind, -delay)
            index = self.new_index()
            sent[index] = sender.send(index)
            if on_tick is not None:
                await on_tick(i, total)
            if i % max(1, int(rate)) == 0:
                self.progress.set(phase=f"rate {i}/{total}")
        return sent, behind

    async def rate(self, sender, workers, rate, seconds):
        resets = await self.gens.all("reset", {"notify": False})
        n_live = sum(r["expected"] for r in resets)
        before, cpu0, t0 = self.snap(workers), self_cpu(), time.monotonic()
        sent, behind = await self.paced(sender, rate, seconds)
        send_wall = time.monotonic() - t0
        self.progress.set(phase="rate: draining")
        await self.drain(n_live, sent, 2.0, max(5.0, seconds), sender)
        wall = time.monotonic() - t0
        after, cpu1 = self.snap(workers), self_cpu()
        stats = await self.collect(sent, n_live, sender)
        stats.update(self.usage(workers, before, after))
        stats.update(
            scenario="rate", rate=rate, seconds=seconds, messages=len(sent), send_wall_s=round(send_wall, 3),
            wall_s=round(wall, 3), sender_behind_s=round(behind, 3), offered_deliveries_per_s=round(rate * n_live, 1),
            driver_cpu_s=round(cpu1 - cpu0, 3),
            sender_errors=list(sender.errors[:5]),
        )
        return stats

    # Runs

    def base_record(self, comp, scenario, n, rnd, per_user):
        return {
            "scenario": scenario,
            "comparator": comp.name,
            "label": comp.label,
            "n": n,
            "devices_per_user": per_user,
            "users": n // per_user,
            "round": rnd,
            "workers": 1 if comp.ceiling else self.opts.workers,
            "server": "websockets" if comp.ceiling else self.opts.server,
            "clients": len(self.gens),
            "send_via": "ws" if comp.ceiling else self.opts.send_via,
            "body_chars": self.opts.body_chars,
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    def emit(self, record):
        self.records.append(record)
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(record) + "\n")

    async def with_workers(self, comp, seeds, body, env=None):
        """Start the comparator's workers (with `env` added), run body(workers), always stop them."""
        if comp.uses_redis:
            self.flush_redis()
        workers = await self.start_workers(comp, [s["path"] for s in seeds], env)
        try:
            return await body(workers)
        finally:
            try:
                await self.disconnect_devices()
            finally:
                dead = [w for w in workers if not w.alive()]
                for w in dead:
                    self.progress.say(f"! worker {w.name} (pid {w.pid}) died:\n{w.log_tail()}")
                self.stop_workers(workers)

    async def run_main(self, comp, n, rnd):
        """idle, burst and rate at one N, on fresh workers."""
        per_user = self.opts.devices_per_user
        seed = self.rooms[f"n{n}"]

        async def body(workers):
            if comp.ceiling:  # no HTTP API there: always its WebSocket
                sender = WsSender(seed["room"], self.opts.body_chars)
                await sender.connect(workers[0].port, seed["users"][0]["token"])
            else:
                sender = await self.connect_sender(seed, workers)
            try:
                await self.warm_up(sender)
                await asyncio.sleep(self.opts.settle)
                empty = self.snap(workers)
                ok, errors, connect_s = await self.connect_devices(seed, n, per_user, workers)
                await asyncio.sleep(self.opts.settle)
                idle = self.snap(workers)
                pids = self.proc_pids(workers)
                empty_kb = sum(empty[p].get("rss", 0) for p in pids)
                idle_kb = sum(idle[p].get("rss", 0) for p in pids)
                rec = self.base_record(comp, "idle", n, rnd, per_user)
                rec.update(
                    connected=ok, connect_errors=errors, connect_s=round(connect_s, 2),
                    worker_rss_mb_empty=round(empty_kb / 1024, 1), worker_rss_mb_idle=round(idle_kb / 1024, 1),
                    kb_per_device=round((idle_kb - empty_kb) / max(ok, 1), 2),
                )
                self.emit(rec)
                if ok < n:
                    self.progress.say(f"! {comp.name} N={n}: only {ok}/{n} devices connected: {errors}")
                if "burst" in self.opts.scenarios:
                    stats = await self.burst(sender, workers, self.opts.burst_messages, self.opts.burst_timeout)
                    rec = self.base_record(comp, "burst", n, rnd, per_user)
                    rec.update(stats, connected=ok, server_counters=await self.server_counters(comp, workers))
                    self.emit(rec)
                    self.progress.say(report.one_line(rec))
                if "rate" in self.opts.scenarios:
                    stats = await self.rate(sender, workers, self.opts.rate, self.opts.rate_seconds)
                    rec = self.base_record(comp, "rate", n, rnd, per_user)
                    rec.update(stats, connected=ok, server_counters=await self.server_counters(comp, workers))
                    self.emit(rec)
                    self.progress.say(report.one_line(rec))
            finally:
                sender.close()

        await self.with_workers(comp, [seed], body)

    async def run_stall(self, comp, rnd, fraction):
        """R msg/s for T s; after `stall_after` s a fraction of the devices stops reading."""
        o = self.opts
        n, per_user = o.stall_n, o.devices_per_user
        seed = self.rooms[f"n{n}"]

        async def body(workers):
            sender = WsSender(seed["room"], o.stall_body_chars)
            await sender.connect(workers[0].port, seed["users"][0]["token"])
            try:
                await self.warm_up(sender)
                ok, errors, _ = await self.connect_devices(seed, n, per_user, workers)
                await asyncio.sleep(o.settle)
                stalled = sorted(random.Random(1000 + rnd).sample(range(n), int(round(n * fraction)))) if fraction > 0 else []
                resets = await self.gens.all("reset", {"notify": False})
                n_live = sum(r["expected"] for r in resets)
                state = {"stall_ns": None, "before": None, "dropped": {}}
                t_start = time.monotonic()

                async def look():
                    # Client side only (the server is not disturbed): when each stalled
                    # socket stops being ESTABLISHED, i.e. the server let it go.
                    for reply in await self.gens.all("stalled_state", timeout=10):
                        for dev_id, tcp, dropped_at in reply["stalled"]:
                            if dropped_at is not None:
                                state["dropped"].setdefault(dev_id, dropped_at)

                async def poller():
                    while True:
                        await asyncio.sleep(0.2)
                        if state["stall_ns"] is not None:
                            await look()

                async def on_tick(i, total):
                    if state["stall_ns"] is None and time.monotonic() - t_start >= o.stall_after:
                        state["before"] = self.snap(workers)
                        state["stall_ns"] = time.monotonic_ns()
                        if stalled:
                            await self.gens.all("stall", {"dev_ids": stalled}, timeout=10)

                before_all, cpu0, t0 = self.snap(workers), self_cpu(), time.monotonic()
                polling = asyncio.get_running_loop().create_task(poller())
                try:
                    sent, behind = await self.paced(sender, o.stall_rate, o.stall_seconds, on_tick)
                finally:
                    polling.cancel()
                end = self.snap(workers)
                healthy = n_live - len(stalled)
                await self.drain(healthy, sent, 2.0, 15.0, sender)
                # A last look at the stalled sockets before they are let go.
                await look()
                counters = await self.server_counters(comp, workers)
                after_drain = self.snap(workers)
                cpu1 = self_cpu()
                stall_ns = state["stall_ns"] or time.monotonic_ns()
                after_stall = {i: s for i, s in sent.items() if s >= stall_ns}
                stats = await self.collect(after_stall, healthy, sender)
                stats.update(self.usage(workers, state["before"] or before_all, end))
                unstalled = []
                if stalled:
                    replies = await self.gens.all("unstall", {"settle": 3.0}, timeout=30)
                    unstalled = [d for r in replies for d in r["devices"]]
                close_codes = {}
                for dev_id, code, closed_at, dropped_at, received in unstalled:
                    close_codes[str(code)] = close_codes.get(str(code), 0) + 1
                drop_s = sorted((t - stall_ns) / 1e9 for t in state["dropped"].values())
                pids = self.proc_pids(workers)
                before_stall = state["before"] or before_all
                stats.update(
                    scenario="stall", fraction=fraction, stalled=len(stalled), healthy=healthy, rate=o.stall_rate,
                    seconds=o.stall_seconds, stall_after_s=o.stall_after, messages_after_stall=len(after_stall),
                    messages=len(sent), sender_behind_s=round(behind, 3), driver_cpu_s=round(cpu1 - cpu0, 3),
                    wall_s=round(time.monotonic() - t0, 3), stalled_dropped=len(drop_s), stalled_drop_s_max=round(drop_s[-1], 2) if drop_s else None,
                    stalled_drop_s_median=round(drop_s[len(drop_s) // 2], 2) if drop_s else None,
                    stalled_close_codes=close_codes, server_closed_slow=(counters or {}).get("closed_slow"),
                    rss_mb_before_stall=round(sum(before_stall[p].get("rss", 0) for p in pids) / 1024, 1),
                    rss_mb_end_of_stall=round(sum(end[p].get("rss", 0) for p in pids) / 1024, 1),
                    rss_mb_after_drain=round(sum(after_drain[p].get("rss", 0) for p in pids) / 1024, 1),
                    rss_growth_mb=round(sum(end[p].get("rss", 0) - before_stall[p].get("rss", 0) for p in pids) / 1024, 1),
                    server_counters=counters, connected=ok, body_chars=o.stall_body_chars,
                )
                rec = self.base_record(comp, "stall", n, rnd, per_user)
                rec.update(stats)
                rec["body_chars"] = o.stall_body_chars
                self.emit(rec)
                self.progress.say(report.one_line(rec))
            finally:
                sender.close()

        await self.with_workers(comp, [seed], body)

    async def run_redis(self, comp, rnd):
        """Redis commands and bytes per message for rooms of several sizes (one device per member)."""
        o = self.opts
        seeds = [self.rooms[f"r{m}"] for m in o.redis_sizes]

        async def body(workers):
            for size, seed in zip(o.redis_sizes, seeds):
                if self.time_left() < 0:
                    break
                self.progress.set(phase=f"redis M={size}")
                sender = WsSender(seed["room"], o.body_chars)
                await sender.connect(workers[0].port, seed["users"][0]["token"])
                try:
                    ok, errors, _ = await self.connect_devices(seed, size, 1, workers)
                    await asyncio.sleep(o.settle)
                    # Warm-up: the first message of a worker reads the member list, opens pools.
                    await self.burst(sender, workers, 2, o.burst_timeout)
                    await asyncio.sleep(0.2)
                    a = self.redis_info()
                    b = self.redis_info()
                    t_b = time.monotonic()
                    await asyncio.sleep(o.redis_idle)
                    c = self.redis_info()
                    t_c = time.monotonic()
                    stats = await self.burst(sender, workers, o.redis_messages, o.burst_timeout)
                    d = self.redis_info()
                    t_d = time.monotonic()
                    per = report.redis_per_message(a, b, c, d, t_c - t_b, t_d - t_c, stats["messages"])
                    rec = self.base_record(comp, "redis", size, rnd, 1)
                    rec.update(per, connected=ok, deliveries=stats["deliveries"], lost=stats["lost"], messages=stats["messages"])
                    self.emit(rec)
                    self.progress.say(report.one_line(rec))
                finally:
                    sender.close()
                    await self.disconnect_devices()
                    await asyncio.sleep(0.3)

        # The product's presence heartbeat (7 commands per worker every 10 s) is
        # traffic per second, not per message; whether one falls into a burst's
        # window is luck, so it is moved out of the way here.
        await self.with_workers(comp, seeds, body, env={"CHAT_PRESENCE_INTERVAL": "3600"})

    # Everything

    def plan(self):
        o = self.opts
        items = []
        if {"burst", "rate", "idle"} & set(o.scenarios):
            for rnd in range(o.rounds):
                for n in o.n:
                    for name in o.comparators:
                        items.append(("main", name, n, rnd))
        if "stall" in o.scenarios:
            for rnd in range(o.stall_rounds):
                for name in o.stall_comparators:
                    items.append(("stall0", name, o.stall_n, rnd))
                    items.append(("stall", name, o.stall_n, rnd))
        if "redis" in o.scenarios:
            for rnd in range(o.redis_rounds):
                for name in o.redis_comparators:
                    if not COMPARATORS[name].ceiling:
                        items.append(("redis", name, None, rnd))
        return items

    async def run(self):
        o = self.opts
        self.progress.set(_="starting redis, database, load processes")
        self.start_redis()
        self.prepare_db()
        sizes = set()
        if {"burst", "rate", "idle"} & set(o.scenarios):
            sizes |= set(o.n)
        if "stall" in o.scenarios:
            sizes.add(o.stall_n)
        for n in sorted(sizes):
            self.seed_room(f"n{n}", (n + o.devices_per_user - 1) // o.devices_per_user)
        if "redis" in o.scenarios:
            for m in o.redis_sizes:
                self.seed_room(f"r{m}", m)
        self.gens = LoadGens(o.clients, not o.no_uvloop)
        self.gens.on_got = self.on_got
        await self.gens.wait_ready()
        items = self.plan()
        for k, (kind, name, n, rnd) in enumerate(items):
            if self.time_left() < 0:
                self.skipped = items[k:]
                self.progress.say(f"! time budget (--max-minutes {o.max_minutes}) spent: {len(self.skipped)} runs skipped")
                break
            comp = COMPARATORS[name]
            self.progress.set(_=f"run {k + 1}/{len(items)}", comparator=name, scenario=kind, n=n, round=rnd, phase="starting")
            try:
                if kind == "main":
                    await self.run_main(comp, n, rnd)
                elif kind == "stall0":
                    await self.run_stall(comp, rnd, 0.0)
                elif kind == "stall":
                    await self.run_stall(comp, rnd, o.stall_fraction)
                else:
                    await self.run_redis(comp, rnd)
            except Exception as exc:  # noqa: BLE001 - one broken run must not lose the others
                import traceback

                self.progress.say(f"! run {kind} {name} n={n} round={rnd} failed: {exc}")
                (self.logs / "errors.log").open("a").write(traceback.format_exc())
                self.emit({"scenario": "error", "kind": kind, "comparator": name, "n": n, "round": rnd, "error": str(exc)})

    def close(self):
        if self.gens is not None:
            self.gens.stop()
        Managed.stop_all()


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small N, one round, all comparators: about a minute")
    p.add_argument("--comparators", default=",".join(COMPARATORS), help="comma-separated, in run order (default: all)")
    p.add_argument("--scenarios", default="idle,burst,rate,stall,redis")
    p.add_argument("--n", help="device counts N, comma-separated (default 200,500,1000,2000)")
    p.add_argument("--devices-per-user", type=int, default=2, help="D: N = U·D")
    p.add_argument("--workers", type=int, default=2, help="K worker processes (the ceiling always uses 1)")
    p.add_argument("--server", choices=["daphne", "uvicorn"], default="daphne")
    p.add_argument("--clients", type=int, help="load-generator processes (default 2; quick 1)")
    p.add_argument("--rounds", type=int, help="rounds of A B C … interleaving (default 3; quick 1)")
    p.add_argument("--send-via", choices=["ws", "http"], default="ws", help="message.send from a sender device, or HTTP POST (not for the ceiling)")
    p.add_argument("--body-chars", type=int, default=100)
    p.add_argument("--burst-messages", type=int, help="messages per burst phase (default 30; quick 10)")
    p.add_argument("--burst-timeout", type=float, default=10.0, help="seconds to wait for one message to reach every device")
    p.add_argument("--rate", type=float, help="messages/s in the rate scenario (default 10)")
    p.add_argument("--rate-seconds", type=float, help="default 10; quick 2")
    p.add_argument("--stall-n", type=int, help="devices in the stall scenario (default 200; quick 100)")
    p.add_argument("--stall-fraction", type=float, default=0.10)
    p.add_argument("--stall-rate", type=float, help="messages/s during the stall scenario (default 50)")
    p.add_argument("--stall-seconds", type=float, help="length of the sending window (default 30; quick 4)")
    p.add_argument("--stall-after", type=float, default=1.0, help="seconds of normal traffic before the stall")
    p.add_argument("--stall-body-chars", type=int, help="message size in the stall scenario (default 4000; quick 1000)")
    p.add_argument("--stall-comparators", help="default: all but the ceiling (quick: project,stock)")
    p.add_argument("--stall-rounds", type=int)
    p.add_argument("--redis-sizes", help="room sizes (default 10,100,1000,5000; quick 10,100)")
    p.add_argument("--redis-messages", type=int, help="messages per room size (default 20; quick 10)")
    p.add_argument("--redis-idle", type=float, help="seconds of idle Redis traffic measured and subtracted (default 1; quick 0.5)")
    p.add_argument("--redis-comparators", help="default: all but the ceiling (quick: project,stock)")
    p.add_argument("--redis-rounds", type=int, default=1)
    p.add_argument("--claim-n", type=int, default=2000, help="the N the claims are checked at")
    p.add_argument("--settle", type=float, help="seconds to let workers settle before memory readings (default 1.5; quick 0.5)")
    p.add_argument("--connect-concurrency", type=int, default=64)
    p.add_argument("--stop-grace", type=float, default=5.0)
    p.add_argument("--max-minutes", type=float, help="time budget; runs beyond it are skipped (default 150; quick 5)")
    p.add_argument("--strict", action="store_true", help="exit 1 if a claim fails or a run failed")
    p.add_argument("--no-uvloop", action="store_true", help="plain asyncio in the load processes")
    p.add_argument("--debug", action="store_true", help="run workers with DJANGO_DEBUG=1 (default 0)")
    p.add_argument("--redis-server", default=os.environ.get("BENCH_REDIS_SERVER", "/usr/bin/redis-server"))
    p.add_argument("--keep-tmp", action="store_true", help="keep the temporary database and seed files")
    p.add_argument("--report-only", metavar="JSONL", help="only rebuild latest.md and fanout.png from a JSONL file")
    o = p.parse_args(argv)

    def ints(text):
        return [int(x) for x in text.split(",") if x.strip()]

    q = o.quick
    o.comparators = [c.strip() for c in o.comparators.split(",") if c.strip()]
    unknown = [c for c in o.comparators if c not in COMPARATORS]
    if unknown:
        p.error(f"unknown comparators {unknown}; known: {', '.join(COMPARATORS)}")
    o.scenarios = [s.strip() for s in o.scenarios.split(",") if s.strip()]
    o.n = ints(o.n) if o.n else ([100] if q else [200, 500, 1000, 2000])
    o.clients = o.clients or (1 if q else 2)
    o.rounds = o.rounds or (1 if q else 3)
    o.burst_messages = o.burst_messages or (10 if q else 30)
    o.rate = o.rate or 10.0
    o.rate_seconds = o.rate_seconds or (2.0 if q else 10.0)
    o.stall_n = o.stall_n or (100 if q else 200)
    o.stall_rate = o.stall_rate or 50.0
    o.stall_seconds = o.stall_seconds or (4.0 if q else 30.0)
    o.stall_body_chars = o.stall_body_chars or (1000 if q else 4000)
    o.settle = o.settle if o.settle is not None else (0.5 if q else 1.5)
    o.redis_messages = o.redis_messages or (10 if q else 20)
    o.redis_idle = o.redis_idle or (0.5 if q else 1.0)
    o.stall_rounds = o.stall_rounds or (1 if q else o.rounds)
    no_ceiling = [c for c in o.comparators if not COMPARATORS[c].ceiling]
    quick_pair = [c for c in ("project", "stock") if c in o.comparators]
    o.stall_comparators = [c for c in o.stall_comparators.split(",") if c] if o.stall_comparators else (quick_pair if q else no_ceiling)
    o.redis_comparators = [c for c in o.redis_comparators.split(",") if c] if o.redis_comparators else (quick_pair if q else no_ceiling)
    o.redis_sizes = ints(o.redis_sizes) if o.redis_sizes else ([10, 100] if q else [10, 100, 1000, 5000])
    o.max_minutes = o.max_minutes or (5.0 if q else 150.0)
    if o.send_via == "http" and "ceiling" in o.comparators:
        print("note: the ceiling has no HTTP API; its messages are sent over its WebSocket", file=sys.stderr)
    return o


async def amain(opts):
    progress = Progress()
    progress.start()
    bench = Bench(opts, progress)
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, main_task.cancel)
    cancelled = False
    try:
        await bench.run()
    except asyncio.CancelledError:
        cancelled = True
        progress.say("! interrupted: stopping everything")
    finally:
        progress.set(_="stopping", phase=None)
        bench.close()
        progress.stop()
    return bench, cancelled


def main(argv=None):
    opts = parse_args(argv)
    if opts.report_only:
        records = [json.loads(line) for line in Path(opts.report_only).read_text().splitlines() if line.strip()]
        text, failed = report.write_all(records, opts, OUT)
        print(text)
        return 1 if failed and opts.strict else 0
    raise_nofile()
    started = time.monotonic()
    bench, cancelled = asyncio.run(amain(opts))
    suffix = "-quick" if opts.quick else ""
    if bench.jsonl.exists():
        shutil.copyfile(bench.jsonl, OUT / f"latest{suffix}.jsonl")
    text, failed = report.write_all(bench.records, opts, OUT, skipped=bench.skipped, elapsed=time.monotonic() - started)
    # Keep the workers' logs; the temporary database and seed files go.
    logs = OUT / f"logs{suffix}"
    shutil.rmtree(logs, ignore_errors=True)
    shutil.copytree(bench.tmp / "logs", logs)
    if not opts.keep_tmp:
        shutil.rmtree(bench.tmp, ignore_errors=True)
    print(text)
    print(f"records: {bench.jsonl}\ntable: {OUT / f'latest{suffix}.md'}\nplot: {OUT / f'fanout{suffix}.png'}\nlogs: {logs}")
    if cancelled:
        return 130
    return 1 if failed and opts.strict else 0


if __name__ == "__main__":
    sys.exit(main())
