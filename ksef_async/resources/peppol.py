"""``client.peppol``: the registered Peppol service providers (a public, paged list)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from ksef_async.core.paging import PageGuard
from ksef_async.models import PeppolProvider, QueryPeppolProvidersResponse
from ksef_async.resources._base import Resource

__all__ = ["PeppolResource"]


class PeppolResource(Resource):
    """``GET /peppol/query`` (no login needed)."""

    async def providers(self, *, page_size: int | None = None) -> AsyncIterator[PeppolProvider]:
        """``GET /peppol/query``: every Peppol provider, newest first, page by page (``pageOffset``, ``hasMore``).

        Args:
            page_size: 10 to 100 per page.
        """
        offset = 0
        guard = PageGuard("get_peppol_query")
        while True:
            params: dict[str, int] = {"pageOffset": offset}
            if page_size is not None:
                params["pageSize"] = page_size
            page = await self._get_model("get_peppol_query", QueryPeppolProvidersResponse, params=params)
            guard.page(items=len(page.peppol_providers), has_more=bool(page.has_more))
            for provider in page.peppol_providers:
                yield provider
            if not page.has_more:
                return
            offset += 1
