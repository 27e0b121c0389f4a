"""Per-user rate limits and per-address failed-authentication limits with the `limits` library.

Storage is in process memory for the embedded default and Redis when `REDIS_URL` is set, so
several API processes share one budget. If the limit store is unreachable we fail open (and
log): a broken limiter must not take grading down.
"""

from __future__ import annotations

import logging
import math
import time

from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from grader_api.config import Settings
from grader_api.errors import ApiError

log = logging.getLogger(__name__)


class RateLimiter:
    def __init__(self, settings: Settings):
        uri = settings.redis_url or "memory://"
        options = {"key_prefix": f"{settings.queue_prefix}heldout-limits"} if settings.redis_url else {}
        self._storage = storage_from_string(uri, **options)
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._limits = {"api": parse(settings.rate_limit), "upload": parse(settings.upload_rate_limit)}
        self._auth_failures = parse(settings.auth_failure_limit)

    def check(self, scope: str, user_id: int) -> None:
        """Count one request of `user_id` in `scope`; raise 429 when over the limit."""
        item = self._limits[scope]
        try:
            if self._limiter.hit(item, scope, str(user_id)):
                return
            reset = self._limiter.get_window_stats(item, scope, str(user_id)).reset_time
        except Exception:
            log.warning("rate-limit store unavailable; allowing the request", exc_info=True)
            return
        retry = max(1, math.ceil(reset - time.time()))
        raise ApiError(429, f"too many requests: limit is {item}; retry in {retry} s",
                       "rate_limited", headers={"Retry-After": str(retry)})

    def auth_retry_after(self, client: str) -> int | None:
        """Seconds until `client` (an address) may authenticate again; None while it has failures left.

        Only tests the window: asking costs nothing from the budget, so it runs before every
        token lookup.
        """
        item = self._auth_failures
        try:
            if self._limiter.test(item, "auth-failure", client):
                return None
            reset = self._limiter.get_window_stats(item, "auth-failure", client).reset_time
        except Exception:
            log.warning("rate-limit store unavailable; not throttling authentication", exc_info=True)
            return None
        return max(1, math.ceil(reset - time.time()))

    def count_auth_failure(self, client: str) -> None:
        """Count one failed authentication (unknown or revoked token, failed log-in) of `client`."""
        try:
            self._limiter.hit(self._auth_failures, "auth-failure", client)
        except Exception:
            log.warning("rate-limit store unavailable; failed authentication not counted", exc_info=True)

    # Sign-in links (/join/<code>): refused codes are counted per address like failed
    # authentications, with a budget of the same size kept apart, so guessing codes and
    # mistyping tokens do not use up each other's allowance.

    def join_retry_after(self, client: str) -> int | None:
        """Seconds until `client` may try a sign-in code again; None while it has failures left."""
        item = self._auth_failures
        try:
            if self._limiter.test(item, "join-failure", client):
                return None
            reset = self._limiter.get_window_stats(item, "join-failure", client).reset_time
        except Exception:
            log.warning("rate-limit store unavailable; not throttling sign-in codes", exc_info=True)
            return None
        return max(1, math.ceil(reset - time.time()))

    def count_join_failure(self, client: str) -> None:
        """Count one refused sign-in code (unknown, used or expired) of `client`."""
        try:
            self._limiter.hit(self._auth_failures, "join-failure", client)
        except Exception:
            log.warning("rate-limit store unavailable; refused sign-in code not counted", exc_info=True)

