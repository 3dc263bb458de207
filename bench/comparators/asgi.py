"""ASGI application of the comparators: the product's HTTP side and auth, another device consumer."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.comparators.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.urls import path  # noqa: E402

from chat.auth import DeviceAuthMiddlewareStack  # noqa: E402

from .consumers import CONSUMERS  # noqa: E402

consumer = CONSUMERS[settings.BENCH_FANOUT]

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": DeviceAuthMiddlewareStack(URLRouter([path("ws/", consumer.as_asgi())])),
    }
)
