"""A real daphne worker, started as production would, serves the pages."""

import urllib.request

import pytest

from tests.live import Service

pytestmark = pytest.mark.live


def test_a_daphne_worker_serves_the_login_page_and_the_admin_login(tmp_path):
    service = Service(tmp_path, workers=1, redis=False).start()
    try:
        base = service.workers[0].http
        for path, text in [("/accounts/login/", b'name="username"'), ("/admin/login/", b"Django administration")]:
            with urllib.request.urlopen(base + path, timeout=10) as response:
                assert response.status == 200
                assert text in response.read()
        assert service.workers[0].health()["redis"] == "off"
    finally:
        service.stop()
