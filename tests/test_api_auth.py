"""Accounts over HTTP: register, token, me, user search, and how callers authenticate."""

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from .api_conftest import alice_api, api, bob_api, charlie_api, client_for, fresh_throttles  # noqa: F401

pytestmark = pytest.mark.django_db


def test_dana_registers_and_her_token_works_at_once(api):
    reply = api.post("/api/auth/register/", {"username": "dana", "password": "lilac-meadow-42"}, format="json")

    assert reply.status_code == 201
    body = reply.json()
    assert set(body) == {"id", "username", "token"}
    dana = get_user_model().objects.get(username="dana")
    assert body == {"id": dana.pk, "username": "dana", "token": dana.auth_token.key}
    assert dana.check_password("lilac-meadow-42")

    api.credentials(HTTP_AUTHORIZATION=f"Token {body['token']}")
    assert api.get("/api/me/").json() == {"id": dana.pk, "username": "dana"}


def test_nobody_can_register_alices_name_in_any_case(api, alice):
    for name in ("alice", "ALICE"):
        reply = api.post("/api/auth/register/", {"username": name, "password": "lilac-meadow-42"}, format="json")
        assert reply.status_code == 400
        assert list(reply.json()) == ["username"]
    assert get_user_model().objects.filter(username__iexact="alice").count() == 1


@pytest.mark.parametrize(
    "password",
    ["short1", "password123", "12345678901", "dana-the-great"],
    ids=["too-short", "too-common", "all-digits", "like-the-username"],
)
def test_register_applies_djangos_password_validators(api, password):
    reply = api.post("/api/auth/register/", {"username": "dana-the-great", "password": password}, format="json")

    assert reply.status_code == 400
    assert set(reply.json()) == {"password"}
    assert reply.json()["password"]
    assert not get_user_model().objects.filter(username="dana-the-great").exists()


@pytest.mark.parametrize(
    "payload, bad_fields",
    [
        ({}, {"username", "password"}),
        ({"username": 123, "password": "lilac-meadow-42"}, {"username"}),
        ({"username": "dana", "password": ["lilac"]}, {"password"}),
        ({"username": "dana smith!", "password": "lilac-meadow-42"}, {"username"}),
        ({"username": "d" * 151, "password": "lilac-meadow-42"}, {"username"}),
        ({"username": "", "password": "lilac-meadow-42"}, {"username"}),
    ],
    ids=["missing", "number-name", "list-password", "bad-characters", "too-long", "blank"],
)
def test_register_refuses_bad_fields_with_json_400(api, payload, bad_fields):
    reply = api.post("/api/auth/register/", payload, format="json")

    assert reply.status_code == 400
    assert set(reply.json()) == bad_fields
    assert all(isinstance(messages, list) and messages for messages in reply.json().values())


def test_register_refuses_malformed_json_and_non_objects(api):
    broken = api.post("/api/auth/register/", "{not json", content_type="application/json")
    assert broken.status_code == 400
    assert "detail" in broken.json()

    listed = api.post("/api/auth/register/", ["dana", "pw"], format="json")
    assert listed.status_code == 400
    assert list(listed.json()) == ["non_field_errors"]


def test_register_works_from_a_logged_in_browser_without_a_csrf_token(alice):
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(alice)
    reply = browser.post("/api/auth/register/", {"username": "dana", "password": "lilac-meadow-42"}, format="json")

    assert reply.status_code == 201


def test_alice_exchanges_her_password_for_her_token(api, alice):
    reply = api.post("/api/auth/token/", {"username": "alice", "password": "correct-horse-battery"}, format="json")

    assert reply.status_code == 200
    assert reply.json() == {"token": alice.auth_token.key}


@pytest.mark.parametrize(
    "payload",
    [
        {"username": "alice", "password": "wrong"},
        {"username": "nobody", "password": "correct-horse-battery"},
        {"username": "alice"},
    ],
    ids=["wrong-password", "unknown-user", "no-password"],
)
def test_token_refuses_bad_credentials_with_400(api, alice, payload):
    reply = api.post("/api/auth/token/", payload, format="json")

    assert reply.status_code == 400
    assert "token" not in reply.json()


def test_a_deactivated_user_gets_no_token(api, alice):
    alice.is_active = False
    alice.save()

    reply = api.post("/api/auth/token/", {"username": "alice", "password": "correct-horse-battery"}, format="json")

    assert reply.status_code == 400


def test_alice_sees_herself_at_me(alice_api, alice):
    reply = alice_api.get("/api/me/")

    assert reply.status_code == 200
    assert reply.json() == {"id": alice.pk, "username": "alice"}


def test_no_or_bad_credentials_get_401(api):
    assert api.get("/api/me/").status_code == 401
    assert api.get("/api/rooms/").status_code == 401

    api.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    reply = api.get("/api/me/")
    assert reply.status_code == 401
    assert "detail" in reply.json()


def test_alice_uses_the_api_with_her_session_cookie(api, alice):
    assert api.login(username="alice", password="correct-horse-battery")

    assert api.get("/api/me/").json() == {"id": alice.pk, "username": "alice"}


def test_a_session_write_without_csrf_token_is_refused(alice):
    browser = APIClient(enforce_csrf_checks=True)
    assert browser.login(username="alice", password="correct-horse-battery")

    reply = browser.post("/api/rooms/", {"name": "Forged", "kind": "group"}, format="json")

    assert reply.status_code == 403
    assert "CSRF" in reply.json()["detail"]


def test_alice_finds_bob_by_the_start_of_his_name(alice_api, bob, charlie):
    reply = alice_api.get("/api/users/?search=B")

    assert reply.status_code == 200
    assert reply.json() == {"results": [{"id": bob.pk, "username": "bob"}]}


def test_user_search_without_a_prefix_finds_nobody(alice_api, bob):
    assert alice_api.get("/api/users/").json() == {"results": []}
    assert alice_api.get("/api/users/?search=").json() == {"results": []}
    assert alice_api.get("/api/users/?search=zz").json() == {"results": []}


def test_user_search_refuses_an_impossible_prefix(alice_api):
    for prefix in ("%00", "x" * 151):
        reply = alice_api.get(f"/api/users/?search={prefix}")
        assert reply.status_code == 400
        assert list(reply.json()) == ["search"]


def test_user_search_hides_deactivated_users(alice_api, bob):
    bob.is_active = False
    bob.save()

    assert alice_api.get("/api/users/?search=bob").json() == {"results": []}


def test_user_search_returns_at_most_twenty_in_name_order(alice_api, make_user):
    for i in range(25):
        make_user(f"user{i:02d}")

    results = alice_api.get("/api/users/?search=user").json()["results"]

    assert [u["username"] for u in results] == [f"user{i:02d}" for i in range(20)]


def test_user_search_needs_credentials(api):
    assert api.get("/api/users/?search=a").status_code == 401
