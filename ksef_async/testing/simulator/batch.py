"""Batch sessions: open with declared parts, close with the upload checks, and the processing after close.

Processing decrypts each part, joins them, checks the whole file, unpacks Zip/TarGz, and validates and numbers
each invoice.

Processing runs in a worker thread and streams: each part is decrypted chunk by chunk into one joined plaintext
spool file, archive members are read one at a time, so memory stays at a few chunk buffers whatever the batch
size. Results that touch shared state (deduplication, numbering) are applied on the event loop, one invoice at a
time.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from aiohttp import web

from ksef_async.core.batch_limits import MAX_ARCHIVE_SIZE, MAX_PART_SIZE, MAX_PARTS
from ksef_async.core.crypto import SessionKey, b64
from ksef_async.errors import CryptoError, InvoiceProblem
from ksef_async.testing.simulator.features import requested_features
from ksef_async.testing.simulator.problems import ApiFailure
from ksef_async.testing.simulator.request_fields import opt, req
from ksef_async.testing.simulator.runtime import Principal, Runtime
from ksef_async.testing.simulator.session_core import (
    decrypt_session_key,
    find_session,
    open_session,
    parse_form_code,
    register_invoice,
    session_status,
)
from ksef_async.testing.simulator.state import BatchPart, Session, SessionKind, iso
from ksef_async.xml.preflight import MAX_INVOICE_SIZE_WITH_ATTACHMENT
from ksef_async.xml.validation import ValidationResult, check_invoice

__all__ = ["MAX_FILE_SIZE", "MAX_PARTS", "MAX_PART_SIZE", "close_batch", "open_batch"]

_log = logging.getLogger("ksef_async.testing.simulator.batch")

MAX_FILE_SIZE = MAX_ARCHIVE_SIZE
_CHUNK = 1 << 20
_HASH_LENGTH = 44


def _bad(detail: str) -> ApiFailure:
    return ApiFailure(400, 21405, "Błąd walidacji danych wejściowych.", [detail])


async def open_batch(rt: Runtime, request: web.Request, principal: Principal | None, body: Any) -> web.Response:
    """``POST /sessions/batch``: 21161 for more than 50 parts, 21157 for a part above 100 MB, 21405 otherwise."""
    assert principal is not None
    form = parse_form_code(body, batch=True)
    batch_file = req(body, "batchFile", dict)
    file_size = req(batch_file, "fileSize", int)
    file_hash = req(batch_file, "fileHash", str)
    compression = opt(batch_file, "compressionType", str, default="Zip")
    parts = req(batch_file, "fileParts", list)
    if compression not in ("Zip", "TarGz"):
        raise _bad(f"compressionType {compression!r} is not Zip or TarGz")
    if not 0 < file_size <= MAX_FILE_SIZE:
        raise _bad(f"batchFile.fileSize must be 1..{MAX_FILE_SIZE}")
    if len(file_hash) != _HASH_LENGTH:
        raise _bad("batchFile.fileHash is not a Base64 SHA-256")
    if len(parts) > MAX_PARTS:
        raise ApiFailure(400, 21161, "Przekroczono dozwoloną liczbę części pliku.", [f"{len(parts)} > {MAX_PARTS}"])
    if not parts:
        raise _bad("batchFile.fileParts is empty")
    declared: dict[int, BatchPart] = {}
    for raw in parts:
        ordinal = req(raw, "ordinalNumber", int)
        size = req(raw, "fileSize", int)
        part_hash = req(raw, "fileHash", str)
        if size > MAX_PART_SIZE:
            raise ApiFailure(
                400, 21157, "Nieprawidłowy rozmiar części pakietu.", [f"part {ordinal}: {size} > {MAX_PART_SIZE}"]
            )
        if size < 1 or len(part_hash) != _HASH_LENGTH or ordinal in declared:
            raise _bad(f"part {ordinal}: bad size, hash or a repeated ordinalNumber")
        declared[ordinal] = BatchPart(ordinal, size, part_hash)
    if sorted(declared) != list(range(1, len(declared) + 1)):
        raise _bad("fileParts ordinalNumber values must be 1..n")
    session = open_session(
        rt,
        principal,
        SessionKind.BATCH,
        form_code=form,
        key=decrypt_session_key(rt, body),
        offline_mode=opt(body, "offlineMode", bool, default=False),
    )
    session.features = requested_features(request)
    session.batch_file = {"fileSize": file_size, "fileHash": file_hash, "compressionType": compression}
    session.parts = declared
    session.upload_deadline = session.created + len(declared) * rt.config.part_upload_window
    requests = [
        {
            "ordinalNumber": n,
            "method": "PUT",
            "url": rt.sign_url(f"/storage/batch-parts/{session.reference_number}/{n}", "w", session.upload_deadline),
            "headers": {"x-ms-blob-type": "BlockBlob"},
        }
        for n in sorted(declared)
    ]
    return web.json_response({"referenceNumber": session.reference_number, "partUploadRequests": requests}, status=201)


async def close_batch(rt: Runtime, request: web.Request, principal: Principal | None, _body: Any) -> web.Response:
    """``POST /sessions/batch/{referenceNumber}/close``, then processing starts in the background.

    Errors: 21208 after the upload window, 21205 for a missing part, 21157 for a stored part whose size differs
    from the declaration.
    """
    session = find_session(rt, principal, request.match_info["referenceNumber"], SessionKind.BATCH)
    code, _ = session_status(rt, session)
    if code != 100:  # noqa: PLR2004
        raise ApiFailure(400, 21180, "Status sesji nie pozwala na wykonanie operacji.", [f"session status {code}"])
    now = rt.state.clock.now()
    if now > session.upload_deadline:
        session.closed = session.processing_done = session.updated = now
        session.final_code, session.final_description = 440, "Sesja anulowana. Przekroczono czas wysyłki."
        raise ApiFailure(
            400,
            21208,
            "Czas oczekiwania na requesty upload lub finish został przekroczony.",
            ["Sesja anulowana, przekroczony czas wysyłki."],
        )
    missing = [n for n, part in sorted(session.parts.items()) if part.path is None]
    if missing:
        raise ApiFailure(
            400,
            21205,
            "Pakiet nie może być pusty.",
            [f"Nie przesłano zadeklarowanej '{n}' części pliku." for n in missing],
        )
    for n, part in sorted(session.parts.items()):
        assert part.path is not None
        actual = part.path.stat().st_size
        if actual != part.size:
            raise ApiFailure(
                400,
                21157,
                "Nieprawidłowy rozmiar części pakietu.",
                [f"Zadeklarowany rozmiar części '{n}' nie zgadza się z rzeczywistym."],
            )
    session.closed = session.updated = now
    task = asyncio.get_running_loop().create_task(_process(rt, session))
    rt.background.add(task)
    task.add_done_callback(rt.background.discard)
    return web.Response(status=204)


# -- processing ----------------------------------------------------------------------------------------------------


class _Fail(Exception):  # noqa: N818 - a control-flow signal carrying a session status
    def __init__(self, code: int, description: str, details: list[str] | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.details = details


def _join(session: Session, key: SessionKey, joined: Path) -> None:
    """Decrypt each part in order into ``joined``; check the whole plaintext's size and hash (405)."""
    digest = hashlib.sha256()
    total = 0
    with joined.open("wb") as out:
        for n in sorted(session.parts):
            part = session.parts[n]
            assert part.path is not None
            decryptor = key.decryptor()
            try:
                with part.path.open("rb") as src:
                    while chunk := src.read(_CHUNK):
                        plain = decryptor.update(chunk)
                        digest.update(plain)
                        out.write(plain)
                        total += len(plain)
                    plain = decryptor.finalize()
            except CryptoError as exc:
                raise _Fail(435, "Błąd odszyfrowania pliku.", [f"part {n}: {exc}"]) from None
            digest.update(plain)
            out.write(plain)
            total += len(plain)
    batch_file = session.batch_file or {}
    if total != batch_file.get("fileSize") or b64(digest.digest()) != batch_file.get("fileHash"):
        raise _Fail(
            405,
            "Błąd weryfikacji poprawności dostarczonego pakietu.",
            ["batchFile.fileSize or fileHash differs from the decrypted, joined parts"],
        )


