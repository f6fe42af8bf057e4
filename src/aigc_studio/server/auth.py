"""API keys and per-key rate limits for every ``/v1`` route.

Auth is on when ``settings.server.auth`` is ``"required"``, or ``"auto"`` (the default) and at least one
active key exists in the database (``aigc keys create``). A request then needs ``Authorization: Bearer KEY``;
only the key's SHA-256 is stored and compared (:mod:`aigc_studio.store.keys`).

Rate limiting is a token bucket per key (per client address when auth is off): ``rate_limit_per_minute``
tokens, refilled continuously; an empty bucket answers 429 with ``Retry-After`` in whole seconds.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from fastapi import Request

from aigc_studio.server.errors import ApiError
from aigc_studio.settings import ServerSettings

# How long the answer to "does any key exist?" is reused: keys made by `aigc keys create` in another process
# take effect within this many seconds, and a burst of requests costs one query, not one each.
KEY_PRESENCE_TTL_S = 2.0
# Callers tracked before refilled buckets are forgotten (with auth off, one per client address).
MAX_BUCKETS = 10_000


@dataclass
class TokenBucket:
    """``capacity`` tokens refilled at ``rate`` per second; :meth:`take` spends one if there is one."""

    capacity: float
    rate: float
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """Spend a token and return 0, or return the seconds until one is available (nothing spent)."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class RateLimiter:
    """Token buckets by caller; thread-safe (sync dependencies run on the thread pool)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def check(self, caller: str, per_minute: int | None = None) -> None:
        """Spend one request of ``caller``'s budget.

        Args:
            caller: the key id (``key:3``) or client address (``ip:127.0.0.1``).
            per_minute: this caller's own limit (a key's override); None uses the server's.

        Raises:
            ApiError: 429 with ``Retry-After`` when the bucket is empty.
        """
        limit = self.per_minute if per_minute is None else per_minute
        if limit <= 0:
            return
        now = time.monotonic()
        with self._lock:
            if len(self._buckets) >= MAX_BUCKETS:
                self._forget_full_buckets(now)
            bucket = self._buckets.get(caller)
            if bucket is None or bucket.capacity != limit:
                bucket = self._buckets[caller] = TokenBucket(capacity=limit, rate=limit / 60, tokens=limit, updated=now)
            wait = bucket.take(now)
        if wait > 0:
            retry_after = max(1, math.ceil(wait))
            raise ApiError(429, f"rate limit of {limit} requests per minute reached; retry in {retry_after} s",
                           code="rate_limit_exceeded", headers={"Retry-After": str(retry_after)})

    def _forget_full_buckets(self, now: float) -> None:
        # A bucket that has refilled is the same as a new one: dropping it keeps memory bounded by recent callers.
        for caller, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.updated) * bucket.rate >= bucket.capacity:
                del self._buckets[caller]


class Authenticator:
    """Decides whether a request may proceed and which key made it.

    Args:
        settings: the server settings (``auth`` mode and ``rate_limit_per_minute``).
        database: the store's :class:`~aigc_studio.store.db.Database`.
    """

    def __init__(self, settings: ServerSettings, database) -> None:
        self.mode = settings.auth
        self.database = database
        self.limiter = RateLimiter(settings.rate_limit_per_minute)
        self._keys_exist: tuple[float, bool] = (-math.inf, False)

    def refresh(self) -> None:
        """Forget whether keys exist, so the next request reads the database (after keys change in-process)."""
        self._keys_exist = (-math.inf, False)

    def auth_required(self) -> bool:
        """Whether requests need a key now (``auto``: once any active key exists)."""
        if self.mode == "off":
            return False
        if self.mode == "required":
            return True
        checked_at, exists = self._keys_exist
        if time.monotonic() - checked_at > KEY_PRESENCE_TTL_S:
            from aigc_studio.store.keys import any_active_key

            exists = any_active_key(self.database)
            self._keys_exist = (time.monotonic(), exists)
        return exists

    def __call__(self, request: Request) -> int | None:
        """FastAPI dependency: check the key and the rate limit; returns the key id (None when auth is off).

        Raises:
            ApiError: 401 for a missing, malformed, unknown or revoked key; 429 over the rate limit.
        """
        key_id: int | None = None
        limit: int | None = None
        if self.auth_required():
            from aigc_studio.store.keys import verify_key

            header = request.headers.get("authorization", "")
            scheme, _, secret = header.partition(" ")
            if not header:
                raise ApiError(401, "missing API key; send the header 'Authorization: Bearer KEY' "
                                    "(create one with `aigc keys create --name NAME`)", code="missing_api_key")
            if scheme.lower() != "bearer" or not secret.strip():
                raise ApiError(401, "malformed Authorization header; it must be 'Bearer KEY'", code="invalid_api_key")
            info = verify_key(self.database, secret.strip())
            if info is None:
                raise ApiError(401, "invalid or revoked API key; check the key or create a new one with "
                                    "`aigc keys create --name NAME`", code="invalid_api_key")
            key_id = info.id
            limit = info.rate_limit_per_minute
            caller = f"key:{key_id}"
        else:
            caller = f"ip:{request.client.host if request.client else 'unknown'}"
        request.state.api_key_id = key_id
        self.limiter.check(caller, limit)
        return key_id
