"""Settings come from the environment; production refuses development defaults."""

import json
import os
import subprocess
import sys

from tests.live import ROOT

REAL_KEY = "k" * 20 + "-a-real-production-secret-key-with-enough-entropy-0123456789"


def run_python(code, **env):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_", "REDIS_"))}
    full_env.update(env)
    full_env["DJANGO_SETTINGS_MODULE"] = "chatproject.settings"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=60)


def settings_json(expr, **env):
    result = run_python(f"import json; from django.conf import settings; print(json.dumps({expr}, default=str))", **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_production_mode_refuses_the_development_secret_key():
    result = run_python("import django; django.setup()", DJANGO_DEBUG="0")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_with_nothing_set_the_database_is_a_sqlite_file_in_the_project():
    db = settings_json("settings.DATABASES['default']")
    assert db["ENGINE"] == "django.db.backends.sqlite3"
    assert db["NAME"] == str(ROOT / "db.sqlite3")


def test_a_postgresql_url_is_parsed():
    db = settings_json(
        "settings.DATABASES['default']", DATABASE_URL="postgres://chat:s3cret@db.example:5433/chatdb"
    )
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["NAME"], db["USER"], db["PASSWORD"], db["HOST"], db["PORT"]) == (
        "chatdb", "chat", "s3cret", "db.example", 5433
    )


def test_without_redis_url_the_fan_out_stays_in_the_process_and_with_it_uses_every_host():
    assert settings_json("settings.CHANNEL_LAYERS['default']['CONFIG']['hosts']") == []
    hosts = settings_json(
        "settings.CHANNEL_LAYERS['default']['CONFIG']['hosts']", REDIS_URL="redis://a:6379/0,redis://b:6379/0"
    )
    assert hosts == ["redis://a:6379/0", "redis://b:6379/0"]


def test_allowed_hosts_and_rate_limits_come_from_the_environment():
    assert settings_json("settings.ALLOWED_HOSTS") == ["localhost", "127.0.0.1"]
    assert settings_json("settings.ALLOWED_HOSTS", DJANGO_ALLOWED_HOSTS="chat.example, www.chat.example") == [
        "chat.example", "www.chat.example"
    ]
    assert settings_json("settings.REST_FRAMEWORK['DEFAULT_THROTTLE_CLASSES']", CHAT_RATE_LIMITS="0") == []


def test_check_deploy_is_clean_in_production_over_https():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_", "REDIS_"))}
    env.update(DJANGO_DEBUG="0", DJANGO_HTTPS="1", DJANGO_SECRET_KEY=REAL_KEY)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "DEBUG"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_over_https_cookies_are_secure_and_hsts_lasts_a_year_unless_configured():
    production = dict(DJANGO_DEBUG="0", DJANGO_HTTPS="1", DJANGO_SECRET_KEY=REAL_KEY)
    expr = (
        "[settings.DEBUG, settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE, settings.SECURE_SSL_REDIRECT,"
        " settings.SECURE_HSTS_SECONDS, settings.SECURE_HSTS_INCLUDE_SUBDOMAINS]"
    )
    assert settings_json(expr, **production) == [False, True, True, True, 31536000, True]
    assert settings_json("settings.SECURE_HSTS_SECONDS", **production, DJANGO_HSTS_SECONDS="3600") == 3600
    # Plain HTTP development: none of it, or the browser would refuse the site.
    assert settings_json(expr) == [True, False, False, False, 0, False]


def test_an_https_response_carries_hsts_and_a_plain_http_one_is_redirected():
    code = (
        "import django; django.setup(); from django.test import Client; c = Client();"
        "r = c.get('/health/', secure=True); print(r.status_code, r.headers.get('Strict-Transport-Security'));"
        "r = c.get('/health/'); print(r.status_code, r.headers.get('Location'))"
    )
    result = run_python(
        code, DJANGO_DEBUG="0", DJANGO_HTTPS="1", DJANGO_SECRET_KEY=REAL_KEY, DJANGO_ALLOWED_HOSTS="testserver",
        DJANGO_HSTS_SECONDS="600",
    )
    assert result.returncode == 0, result.stderr
    secure, plain = result.stdout.splitlines()
    assert secure == "200 max-age=600; includeSubDomains; preload"
    assert plain == "301 https://testserver/health/"
