"""Support for the browser tests: a real daphne process, and helpers to drive pages.

Processes are stopped by pid. Every wait polls for an event with a deadline;
nothing sleeps for a fixed time as synchronisation.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from playwright.sync_api import expect

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
DAPHNE = Path(sys.executable).with_name("daphne")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SEED_PASSWORD = "chat-seed-password"
DOCS = ROOT / "docs"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_until(predicate, *, timeout, what):
    """Poll predicate until it returns true; fail after the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except (OSError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class ChatServer:
    """One daphne worker on a SQLite file; restartable on the same port."""

    def __init__(self, workdir, port=None):
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.proc = None
        self.log = None
        self.env = dict(os.environ)
        self.env.pop("REDIS_URL", None)
        self.env.update(
            {
                "DATABASE_URL": f"sqlite:///{self.workdir / 'db.sqlite3'}",
                "CHAT_RATE_LIMITS": "0",
                "DJANGO_DEBUG": "1",
                "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
                "PYTHONUNBUFFERED": "1",
                "LOG_LEVEL": "WARNING",
            }
        )

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def manage(self, *args):
        result = subprocess.run(
            [PYTHON, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
        return result.stdout

    def migrate(self):
        self.manage("migrate", "--noinput", "-v0")

    def seed(self, count, prefix, room=None):
        args = ["seed_users", "--count", str(count), "--prefix", prefix]
        if room:
            args += ["--room", room]
        return json.loads(self.manage(*args))

    def bulk_messages(self, room, username, count, prefix):
        """Store many messages straight through the service layer (as if sent while no page listened)."""
        code = (
            "from django.contrib.auth import get_user_model\n"
            "from chat import services\n"
            f"user = get_user_model().objects.get(username={username!r})\n"
            f"for i in range({count}):\n"
            f"    services.post_message(room_id={room}, sender=user, body={prefix!r} + str(i))\n"
        )
        self.manage("shell", "-c", code)

    def start(self):
        command = [str(DAPHNE)] if DAPHNE.exists() else [PYTHON, "-m", "daphne"]
        command += ["-b", "127.0.0.1", "-p", str(self.port), "chatproject.asgi:application"]
        self.log = open(self.workdir / f"daphne-{self.port}.log", "ab")
        self.proc = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(self.healthy, timeout=40, what=f"daphne on port {self.port} to answer /health/")
        return self

    def healthy(self):
        if self.proc.poll() is not None:
            tail = (self.workdir / f"daphne-{self.port}.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"daphne exited with {self.proc.returncode}:\n{tail}")
        with urllib.request.urlopen(f"{self.url}/health/", timeout=2) as response:
            return response.status == 200

    def stop(self, sig=signal.SIGTERM):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if self.log:
            self.log.close()
            self.log = None
        wait_until(lambda: not port_open(self.port), timeout=10, what=f"port {self.port} to close")

    def kill(self):
        """A crash: no goodbye to any client."""
        self.stop(signal.SIGKILL)

    def restart(self):
        self.kill()
        self.start()

    def api(self, method, path, token=None, body=None):
        """Call the HTTP API; return (status, parsed JSON or None)."""
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Token {token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw, status = response.read(), response.status
        except urllib.error.HTTPError as error:
            raw, status = error.read(), error.code
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, None

    def post_message(self, token, room, body, client_id=None):
        payload = {"body": body}
        if client_id:
            payload["client_id"] = client_id
        status, data = self.api("POST", f"/api/rooms/{room}/messages/", token, payload)
        assert status in (200, 201), (status, data)
        return data


class Session:
    """A browser context (one person's cookie jar) and the pages (tabs) opened in it."""

    def __init__(self, context, server):
        self.context = context
        self.server = server
        self.dialogs = []
        self.errors = []
        context.on("page", self._watch)

    def _watch(self, page):
        page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def login(self, username, password=SEED_PASSWORD):
        """Log in through the login form; return the chat page, connected."""
        page = self.context.new_page()
        page.goto(f"{self.server.url}/accounts/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", password)
        page.click("button[type=submit]")
        page.wait_for_url(f"{self.server.url}/")
        expect(page.locator("#conn")).to_have_attribute("data-state", "online")
        return page

    def tab(self):
        """Another tab of the same (logged-in) person."""
        page = self.context.new_page()
        page.goto(f"{self.server.url}/")
        expect(page.locator("#conn")).to_have_attribute("data-state", "online")
        return page


def open_room(page, room_id):
    """Click a room in the list and wait for its history to be loaded."""
    page.click(f'#room-list li[data-room-id="{room_id}"] button')
    expect(page.locator("#room-view")).to_be_visible()
    expect(page.locator(f'#room-list li[data-room-id="{room_id}"] button')).to_have_attribute("aria-current", "true")
    page.wait_for_function(f"() => window.chat?.rooms.get({room_id})?.store?.loaded === true")
