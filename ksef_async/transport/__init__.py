"""aiohttp transports: the API session (auth, limiter, retries) and the storage session (pre-signed URLs)."""

from __future__ import annotations

from ksef_async.transport._api import (
    SAFE_POSTS,
    ApiResponse,
    ApiTransport,
    KsefSystemWarning,
    RetryPolicy,
    TokenSource,
)
from ksef_async.transport._storage import HASH_HEADER, StorageTransport, check_hash

__all__ = [
    "HASH_HEADER",
    "SAFE_POSTS",
    "ApiResponse",
    "ApiTransport",
    "KsefSystemWarning",
    "RetryPolicy",
    "StorageTransport",
    "TokenSource",
    "check_hash",
]
