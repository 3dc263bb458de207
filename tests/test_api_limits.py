"""Throttling (429) at the configured scopes, and CHAT_RATE_LIMITS=0 turning it off."""

import pytest

from chat.api.throttles import ScopedThrottle
from chat.models import Message

from .api_conftest import alice_api, api, bob_api, client_for, fresh_throttles, lobby, messages_url  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def tiny_rates(monkeypatch):
    # DRF reads the rates into the class at import; patch the class, not settings.
    monkeypatch.setattr(ScopedThrottle, "THROTTLE_RATES", {"auth": "2/min", "message": "3/min"})


def log_in(api, password="correct-horse-battery"):
    return api.post("/api/auth/token/", {"username": "alice", "password": password}, format="json")


def test_a_third_login_within_a_minute_is_throttled(api, alice, tiny_rates):
    codes = [log_in(api).status_code for _ in range(3)]

    assert codes == [200, 200, 429]
    reply = log_in(api)
    assert "detail" in reply.json()
    assert int(reply["Retry-After"]) > 0


def test_failed_logins_count_against_the_rate_too(api, alice, tiny_rates):
    codes = [log_in(api, password="guess").status_code for _ in range(3)]

    assert codes == [400, 400, 429]


def test_registering_shares_the_auth_rate(api, tiny_rates):
    codes = [
        api.post("/api/auth/register/", {"username": f"dana{i}", "password": "lilac-meadow-42"}, format="json").status_code
        for i in range(3)
    ]

    assert codes == [201, 201, 429]


def test_bob_sending_too_fast_is_throttled_but_may_still_read(bob_api, lobby, tiny_rates):
    codes = [bob_api.post(messages_url(lobby), {"body": f"m{i}"}, format="json").status_code for i in range(4)]

    assert codes == [201, 201, 201, 429]
    assert Message.objects.count() == 3
    assert bob_api.get(messages_url(lobby)).status_code == 200
    assert bob_api.post(f"/api/rooms/{lobby.pk}/read/", {"seq": 3}, format="json").status_code == 204


def test_the_message_rate_is_per_user(alice_api, bob_api, lobby, tiny_rates):
    for i in range(3):
        bob_api.post(messages_url(lobby), {"body": f"m{i}"}, format="json")

    assert bob_api.post(messages_url(lobby), {"body": "more"}, format="json").status_code == 429
    assert alice_api.post(messages_url(lobby), {"body": "mine"}, format="json").status_code == 201


def test_chat_rate_limits_off_lets_everything_through(api, bob_api, alice, lobby, tiny_rates, settings):
    settings.RATE_LIMITS = False

    assert {log_in(api).status_code for _ in range(5)} == {200}
    codes = {bob_api.post(messages_url(lobby), {"body": f"m{i}"}, format="json").status_code for i in range(6)}
    assert codes == {201}
