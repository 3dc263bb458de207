"""A per-device rate limit: at most `rate` actions in any `per` seconds."""

import time
from collections import deque

from django.conf import settings


class SlidingWindow:
    def __init__(self, rate, per=10.0):
        self.rate = rate
        self.per = per
        self._times = deque()

    def allow(self):
        """Count one action; False if it is over the limit (and then it is not counted)."""
        if not settings.RATE_LIMITS or self.rate <= 0:
            return True
        now = time.monotonic()
        times = self._times
        while times and now - times[0] >= self.per:
            times.popleft()
        if len(times) >= self.rate:
            return False
        times.append(now)
        return True
