"""The OpenAPI schema and its page describe the whole HTTP API; errors stay JSON."""

import pytest

from .api_conftest import alice_api, api, client_for, fresh_throttles  # noqa: F401

pytestmark = pytest.mark.django_db

OPERATIONS = {
    ("/api/auth/register/", "post"),
    ("/api/auth/token/", "post"),
    ("/api/me/", "get"),
    ("/api/users/", "get"),
    ("/api/rooms/", "get"),
    ("/api/rooms/", "post"),
    ("/api/rooms/{room_id}/", "get"),
    ("/api/rooms/{room_id}/", "patch"),
    ("/api/rooms/{room_id}/", "delete"),
    ("/api/rooms/{room_id}/members/", "get"),
    ("/api/rooms/{room_id}/members/", "post"),
    ("/api/rooms/{room_id}/members/{user_id}/", "delete"),
    ("/api/rooms/{room_id}/messages/", "get"),
    ("/api/rooms/{room_id}/messages/", "post"),
    ("/api/rooms/{room_id}/read/", "post"),
}


@pytest.fixture
def schema(api):
    reply = api.get("/api/schema/?format=json")
    assert reply.status_code == 200
    return reply.json()


def test_the_schema_lists_every_operation_and_nothing_else(schema):
    found = {(path, method) for path, item in schema["paths"].items() for method in item}

    assert found == OPERATIONS


def test_the_schema_describes_the_contracts_shapes(schema):
    components = schema["components"]["schemas"]

    assert set(components["Room"]["properties"]) == {"id", "name", "kind", "role", "last_seq", "unread", "created_at"}
    assert set(components["Message"]["properties"]) == {"id", "room", "seq", "sender", "body", "client_id", "created_at"}
    assert set(components["Member"]["properties"]) == {"id", "username", "role", "online"}
    assert set(components["PaginatedRoomList"]["properties"]) == {"results", "next"}
    assert set(components["MessagePage"]["properties"]) == {"results", "has_more"}
    history = schema["paths"]["/api/rooms/{room_id}/messages/"]["get"]
    assert {p["name"] for p in history["parameters"]} == {"room_id", "after", "before", "limit"}
    send = schema["paths"]["/api/rooms/{room_id}/messages/"]["post"]
    assert set(send["responses"]) >= {"200", "201", "400", "404", "429"}


def test_the_docs_page_is_served(api):
    reply = api.get("/api/docs/")

    assert reply.status_code == 200
    assert b"swagger" in reply.content.lower()


def test_an_unknown_api_path_is_a_json_404(alice_api):
    reply = alice_api.get("/api/nothing/here/")

    assert reply.status_code == 404
    assert reply.json() == {"detail": "Not found."}


def test_a_wrong_method_is_a_json_405(alice_api):
    reply = alice_api.put("/api/rooms/", {}, format="json")

    assert reply.status_code == 405
    assert "detail" in reply.json()
