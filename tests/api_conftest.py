"""Fixtures shared by the tests/test_api_*.py modules (import them by name)."""

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from chat import services


@pytest.fixture(autouse=True)
def fresh_throttles():
    # Throttle counters live in the cache: without this, one test's requests
    # would count against the next test's rate.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def api():
    """A client with no credentials."""
    return APIClient()


@pytest.fixture
def client_for():
    """A client that sends the user's API token, as a mobile app would."""

    def make(user):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {user.auth_token.key}")
        return client

    return make


@pytest.fixture
def alice_api(client_for, alice):
    return client_for(alice)


@pytest.fixture
def bob_api(client_for, bob):
    return client_for(bob)


@pytest.fixture
def charlie_api(client_for, charlie):
    return client_for(charlie)


@pytest.fixture
def lobby(alice, bob):
    """Alice's group room; Bob is a member, Charlie is not."""
    return services.create_group_room(creator=alice, name="Lobby", member_ids=[bob.pk])


def say(room, user, *bodies):
    """Store messages as the user; return them."""
    return [services.post_message(room_id=room.pk, sender=user, body=body)[0] for body in bodies]


def messages_url(room, **query):
    params = "&".join(f"{key}={value}" for key, value in query.items())
    return f"/api/rooms/{room.pk}/messages/" + (f"?{params}" if params else "")
