"""Invoice exports: ``POST /invoices/exports``, its status, the encrypted package built in a thread, part downloads."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path
from typing import Any

from aiohttp import web

from ksef_async.core.crypto import SessionKey, b64
from ksef_async.testing.simulator.problems import ApiFailure
from ksef_async.testing.simulator.request_fields import opt, req
from ksef_async.testing.simulator.retrieval_query import (
    _context,
    _parse_filters,
    _select,
    invoice_metadata,
)
from ksef_async.testing.simulator.retrieval_store import (
    _BAD,
    _CHUNK,
    ExportJob,
    RetrievalSettings,
    _store,
)
from ksef_async.testing.simulator.runtime import Principal, Runtime
from ksef_async.testing.simulator.session_core import decrypt_session_key
from ksef_async.testing.simulator.state import ContextKey, StoredInvoice, iso
from ksef_async.testing.simulator.upo_documents import storage_error

__all__ = ["add_storage_routes", "download_part", "export_status", "start_export"]


def _in_progress(rt: Runtime, context: ContextKey) -> int:
    now = rt.state.clock.now()
    return sum(
        1
        for job in _store(rt).exports.values()
        if job.context == context and ((job.package is None and job.failure is None) or now < job.ready_at)
    )


async def start_export(rt: Runtime, request: web.Request, principal: Principal | None, body: Any) -> web.Response:  # noqa: ARG001
    """``POST /invoices/exports``: 201 ``{referenceNumber}``; the package is built in the background."""
    context = _context(principal)
    store = _store(rt)
    filters = req(body, "filters", dict)
    compression = opt(body, "compressionType", str, default="Zip")
    if compression not in ("Zip", "TarGz"):
        raise ApiFailure(400, 21405, _BAD, ["compressionType must be Zip or TarGz"])
    only_metadata = opt(body, "onlyMetadata", bool, default=False)
    f = _parse_filters(rt, filters, export=True)
    key = decrypt_session_key(rt, body)
    if _in_progress(rt, context) >= store.settings.max_concurrent_exports:
        limit = store.settings.max_concurrent_exports
        raise ApiFailure(
            400,
            21182,
            "Osiągnięto limit trwających eksportów.",
            [
                (
                    f"Dla uwierzytelnionego podmiotu w bieżącym kontekście osiągnięto maksymalny limit {limit} "
                    "równoczesnych eksportów faktur. Spróbuj ponownie później."
                )
            ],
        )
    now = rt.state.clock.now()
    job = ExportJob(
        reference_number=rt.reference("EH"),
        context=context,
        created=now,
        ready_at=now + store.settings.export_delay,
        key=key,
        compression=compression,
        only_metadata=only_metadata,
        date_type=f.date_type,
        hwm=f.hwm,
    )
    restrict = bool((filters.get("dateRange") or {}).get("restrictToPermanentStorageHwmDate"))
    if key is None:
        job.failure = (415, "Błąd odszyfrowania dostarczonego klucza", None)
    elif restrict and f.global_hwm is not None and f.start > f.global_hwm:
        job.failure = (
            420,
            "Zakres filtrowania wykracza poza dostępny zakres danych",
            [
                (
                    "Parametr dateRange.from jest późniejszy niż PermanentStorageHwmDate przy włączonym "
                    "restrictToPermanentStorageHwmDate."
                )
            ],
        )
    else:
        # The selection is fixed now (as KSeF snapshots the query); the package is cut by the limits when built.
        job.selection = _select(rt, context, f)
    store.exports[job.reference_number] = job
    if job.failure is None:
        task = asyncio.get_running_loop().create_task(_build(rt, job))
        job.task = task
        rt.background.add(task)
        task.add_done_callback(rt.background.discard)
    return web.json_response({"referenceNumber": job.reference_number}, status=201)


def _export_json(rt: Runtime, job: ExportJob) -> dict[str, Any]:
    now = rt.state.clock.now()
    if now < job.ready_at or (job.failure is None and job.package is None):
        return {"status": {"code": 100, "description": "Eksport faktur w toku"}}
    completed = iso(dt.datetime.fromtimestamp(job.ready_at, dt.UTC))
    if job.failure is not None:
        code, description, details = job.failure
        status: dict[str, Any] = {"code": code, "description": description}
        if details:
            status["details"] = details
        return {"status": status, "completedDate": completed}
    expires = job.ready_at + _store(rt).settings.package_lifetime
    if now >= expires:
        return {
            "status": {"code": 210, "description": "Eksport faktur wygasł i nie jest już dostępny do pobrania"},
            "completedDate": completed,
        }
    assert job.package is not None
    package = dict(job.package)
    url_expiry = min(expires, now + rt.config.download_url_lifetime)
    expiry_text = iso(dt.datetime.fromtimestamp(int(url_expiry), dt.UTC))
    package["parts"] = [
        part
        | {
            "url": rt.sign_url(f"/storage/exports/{job.reference_number}/{part['ordinalNumber']}", "r", url_expiry),
            "expirationDate": expiry_text,
        }
        for part in package["parts"]
    ]
    return {
        "status": {"code": 200, "description": "Eksport faktur zakończony sukcesem"},
        "completedDate": completed,
        "packageExpirationDate": iso(dt.datetime.fromtimestamp(expires, dt.UTC)),
        "package": package,
    }


async def export_status(rt: Runtime, request: web.Request, principal: Principal | None, body: Any) -> web.Response:  # noqa: ARG001
    """``GET /invoices/exports/{referenceNumber}``."""
    context = _context(principal)
    ref = request.match_info["referenceNumber"]
    job = _store(rt).exports.get(ref)
    if job is None or job.context != context:
        raise ApiFailure(400, 21175, "Wynik zapytania o podanym identyfikatorze nie istnieje.")
    return web.json_response(_export_json(rt, job))


# -- package building (worker thread) --------------------------------------------------------------------------------


class _PartWriter(io.RawIOBase):
    """A write-only stream that cuts what it receives into parts of ``limit`` bytes, each encrypted separately."""

    def __init__(self, key: SessionKey, directory: Path, stem: str, *, limit: int, name: str, suffix: str) -> None:
        super().__init__()
        self.export_name = name
        self._suffix = suffix
        self._key = key
        self._dir = directory
        self._stem = stem
        self._limit = limit
        self.parts: list[dict[str, Any]] = []
        self.paths: dict[int, tuple[Path, str]] = {}
        self.total = 0
        self._fh: Any = None
        self._open_part()

    def _open_part(self) -> None:
        ordinal = len(self.parts) + 1
        self._ordinal = ordinal
        self._path = self._dir / f"{self._stem}.{ordinal:03d}.aes"
        self._fh = self._path.open("wb")
        self._enc = self._key.encryptor()
        self._plain_hash = hashlib.sha256()
        self._cipher_hash = hashlib.sha256()
        self._plain_size = 0
        self._cipher_size = 0

    def _emit(self, data: bytes) -> None:
        if data:
            self._fh.write(data)
            self._cipher_hash.update(data)
            self._cipher_size += len(data)

    def _close_part(self) -> None:
        self._emit(self._enc.finalize())
        self._fh.close()
        encrypted_hash = b64(self._cipher_hash.digest())
        self.paths[self._ordinal] = (self._path, encrypted_hash)
        self.parts.append(
            {
                "ordinalNumber": self._ordinal,
                "partName": f"{self.export_name}-{self._ordinal:03d}.{self._suffix}.aes",
                "method": "GET",
                "partSize": self._plain_size,
                "partHash": b64(self._plain_hash.digest()),
                "encryptedPartSize": self._cipher_size,
                "encryptedPartHash": encrypted_hash,
            }
        )

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        written = len(view)
        while len(view):
            if self._plain_size >= self._limit:
                self._close_part()
                self._open_part()
            take = view[: self._limit - self._plain_size]
            self._plain_hash.update(take)
            self._plain_size += len(take)
            self.total += len(take)
            self._emit(self._enc.update(take))
            view = view[len(take) :]
        return written

    def finish(self) -> None:
        self._close_part()


def _write_package(rt: Runtime, job: ExportJob, cfg: RetrievalSettings) -> None:  # noqa: C901, PLR0912
    assert job.key is not None
    writer = _PartWriter(
        job.key,
        rt.spool_dir,
        f"export-{job.reference_number}",
        limit=cfg.max_part_size,
        name=job.reference_number,
        suffix="zip" if job.compression == "Zip" else "tar.gz",
    )
    chosen: list[StoredInvoice] = []
    selection = job.selection
    if job.only_metadata:
        chosen = selection[: cfg.max_package_invoices]
    else:
        # Pre-compute which invoices fit so _metadata.json (the first member) lists exactly the package's invoices.
        # The compressed size is estimated by compressing each invoice alone at the same level (zlib streams per
        # member, as Zip does); TarGz compresses across members, so the estimate is an upper bound there.
        import zlib  # noqa: PLC0415

        head = selection[: cfg.max_package_invoices]
        # Compression never makes a member much larger than its plaintext, so when the plaintext fits, all of it does.
        generous = sum(inv.size + 200 for inv in head) <= cfg.max_package_bytes
        used = 0
        for inv in selection:
            if len(chosen) >= cfg.max_package_invoices:
                break
            if generous:
                chosen.append(inv)
                continue
            cost = len(zlib.compress(inv.content, cfg.zip_level)) + 100 + len(inv.ksef_number) * 2
            if chosen and used + cost > cfg.max_package_bytes:
                break
            used += cost
            chosen.append(inv)
    metadata = json.dumps(
        {"invoices": [invoice_metadata(rt, inv) for inv in chosen]}, ensure_ascii=False, separators=(",", ":")
    ).encode()
    if job.compression == "Zip":
        with zipfile.ZipFile(writer, "w", zipfile.ZIP_DEFLATED, compresslevel=cfg.zip_level) as archive:
            archive.writestr("_metadata.json", metadata)
            if not job.only_metadata:
                for inv in chosen:
                    archive.writestr(f"{inv.ksef_number}.xml", inv.content)
    else:
        with tarfile.open(fileobj=writer, mode="w|gz") as archive:
            _tar_add(archive, "_metadata.json", metadata, job.created)
            if not job.only_metadata:
                for inv in chosen:
                    _tar_add(archive, f"{inv.ksef_number}.xml", inv.content, job.created)
    writer.finish()
    truncated = len(chosen) < len(selection)
    package: dict[str, Any] = {
        "compressionType": job.compression,
        "invoiceCount": len(chosen),
        "size": writer.total,
        "parts": writer.parts,
        "isTruncated": truncated,
        "lastIssueDate": None,
        "lastInvoicingDate": None,
        "lastPermanentStorageDate": None,
        "permanentStorageHwmDate": iso(job.hwm) if job.hwm is not None else None,
    }
    if truncated and chosen:
        last = chosen[-1]
        if job.date_type == "PermanentStorage":
            package["lastPermanentStorageDate"] = iso(last.permanent_storage_date)
        elif job.date_type == "Invoicing":
            package["lastInvoicingDate"] = iso(last.invoicing_date)
        else:
            package["lastIssueDate"] = (last.issue_date or last.invoicing_date.date()).isoformat()
    job.part_paths = writer.paths
    job.package = package


def _tar_add(archive: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(mtime)
    info.mode = 0o644
    archive.addfile(info, io.BytesIO(data))


async def _build(rt: Runtime, job: ExportJob) -> None:
    cfg = _store(rt).settings
    try:
        await asyncio.get_running_loop().run_in_executor(None, _write_package, rt, job, cfg)
    except Exception as exc:  # noqa: BLE001 - any failure is the export's status 500, as on KSeF
        job.failure = (500, f"Nieznany błąd ({type(exc).__name__})", None)
    job.selection = []


async def download_part(rt: Runtime, request: web.Request) -> web.StreamResponse:
    """Pre-signed ``GET /storage/exports/{ref}/{n}``: no token, not rate-limited, ``x-ms-meta-hash``."""
    rt.counters.requests["storage"] += 1
    refusal = rt.check_url(request.path, request.query, "r")
    if refusal is not None:
        return storage_error(403, refusal)
    if "Authorization" in request.headers:
        return storage_error(
            400, "InvalidAuthenticationInfo: Authentication information is not given in the correct format."
        )
    job = _store(rt).exports.get(request.match_info["ref"])
    try:
        ordinal = int(request.match_info["part"])
    except ValueError:
        ordinal = -1
    if job is None or job.package is None or ordinal not in job.part_paths:
        return storage_error(404, "BlobNotFound: The specified blob does not exist.")
    path, digest = job.part_paths[ordinal]
    return web.FileResponse(
        path, chunk_size=_CHUNK, headers={"x-ms-meta-hash": digest, "Content-Type": "application/octet-stream"}
    )


def add_storage_routes(app: web.Application, rt: Runtime) -> None:
    """Register the export part download route on ``app``."""

    async def download(request: web.Request) -> web.StreamResponse:
        return await download_part(rt, request)

    app.router.add_get("/storage/exports/{ref}/{part}", download)
