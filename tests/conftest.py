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
