"""The ASGI application: Django for HTTP, the device consumer for /ws/."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from chat.auth import DeviceAuthMiddlewareStack  # noqa: E402
from chat.fanout.wire import WireMiddleware  # noqa: E402
from chat.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": WireMiddleware(DeviceAuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
