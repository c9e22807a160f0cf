"""The KSeF calls the batch engine makes, as one small protocol, and its implementation over the transports.

The engine depends on `BatchApi` only, so it can run over `KsefClient`'s transports or any other
implementation (a test double for one layer). Bodies are the spec's JSON objects (``dict``), field names as
``schemas/openapi.json`` spells them; the engine reads only the fields it needs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from ksef_async.core.crypto import KEY_USAGE_SYMMETRIC, MfPublicKey
from ksef_async.core.system_warnings import SystemWarningLog
from ksef_async.operations import operation
from ksef_async.resources._features import feature_headers
from ksef_async.transport import ApiTransport, StorageTransport

if TYPE_CHECKING:
    from ksef_async.client import KsefClient

__all__ = ["BatchApi", "TransportBatchApi"]

_CONTINUATION = "x-continuation-token"
_PAGE_SIZE = 1000  # the spec's maximum for the session invoice lists: fewest calls (rate group sessionMisc)


class BatchApi(Protocol):
    """What the batch engine needs from KSeF."""

    async def public_key(self) -> MfPublicKey:
        """The MF certificate with usage ``SymmetricKeyEncryption``."""
        ...

    async def batch_limits(self) -> Mapping[str, Any] | None:
        """``batchSession`` of ``GET /limits/context`` (``None`` when the context has none)."""
        ...

    async def open_batch(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """``POST /sessions/batch``; returns ``OpenBatchSessionResponse``."""
        ...

    async def upload_part(
        self, method: str, url: str, headers: Mapping[str, str | None], body: BinaryIO, size: int
    ) -> None:
        """Send one part to its pre-signed URL exactly as described (never an ``Authorization`` header)."""
        ...

    async def close_batch(self, reference_number: str) -> None:
        """``POST /sessions/batch/{referenceNumber}/close`` (204)."""
        ...

    async def session_status(self, reference_number: str) -> Mapping[str, Any]:
        """``GET /sessions/{referenceNumber}``; returns ``SessionStatusResponse``."""
        ...

    def session_invoices(self, reference_number: str, *, failed: bool = False) -> AsyncIterator[Mapping[str, Any]]:
        """Every ``SessionInvoiceStatusResponse`` of ``/sessions/{ref}/invoices`` (or ``/invoices/failed``)."""
        ...

    async def download(self, url: str) -> bytes:
        """GET a pre-signed download URL, checked against ``x-ms-meta-hash``."""
        ...

    async def session_upo(self, reference_number: str, upo_reference_number: str) -> bytes:
        """``GET /sessions/{referenceNumber}/upo/{upoReferenceNumber}``, checked against ``x-ms-meta-hash``."""
        ...


class TransportBatchApi:
    """`BatchApi` over the API and storage transports of a client.

    Args:
        api: The authenticated API transport.
        storage: The storage transport (its own pool, no auth header).
        public_key: The MF ``SymmetricKeyEncryption`` key, a coroutine function returning it (e.g. the client's
            cached ``security.public_key``), or ``None`` to fetch it from ``GET /security/public-key-certificates``
            once.
    """

    def __init__(
        self,
        api: ApiTransport,
        storage: StorageTransport,
        public_key: MfPublicKey | Callable[[], Awaitable[MfPublicKey]] | None = None,
        *,
        features: Iterable[str] = (),
    ) -> None:
        self._api = api
        self._storage = storage
        self._headers = feature_headers(features)
        self._key = public_key if isinstance(public_key, MfPublicKey) else None
        self._key_source = None if isinstance(public_key, MfPublicKey) else public_key

    def __repr__(self) -> str:
        return f"TransportBatchApi({self._api!r})"

    @property
    def system_warnings(self) -> SystemWarningLog:
        """The API transport's ``X-System-Warning`` log (the batch report lists what arrives during a run)."""
        return self._api.system_warnings

    @classmethod
    def from_client(cls, client: KsefClient, *, features: Iterable[str] | None = None) -> TransportBatchApi:
        """Use the transports of an open `KsefClient` (its storage pool should match the upload concurrency).

        Sessions are opened with ``X-KSeF-Feature``: the client's ``ClientConfig.features`` plus ``features``.
        """
        api, storage = client.transports
        names = [*client.config.features, *(features or ())]
        return cls(api, storage, lambda: client.security.public_key(KEY_USAGE_SYMMETRIC), features=names)

    async def public_key(self) -> MfPublicKey:
        """Fetch (once) and return the ``SymmetricKeyEncryption`` key."""
        if self._key is None and self._key_source is not None:
            self._key = await self._key_source()
        if self._key is None:
            import datetime as dt  # noqa: PLC0415 - only this path needs the clock

            from ksef_async.core.crypto import select_public_key  # noqa: PLC0415

            response = await self._api.request(operation("get_security_public_key_certificates"))
            keys = [
                MfPublicKey.from_api(
                    item["certificate"],
                    dt.datetime.fromisoformat(item["validFrom"]),
                    dt.datetime.fromisoformat(item["validTo"]),
                    item.get("usage", ()),
                    item.get("publicKeyId"),  # format byte: already Base64 text in the JSON
                )
                for item in response.json()
            ]
            self._key = select_public_key(keys, "SymmetricKeyEncryption", dt.datetime.now(dt.UTC))
        return self._key

    async def batch_limits(self) -> Mapping[str, Any] | None:
        """``batchSession`` of ``GET /limits/context``."""
        body = (await self._api.request(operation("get_limits_context"))).json()
        batch = body.get("batchSession") if isinstance(body, dict) else None
        return batch if isinstance(batch, dict) else None

    async def open_batch(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """``POST /sessions/batch`` (not retried blindly: an unanswered open may have created a session)."""
        response = await self._api.request(
            operation("post_sessions_batch"), json_body=dict(body), headers=self._headers
        )
        result: Mapping[str, Any] = response.json()
        return result

    async def upload_part(
        self, method: str, url: str, headers: Mapping[str, str | None], body: BinaryIO, size: int
    ) -> None:
        """Upload one part through the storage transport."""
        await self._storage.upload(method, url, headers, body, size)

    async def close_batch(self, reference_number: str) -> None:
        """``POST /sessions/batch/{referenceNumber}/close``."""
        await self._api.request(
            operation("post_sessions_batch_close"),
            path_params={"referenceNumber": reference_number},
            reference_number=reference_number,
        )

    async def session_status(self, reference_number: str) -> Mapping[str, Any]:
        """``GET /sessions/{referenceNumber}``."""
        response = await self._api.request(
            operation("get_sessions_by_reference_number"),
            path_params={"referenceNumber": reference_number},
            reference_number=reference_number,
        )
        result: Mapping[str, Any] = response.json()
        return result

    async def session_invoices(
        self, reference_number: str, *, failed: bool = False
    ) -> AsyncIterator[Mapping[str, Any]]:
        """Follow ``continuationToken`` through every page and yield each invoice status."""
        op = operation("get_sessions_invoices_failed" if failed else "get_sessions_invoices")
        token: str | None = None
        while True:
            response = await self._api.request(
                op,
                path_params={"referenceNumber": reference_number},
                params={"pageSize": _PAGE_SIZE},
                headers={_CONTINUATION: token} if token else None,
                reference_number=reference_number,
            )
            body = response.json() or {}
            for item in body.get("invoices") or ():
                yield item
            token = body.get("continuationToken")
            if not token:
                return

    async def download(self, url: str) -> bytes:
        """GET a pre-signed URL (hash-checked)."""
        return await self._storage.download(url)

    async def session_upo(self, reference_number: str, upo_reference_number: str) -> bytes:
        """Download one session UPO page through the API (hash-checked)."""
        from ksef_async.transport import check_hash  # noqa: PLC0415

        response = await self._api.request(
            operation("get_sessions_upo_by_upo_reference_number"),
            path_params={"referenceNumber": reference_number, "upoReferenceNumber": upo_reference_number},
            headers={"Accept": "application/xml"},
            reference_number=reference_number,
        )
        check_hash(response.body, response.headers.get("x-ms-meta-hash"), f"UPO {upo_reference_number}")
        return response.body
