"""One module per KSeF API area; each resource is thin: build the request, send it, structure the answer, raise."""

from __future__ import annotations

from ksef_async.resources.auth import AuthResource
from ksef_async.resources.batch import BatchResource
from ksef_async.resources.invoices import InvoicesResource
from ksef_async.resources.limits import LimitsResource, RateLimitsResource
from ksef_async.resources.online import OnlineResource, OnlineSession
from ksef_async.resources.security import SecurityResource
from ksef_async.resources.sessions import SessionsResource

__all__ = [
    "AuthResource",
    "BatchResource",
    "InvoicesResource",
    "LimitsResource",
    "OnlineResource",
    "OnlineSession",
    "RateLimitsResource",
    "SecurityResource",
    "SessionsResource",
]