def _members(path: Path, compression: str) -> Iterator[tuple[str, int, IO[bytes] | None]]:
    """Yield ``("", count, None)`` first, then ``(name, size, stream)`` for each regular file of the archive.

    Raises:
        _Fail: 430 when the archive cannot be read.
    """
    try:
        if compression == "TarGz":
            with tarfile.open(path, "r:gz") as tar:
                members = [m for m in tar.getmembers() if m.isfile()]
                yield "", len(members), None
                for member in members:
                    stream = tar.extractfile(member)
                    if stream is not None:
                        yield member.name, member.size, stream
        else:
            with zipfile.ZipFile(path) as archive:
                infos = [i for i in archive.infolist() if not i.is_dir()]
                yield "", len(infos), None
                for info in infos:
                    with archive.open(info) as stream:
                        yield info.filename, info.file_size, stream
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise _Fail(430, "Błąd dekompresji pierwotnego archiwum.", [str(exc)]) from None


def _read_member(stream: IO[bytes]) -> tuple[bytes | None, str, int]:
    """Read a member up to the largest allowed invoice; return ``(data or None, hash, size)`` streaming the rest."""
    digest = hashlib.sha256()
    kept = bytearray()
    total = 0
    while chunk := stream.read(_CHUNK):
        digest.update(chunk)
        total += len(chunk)
        if total <= MAX_INVOICE_SIZE_WITH_ATTACHMENT:
            kept += chunk
        else:
            kept.clear()
    data = bytes(kept) if total <= MAX_INVOICE_SIZE_WITH_ATTACHMENT else None
    return data, b64(digest.digest()), total


