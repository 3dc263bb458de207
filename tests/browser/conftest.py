"""Browser tests: a real daphne process on a temp SQLite database, driven by Debian's Chromium.

The server is started once per session (migrate, then daphne on a free port)
and stopped by pid at the end. Every wait polls for an event with a deadline;
nothing sleeps for a fixed time.
"""

import itertools

import pytest
from playwright.sync_api import sync_playwright

from .support import CHROMIUM, CHROMIUM_ARGS, ChatServer, Session


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    chat = ChatServer(tmp_path_factory.mktemp("chat-browser"))
    chat.migrate()
    chat.start()
    yield chat
    chat.stop()


_prefixes = itertools.count()


@pytest.fixture
def people(server):
    """Three fresh users (…0 owns a group room with …1 and …2): the test's alice, bob and carol."""
    prefix = f"p{next(_prefixes)}x"
    seeded = server.seed(3, prefix, room=f"Lobby {prefix}")
    alice, bob, carol = seeded["users"]
    return {"room": seeded["room"], "alice": alice, "bob": bob, "carol": carol}


# Package scope: the sync API keeps an event loop running in this thread
# until it stops, and the asyncio tests after this package need it gone.
@pytest.fixture(scope="package")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def sessions(browser, server):
    """Make browser sessions: sessions(viewport=…, timezone_id=…)."""
    made = []

    def make(**options):
        options.setdefault("viewport", {"width": 1280, "height": 800})
        options.setdefault("locale", "en-US")
        context = browser.new_context(**options)
        context.set_default_timeout(15000)
        session = Session(context, server)
        made.append(session)
        return session

    yield make
    for session in made:
        session.context.close()
    for session in made:
        assert not session.errors, f"JavaScript errors: {session.errors}"
