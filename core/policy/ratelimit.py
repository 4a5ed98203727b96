"""Token buckets: rate limits per tool, per peer (the policy engine) and per HTTP client (`shoal serve`).

A bucket holds up to `burst` tokens and refills at `rate` tokens per second. Taking a token from an empty
bucket is refused with the seconds until one is back, so the caller can say when to retry (HTTP 429's
Retry-After, or the policy's "try again in 3 s"). Buckets live in memory: limits protect the agent from a
burst, they are not an account (token quotas, which are, persist in SQLite).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class TokenBucket:
    rate: float  # tokens per second
    burst: int  # capacity
    tokens: float
    updated: float

    def take(self, now: float, cost: float = 1.0) -> float:
        """Take `cost` tokens; returns 0.0 when granted, else the seconds until they would be available."""
        self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate


class RateLimiter:
    """One bucket per key (a client address, a tool name, a peer id), created full on first use.

    At most `max_keys` buckets are kept, least recently used dropped first, so a flood of distinct keys
    cannot grow memory without bound (a dropped key starts again with a full bucket).
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a rate limit needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def acquire(self, key: str, cost: float = 1.0) -> float:
        """0.0 when allowed; otherwise the seconds to wait (nothing is taken from the bucket)."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst, float(self.burst), now)
            self._buckets[key] = bucket
            if len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(now, cost)

    def __len__(self) -> int:
        return len(self._buckets)
