"""``GET /peppol/query``: the registered Peppol service providers, newest first, paged by ``pageOffset``."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from aiohttp import web

from ksef_async.errors import ConfigurationError
from ksef_async.testing.simulator.problems import ApiFailure
from ksef_async.testing.simulator.runtime import Principal, Runtime
from ksef_async.testing.simulator.state import PeppolProviderRecord, SimState, iso

__all__ = ["HANDLERS", "add_provider", "query"]

_ID_RE = re.compile(r"^P[A-Z]{2}[0-9]{6}$")
_MAX_NAME = 256
_INVALID = "Błąd walidacji danych wejściowych."


def add_provider(state: SimState, provider_id: str, name: str, date_created: dt.datetime | None = None) -> None:
    """Register a Peppol provider (``id`` as the spec's ``PeppolId``: ``P``, two letters, six digits).

    Raises:
        ConfigurationError: A malformed id or name, a naive ``date_created``, or an id already registered.
    """
    if not _ID_RE.match(provider_id):
        raise ConfigurationError(f"Peppol provider id must match P[A-Z]{{2}}[0-9]{{6}}, got {provider_id!r}")
    if not name or len(name) > _MAX_NAME:
        raise ConfigurationError(f"Peppol provider name must be 1 to {_MAX_NAME} characters")
    if date_created is not None and date_created.tzinfo is None:
        raise ConfigurationError("date_created must be timezone-aware")
    if provider_id in state.peppol_providers:
        raise ConfigurationError(f"Peppol provider {provider_id} is already registered")
    state.peppol_providers[provider_id] = PeppolProviderRecord(provider_id, name, date_created or state.clock.now_dt())


async def query(rt: Runtime, request: web.Request, _principal: Principal | None, _body: Any) -> web.Response:
    """``GET /peppol/query``: sorted by ``dateCreated`` descending, then ``id`` ascending."""
    try:
        size = int(request.query.get("pageSize", "10"))
        offset = int(request.query.get("pageOffset", "0"))
    except ValueError:
        raise ApiFailure(400, 21405, _INVALID, ["pageSize and pageOffset must be integers"]) from None
    if not 10 <= size <= 100 or offset < 0:  # noqa: PLR2004
        raise ApiFailure(400, 21405, _INVALID, ["pageSize must be 10..100 and pageOffset >= 0"])
    ordered = sorted(rt.state.peppol_providers.values(), key=lambda p: p.provider_id)
    ordered.sort(key=lambda p: p.date_created, reverse=True)  # stable: ties keep the id order
    page = ordered[offset * size : (offset + 1) * size]
    return web.json_response(
        {
            "peppolProviders": [
                {"id": p.provider_id, "name": p.name, "dateCreated": iso(p.date_created)} for p in page
            ],
            "hasMore": (offset + 1) * size < len(ordered),
        }
    )


HANDLERS = {"get_peppol_query": query}
"""Operation id -> handler, merged into the application's routing table."""
