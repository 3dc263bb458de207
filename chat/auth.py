"""Who a WebSocket device is: an API token, or a session cookie from our own pages."""

from urllib.parse import urlparse

from channels.auth import get_user
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import AllowedHostsOriginValidator
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.contrib.auth.models import AnonymousUser
from rest_framework.authtoken.models import Token


@database_sync_to_async
def user_for_token(key):
    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return AnonymousUser()
    return token.user


def token_from_headers(headers):
    value = headers.get(b"authorization", b"").decode("latin-1").strip()
    scheme, _, key = value.partition(" ")
    if scheme.lower() == "token" and key.strip():
        return key.strip()
    return None


def origin_allowed(headers):
    """A cookie is only honoured from a page of an allowed host (no cross-site hijacking)."""
    origin = headers.get(b"origin")
    if not origin:
        return False
    try:
        parsed = urlparse(origin.decode("latin-1"))
    except ValueError:
        return False
    return AllowedHostsOriginValidator(None).valid_origin(parsed)


class DeviceAuthMiddleware(BaseMiddleware):
    """Set scope["user"] from `Authorization: Token …`, else from the session cookie."""

    async def __call__(self, scope, receive, send):
        headers = dict(scope.get("headers", ()))
        key = token_from_headers(headers)
        if key is not None:
            scope["user"] = await user_for_token(key)
        elif origin_allowed(headers):
            scope["user"] = await get_user(scope)
        else:
            scope["user"] = AnonymousUser()
        return await super().__call__(scope, receive, send)


def DeviceAuthMiddlewareStack(inner):  # noqa: N802 (named like Channels' stacks)
    return CookieMiddleware(SessionMiddleware(DeviceAuthMiddleware(inner)))