def _process_sync(rt: Runtime, session: Session, loop: asyncio.AbstractEventLoop) -> tuple[int, str, list[str] | None]:
    """The worker-thread part of processing; returns the session's final status."""
    key = session.key
    assert key is not None
    joined = rt.spool_dir / f"{session.reference_number}.joined"
    try:
        _join(session, key, joined)
        for path in (p.path for p in session.parts.values()):
            if path is not None:
                path.unlink(missing_ok=True)
        compression = (session.batch_file or {}).get("compressionType", "Zip")
        members = _members(joined, compression)
        count = next(members)[1]
        if count == 0:
            return 440, "Sesja anulowana. Nie przesłano faktur.", ["the archive holds no files"]
        limit = rt.max_invoices(session.context, "batchSession")
        if count > limit:
            return 420, "Przekroczony limit faktur w sesji.", [f"{count} > {limit}"]
        ok = 0
        for name, _size, stream in members:
            assert stream is not None
            try:
                data, invoice_hash, total = _read_member(stream)
            except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error) as exc:
                raise _Fail(430, "Błąd dekompresji pierwotnego archiwum.", [f"{name}: {exc}"]) from None
            if data is None:
                problem = InvoiceProblem(
                    name, f"invoice is {total:,} bytes; the limit is {MAX_INVOICE_SIZE_WITH_ATTACHMENT:,}", None, "size"
                )
                result = ValidationResult(name, (problem,), None, None)
            else:
                result = check_invoice(data, name)
            future = asyncio.run_coroutine_threadsafe(
                _register(rt, session, result, data=data or b"", invoice_hash=invoice_hash, name=name), loop
            )
            ok += future.result() == 200  # noqa: PLR2004
    except _Fail as fail:
        return fail.code, fail.description, fail.details
    finally:
        joined.unlink(missing_ok=True)
    if ok:
        return 200, "Sesja wsadowa przetworzona pomyślnie", None
    return 445, "Błąd weryfikacji, brak poprawnych faktur", None


async def _register(
    rt: Runtime, session: Session, result: ValidationResult, *, data: bytes, invoice_hash: str, name: str
) -> int:
    now = rt.state.clock.now()
    entry = register_invoice(
        rt,
        session,
        result,
        data,
        received=now,
        reference=rt.reference("EE"),
        file_name=name[:128],
        offline=session.offline_mode,
        invoicing_time=session.created,
    )
    entry.invoice_hash = invoice_hash
    return entry.final_code


async def _process(rt: Runtime, session: Session) -> None:
    loop = asyncio.get_running_loop()
    try:
        code, description, details = await loop.run_in_executor(None, _process_sync, rt, session, loop)
    except Exception:  # noqa: BLE001 - any bug must still end the session, as KSeF's 500 "unknown error" does
        _log.exception("batch session %s: processing failed", session.reference_number)
        rt.internal_errors.append(f"batch processing of {session.reference_number} failed")
        code, description, details = 500, "Nieznany błąd.", None
    session.final_code, session.final_description, session.final_details = code, description, details
    session.processing_done = session.updated = rt.state.clock.now()
    _log.info("batch session %s processed: %s (%s)", session.reference_number, code, iso(rt.state.clock.now_dt()))
