"""The simulator's blob storage: pre-signed part uploads (``PUT /storage/batch-parts/{session}/{n}``), Azure-like.

Rules, in the order they are checked:

* the signature (``sig`` over path, ``se`` and ``sp=w``) and expiry ``se``: 403 ``AuthenticationFailed``; the
  expiry is checked when the request starts, so an upload that began in time finishes (docs ``sesja-wsadowa.md``);
* an ``Authorization`` header: 400 ``InvalidAuthenticationInfo``. Azure answers 400 when a SAS request also carries
  an ``Authorization`` header it cannot parse (a bearer token is such a header), so we do too;
* ``x-ms-blob-type: BlockBlob`` is required: 400 ``MissingRequiredHeader`` / ``InvalidHeaderValue``;
* a ``Content-Length`` is required and chunked transfer encoding refused: 411 ``MissingContentLengthHeader``
  (Azure's Put Blob answers 411 Length Required);
* the declared part must exist and the session still be in its upload phase: 404 ``BlobNotFound`` / 409;
* the body is streamed to a spool file in 1 MiB chunks, hashed on the way (never held in memory); a size or
  SHA-256 different from the declaration answers 400 ``InvalidBlobContent`` and stores nothing.

Success is 201 Created. Faults (``upload-error``, ``upload-reset``, ``upload-delay``) apply here.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from pathlib import Path

from aiohttp import web

from ksef_async.core.crypto import b64
from ksef_async.testing.simulator.runtime import Runtime
from ksef_async.testing.simulator.session_core import session_status
from ksef_async.testing.simulator.state import BatchPart, Session, SessionKind
from ksef_async.testing.simulator.upo_documents import storage_error

__all__ = ["upload_part"]

_log = logging.getLogger("ksef_async.testing.simulator.storage")
_CHUNK = 1 << 20
_SERVER_ERROR = 500
_SERVER_BUSY = 503


def _request_refusal(rt: Runtime, request: web.Request) -> web.Response | None:
    """The Azure-like answer to a malformed upload request (signature, headers, length), or ``None``."""
    refusal = rt.check_url(request.path, request.query, "w")
    if refusal is not None:
        return storage_error(403, refusal)
    if "Authorization" in request.headers:
        return storage_error(
            400, "InvalidAuthenticationInfo: Authentication information is not given in the correct format."
        )
    blob_type = request.headers.get("x-ms-blob-type")
    if blob_type is None:
        return storage_error(
            400, "MissingRequiredHeader: An HTTP header that's mandatory for this request is not specified."
        )
    if blob_type != "BlockBlob":
        return storage_error(400, "InvalidHeaderValue: The value for x-ms-blob-type is not BlockBlob.")
    if "chunked" in request.headers.get("Transfer-Encoding", "").lower() or request.content_length is None:
        return storage_error(411, "MissingContentLengthHeader: Content-Length header is required.")
    return None


def _target(rt: Runtime, request: web.Request) -> tuple[Session, BatchPart] | web.Response:
    """The session and declared part the URL names, or the answer when there is none or uploads are over."""
    session = rt.state.sessions.get(request.match_info["session"])
    try:
        ordinal = int(request.match_info["part"])
    except ValueError:
        ordinal = -1
    part = session.parts.get(ordinal) if session is not None and session.kind is SessionKind.BATCH else None
    if session is None or part is None:
        return storage_error(404, "BlobNotFound: The specified blob does not exist.")
    if session_status(rt, session)[0] != 100:  # noqa: PLR2004
        return storage_error(409, "OperationNotAllowedInCurrentState: The session is no longer accepting parts.")
    return session, part


async def _spool(rt: Runtime, request: web.Request, spool: Path, reset_at: int | None) -> str | None:
    """Stream the body into ``spool`` in 1 MiB writes; return its Base64 SHA-256, or ``None`` after a reset."""
    loop = asyncio.get_running_loop()
    digest = hashlib.sha256()
    received = 0
    pending = bytearray()
    fh = await loop.run_in_executor(None, spool.open, "wb")
    try:
        async for chunk in request.content.iter_chunked(_CHUNK):
            received += len(chunk)
            rt.counters.bytes_received += len(chunk)
            digest.update(chunk)
            pending += chunk
            if reset_at is not None and received >= reset_at:
                # Drop the connection mid-body, as a network reset would: the client gets no response at all.
                _log.info("fault upload-reset: dropping an upload after %d bytes", received)
                if request.transport is not None:
                    request.transport.abort()
                return None
            if len(pending) >= _CHUNK:
                await loop.run_in_executor(None, fh.write, bytes(pending))
                pending.clear()
        if pending:
            await loop.run_in_executor(None, fh.write, bytes(pending))
    finally:
        fh.close()
    return b64(digest.digest()) if received == request.content_length else ""


async def upload_part(rt: Runtime, request: web.Request) -> web.StreamResponse:
    """``PUT`` one encrypted batch part to its pre-signed URL."""
    rt.counters.requests["storage"] += 1
    refusal = _request_refusal(rt, request)
    if refusal is not None:
        return refusal
    target = _target(rt, request)
    if isinstance(target, web.Response):
        return target
    session, part = target
    if rt.faults.fires("upload-error"):
        status = rt.faults.choice("upload-error", (_SERVER_ERROR, _SERVER_BUSY))
        code = "ServerBusy" if status == _SERVER_BUSY else "InternalError"
        return storage_error(status, f"{code}: Injected upload failure.")
    length = request.content_length or 0
    reset_at = length // 2 if rt.faults.fires("upload-reset") else None
    spool = rt.spool_dir / f"{session.reference_number}.part{part.ordinal_number}.{uuid.uuid4().hex}.tmp"
    try:
        file_hash = await _spool(rt, request, spool, reset_at)
    except BaseException:
        spool.unlink(missing_ok=True)
        raise
    if file_hash is None:
        spool.unlink(missing_ok=True)
        return web.Response(status=500)  # never reaches the client: the connection is gone
    if length != part.size or file_hash != part.file_hash:
        spool.unlink(missing_ok=True)
        what = "size" if length != part.size else "SHA-256"
        return storage_error(400, f"InvalidBlobContent: The part's {what} does not match the session declaration.")
    final = rt.spool_dir / f"{session.reference_number}.part{part.ordinal_number}"
    spool.replace(final)
    part.path = final
    delay = rt.faults.upload_delay()
    if delay > 0:
        await asyncio.sleep(delay)
    return web.Response(status=201, headers={"ETag": f'"0x{file_hash.encode().hex()[:16].upper()}"'})
