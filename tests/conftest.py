import pytest
from django.contrib.auth import get_user_model


@pytest.fixture
def make_user(db):
    def make(username, password="correct-horse-battery"):
        return get_user_model().objects.create_user(username=username, password=password)

    return make


@pytest.fixture
def alice(make_user):
    return make_user("alice")


@pytest.fixture
def bob(make_user):
    return make_user("bob")


@pytest.fixture
def charlie(make_user):
    return make_user("charlie")


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # The real hasher is slow on purpose; tests create many users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server; skipped only where none is installed and CI did not ask for it."""
    import os

    from tests.live import PostgresServer

    server = PostgresServer()
    if not server.available:
        if os.environ.get("CHAT_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL is required here but not installed")
        pytest.skip("PostgreSQL is not installed")
    server.start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """One real redis-server for the session's layer tests."""
    from tests.live import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    """A new in-process layer per test: devices and room positions never leak between tests."""
    from channels.layers import channel_layers

    channel_layers.backends.pop("default", None)
    yield
    channel_layers.backends.pop("default", None)
