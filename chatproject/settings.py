"""Settings, all from the environment; see the "Running" table of the API contract.

With nothing set, this is a development setup: SQLite in the project folder,
in-process fan-out, DEBUG on. Production sets DJANGO_DEBUG=0 and a real
DJANGO_SECRET_KEY (refused otherwise).
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_flag(name, default):
    return os.environ.get(name, default).strip().lower() in ("1", "true", "yes", "on")


def env_list(name, default):
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEV_SECRET_KEY = "dev-only-insecure-key-never-use-in-production"

DEBUG = env_flag("DJANGO_DEBUG", "1")
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", DEV_SECRET_KEY)
if not DEBUG and SECRET_KEY == DEV_SECRET_KEY:
    raise ImproperlyConfigured(
        "DJANGO_DEBUG=0 needs a real DJANGO_SECRET_KEY; the development key is refused."
    )

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1")

INSTALLED_APPS = [
    # daphne first: its runserver serves HTTP and WebSocket from one process.
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "channels",
    "accounts",
    "chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "chatproject.urls"
ASGI_APPLICATION = "chatproject.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several workers share one SQLite file: wait for the write lock instead of
    # failing at once, and take it at BEGIN so seq allocation never deadlocks.
    DATABASES["default"]["OPTIONS"] = {
        # Seconds to wait for another writer; past it a send answers 503 / "unavailable".
        "timeout": float(os.environ.get("DATABASE_BUSY_TIMEOUT", "20")),
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # Tests use a file too: concurrency tests need real locking across threads.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "test-db.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat:index"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# HTTPS: only when served over TLS, so plain-HTTP development keeps working.
HTTPS = env_flag("DJANGO_HTTPS", "0")
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS
# How long browsers keep to https once told (HSTS): a year unless set. Start
# lower (say 3600) while trying TLS out: browsers remember it for that long.
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", "31536000")) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

RATE_LIMITS = env_flag("CHAT_RATE_LIMITS", "1")

REST_FRAMEWORK = {
    # DRF's two, the JSON one also rendering an error that quotes an unpaired surrogate.
    "DEFAULT_RENDERER_CLASSES": [
        "chat.api.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Proxies in front whose X-Forwarded-For may be trusted; 0: the client's own address.
    "NUM_PROXIES": int(os.environ.get("DJANGO_NUM_PROXIES", "0")),
    "DEFAULT_THROTTLE_CLASSES": (
        ["chat.api.throttles.UserThrottle", "chat.api.throttles.AnonThrottle"]
        if RATE_LIMITS
        else []
    ),
    "DEFAULT_THROTTLE_RATES": {
        "user": os.environ.get("CHAT_API_RATE", "1200/min"),
        "anon": os.environ.get("CHAT_ANON_RATE", "60/min"),
        "auth": os.environ.get("CHAT_AUTH_RATE", "20/min"),
        "message": os.environ.get("CHAT_MESSAGE_RATE", "120/min"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Chat API",
    "DESCRIPTION": "Rooms, members and messages; live delivery is over the WebSocket at /ws/.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
}

# Fan-out: REDIS_URL may list several hosts, comma-separated (one shard each).
REDIS_URLS = env_list("REDIS_URL", "")
if REDIS_URLS:
    # Shared by the workers, so that API throttles count across all of them.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URLS[0]}}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "chat.fanout.layer.FanoutChannelLayer",
        "CONFIG": {
            "hosts": REDIS_URLS,
            "members": "chat.selectors.room_member_ids",
            "backfill": "chat.selectors.room_events_after",
            # A device further behind than this is closed with 4008.
            "device_max_frames": int(os.environ.get("CHAT_DEVICE_MAX_FRAMES", "1000")),
            "device_max_bytes": int(os.environ.get("CHAT_DEVICE_MAX_BYTES", str(1024 * 1024))),
            # Seconds between a worker's presence heartbeats; a killed worker's users go offline after 3.
            "presence_interval": float(os.environ.get("CHAT_PRESENCE_INTERVAL", "10")),
        },
    }
}

# Per-device limits of the WebSocket protocol (see the API contract).
CHAT_MAX_FRAME_BYTES = 64 * 1024
CHAT_MAX_BODY_CHARS = 4000
CHAT_DEVICE_MESSAGE_RATE = int(os.environ.get("CHAT_DEVICE_MESSAGE_RATE", "20"))  # per 10 s
CHAT_DEVICE_TYPING_RATE = int(os.environ.get("CHAT_DEVICE_TYPING_RATE", "5"))  # per 10 s

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"daphne": {"level": "WARNING"}, "django.channels.server": {"level": "WARNING"}},
}
