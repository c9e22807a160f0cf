"""``client.batch``: open and close a batch session, and the part-upload primitive the batch engine drives."""

from __future__ import annotations

from collections.abc import Iterable
from typing import BinaryIO

from ksef_async.core.crypto import KEY_USAGE_SYMMETRIC, MfPublicKey, SessionKey
from ksef_async.models import (
    BatchFileInfo,
    FormCode,
    OpenBatchSessionRequest,
    OpenBatchSessionResponse,
    PartUploadRequest,
)
from ksef_async.models.converter import unstructure
from ksef_async.resources._base import Resource
from ksef_async.resources._features import check_features, feature_headers
from ksef_async.resources._keys import encryption_info, with_key_rotation
from ksef_async.resources.security import SecurityResource
from ksef_async.transport import ApiTransport, StorageTransport

__all__ = ["BatchResource"]


class BatchResource(Resource):
    """``POST /sessions/batch``, ``.../close`` and the pre-signed part uploads."""

    def __init__(
        self,
        api: ApiTransport,
        storage: StorageTransport,
        security: SecurityResource,
        *,
        features: Iterable[str] = (),
    ) -> None:
        super().__init__(api, storage)
        self._security = security
        self._features = check_features(features)

    @property
    def features(self) -> tuple[str, ...]:
        """The client's ``X-KSeF-Feature`` values (``ClientConfig.features``), sent on every session open."""
        return self._features

    async def open(
        self,
        form_code: FormCode,
        batch_file: BatchFileInfo,
        key: SessionKey,
        *,
        offline_mode: bool = False,
        features: Iterable[str] | None = None,
    ) -> OpenBatchSessionResponse:
        """Open a batch session declaring ``batch_file`` (sizes and hashes of every encrypted part).

        ``key`` is the AES key the parts were encrypted with; it is wrapped under the MF key here, and on 21470
        wrapped again under the re-fetched key and the open retried once. ``features`` are sent as
        ``X-KSeF-Feature`` together with the client's ``ClientConfig.features``.
        """
        headers = feature_headers(self._features, features)

        async def attempt(public_key: MfPublicKey) -> OpenBatchSessionResponse:
            request = OpenBatchSessionRequest(
                form_code=form_code,
                batch_file=batch_file,
                encryption=encryption_info(key, public_key),
                offline_mode=offline_mode or None,
            )
            response = await self._send("post_sessions_batch", json_body=unstructure(request), headers=headers)
            return self._structure("post_sessions_batch", response, OpenBatchSessionResponse)

        return await with_key_rotation(self._security, KEY_USAGE_SYMMETRIC, attempt, what="post_sessions_batch")

    async def open_prepared(
        self, request: OpenBatchSessionRequest, *, features: Iterable[str] | None = None
    ) -> OpenBatchSessionResponse:
        """``POST /sessions/batch`` with an ``encryption`` built when the parts were encrypted (the batch engine).

        The parts are already encrypted under the key that ``request.encryption`` wraps, so it is sent as it is
        (no re-wrapping, hence no 21470 retry here). ``features`` are sent as ``X-KSeF-Feature`` together with the
        client's ``ClientConfig.features``. Not retried blindly: an unanswered open may have created a session.
        """
        return await self._get_model(
            "post_sessions_batch",
            OpenBatchSessionResponse,
            json_body=unstructure(request),
            headers=feature_headers(self._features, features),
        )

    async def close(self, reference_number: str) -> None:
        """``POST /sessions/batch/{referenceNumber}/close``: every part is uploaded; KSeF starts processing."""
        await self._send(
            "post_sessions_batch_close",
            path_params={"referenceNumber": reference_number},
            reference_number=reference_number,
        )

    async def upload_part(self, request: PartUploadRequest, body: bytes | BinaryIO, size: int) -> int:
        """Upload one encrypted part exactly as ``request`` says (method, URL, headers), with Content-Length.

        Not rate-limited and never with ``Authorization``. A file object is read from its current position.

        Returns:
            The storage's 2xx status.

        Raises:
            ApiError: The storage refused the part (e.g. 403 when the upload window closed).
            TransportError: The connection failed or timed out; rewind the body before retrying.
        """
        return await self._storage.upload(request.method, request.url, request.headers, body, size)
