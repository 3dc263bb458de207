"""Who a WebSocket device is: an API token, or a session cookie from our own pages.

And for how long: a device remembers the credential it came with, and when
that credential ends (the token is deleted or rotated, the session logs out)
every device that used it is closed with 4001, on every worker.
"""

import hashlib
from importlib import import_module
from urllib.parse import urlparse

from channels.auth import get_user
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import AllowedHostsOriginValidator
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_delete
from django.dispatch import receiver
from rest_framework.authtoken.models import Token, TokenProxy

from . import events

# scope[CREDENTIAL_SCOPE_KEY]: ("token", key) or ("session", session key).
CREDENTIAL_SCOPE_KEY = "chat.credential"


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
            scope[CREDENTIAL_SCOPE_KEY] = ("token", key)
        elif origin_allowed(headers):
            scope["user"] = await get_user(scope)
            scope[CREDENTIAL_SCOPE_KEY] = ("session", scope["session"].session_key)
        else:
            scope["user"] = AnonymousUser()
        return await super().__call__(scope, receive, send)


def DeviceAuthMiddlewareStack(inner):  # noqa: N802 (named like Channels' stacks)
    return CookieMiddleware(SessionMiddleware(DeviceAuthMiddleware(inner)))


# Revocation


def fingerprint(credential):
    """What a device is attached with and a revocation names: a digest of (kind, key).

    Not the key itself: revocations travel through Redis to every worker,
    and a digest there reveals nothing even while the key is still valid.
    """
    if not credential or not credential[1]:
        return None
    kind, key = credential
    return hashlib.sha256(f"{kind}:{key}".encode()).hexdigest()


def credential_valid(credential, user_id):
    """Whether the credential still stands (from sync code: it reads the database)."""
    if not credential:
        return True
    kind, key = credential
    if kind == "token":
        return Token.objects.filter(key=key, user_id=user_id).exists()
    if not key:
        return False
    return import_module(settings.SESSION_ENGINE).SessionStore().exists(key)


def close_devices_of(user_id, credential):
    """Close, on every worker, the user's devices that came with this credential, after commit."""
    from .consumers import UNAUTHENTICATED  # the device protocol's close code

    events.close_devices_on_commit(user_id, fingerprint(credential), UNAUTHENTICATED)


# Tokens end by deletion: in the admin, by rotation (delete, then create), or
# with their user. DRF's admin shows tokens as the TokenProxy model, and a
# proxy's own deletions send signals that name the proxy, hence both senders.
# Connected per model: a receiver for every model would stop Django's fast
# bulk deletes (a room's messages) everywhere.
@receiver(post_delete, sender=Token)
@receiver(post_delete, sender=TokenProxy)
def close_devices_of_a_deleted_token(sender, instance, **kwargs):
    close_devices_of(instance.user_id, ("token", instance.key))


@receiver(user_logged_out)
def close_devices_of_a_logged_out_session(sender, request, user, **kwargs):
    session = getattr(request, "session", None)
    key = getattr(session, "session_key", None)
    if user is not None and key:
        # Sent before the session is flushed, so the key is still the one the devices used.
        close_devices_of(user.pk, ("session", key))
