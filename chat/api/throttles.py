"""Throttles at the rates configured in settings, all off when CHAT_RATE_LIMITS=0."""

import logging

from django.conf import settings
from redis.exceptions import RedisError
from rest_framework.throttling import AnonRateThrottle, ScopedRateThrottle, UserRateThrottle

logger = logging.getLogger(__name__)


class FailOpen:
    """Let the request through when the throttle's cache cannot be reached.

    With REDIS_URL set the counts live in Redis (shared by the workers).
    While Redis is down the database still works, so sending and reading
    still can: an uncounted request is better than a 500 on every call.
    The WebSocket's per-device limits are in-process and still apply.
    """

    def allow_request(self, request, view):
        try:
            return super().allow_request(request, view)
        except RedisError as error:
            logger.warning("%s not counted: its cache is unreachable (%s)", type(self).__name__, error)
            return True


class UserThrottle(FailOpen, UserRateThrottle):
    pass


class AnonThrottle(FailOpen, AnonRateThrottle):
    pass


class ScopedThrottle(FailOpen, ScopedRateThrottle):
    """The rate of the view's `throttle_scope` ("auth", "message").

    Views list this class explicitly, so unlike the default user/anon
    throttles it is not dropped by settings when limits are off: it asks
    at every request instead.
    """

    def allow_request(self, request, view):
        if not settings.RATE_LIMITS:
            return True
        return super().allow_request(request, view)
