"""Invoice export: start with an own AES key, poll, download parts concurrently, check, decrypt, unpack.

Memory stays bounded whatever the package size:

* each part is streamed from its pre-signed URL in 1 MiB chunks; every chunk is hashed (``encryptedPartHash``),
  decrypted, hashed again (``partHash``) and appended to that part's plaintext spool file, so neither a part nor
  the package is ever held in memory;
* the plaintext parts are not copied into one file: a seekable reader presents them as one archive (the parts are
  binary cuts of it: ``InvoiceExportStatusResponse.package.parts``, docs ``pobieranie-faktur/*.md``);
* a Zip archive needs random access (its central directory is at the end and members may carry data
  descriptors), so it cannot be unpacked from the network stream: that is why the plaintext is spooled to disk;
  TarGz is read as a stream. One member (at most one invoice, < 1 MB) is in memory at a time, plus the metadata of
  the package (``_metadata.json``, about 1 kB per invoice).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import re
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from ksef_async._aio import task_group
from ksef_async._logging import extras, get_logger
from ksef_async._private_files import private_dir, write_private_in
from ksef_async.core.crypto import AesCbcDecryptor, SessionKey, b64, b64decode
from ksef_async.core.polling import Backoff
from ksef_async.core.safepath import checked_ksef_number, shown
from ksef_async.core.windows import check_window
from ksef_async.errors import (
    CryptoError,
    IntegrityError,
    KsefError,
    ProtocolError,
    ResponseFormatError,
    TransportError,
)
from ksef_async.models import (
    CompressionType,
    InvoiceExportStatusResponse,
    InvoiceMetadata,
    InvoicePackage,
    InvoicePackagePart,
    InvoiceQueryFilters,
)
from ksef_async.models.converter import structure
from ksef_async.resources.retrieval import RetrievalResource

__all__ = [
    "METADATA_FILE",
    "ExportPackage",
    "ExportedInvoice",
    "download_package",
    "export_invoices",
    "package_compression",
]

logger = get_logger("retrieval")

METADATA_FILE = "_metadata.json"
"""The package member listing every invoice's `InvoiceMetadata` (``{"invoices": [...]}``)."""
_READ_BATCH = 64
_METADATA_OPENING = re.compile(r'\s*\{\s*"invoices"\s*:\s*\[')
_FEED = 1 << 20
MAX_INVOICE_BYTES = 10_000_000
"""Largest invoice member read: 10 MB, the highest ``maxInvoiceWithAttachmentSizeInMB`` a context may have."""
METADATA_BYTES_PER_INVOICE = 16_384
"""``_metadata.json`` may hold this much per invoice of the package (KSeF's entries are about 1 kB)."""
MAX_PACKAGE_INVOICES = 10_000
"""A package holds at most 10,000 invoices (``InvoicePackage.invoiceCount``)."""
MAX_PART_BYTES = 1_073_741_824
"""Largest encrypted part accepted (the whole package's limit, 1 GiB); a part is never read past its declaration."""


def _read_bounded(fh: Any, limit: int, what: str) -> bytes:
    """Read ``fh`` to its end, but never more than ``limit`` bytes: past that it is an archive bomb."""
    data = bytearray()
    while chunk := fh.read(min(_FEED, limit + 1 - len(data))):
        data += chunk
        if len(data) > limit:
            raise ProtocolError(f"{what} is larger than {limit} bytes: refusing to read it (archive bomb?)")
    return bytes(data)


def package_compression(package: InvoicePackage) -> CompressionType:
    """The format the package's parts are in: the status's ``package.compressionType`` (never guessed).

    Raises:
        ResponseFormatError: ``compressionType`` is neither ``Zip`` nor ``TarGz`` (the value is named, cut short).
    """
    value = str(package.compression_type)
    try:
        return CompressionType(value)
    except ValueError:
        raise ResponseFormatError(
            "get_invoices_exports_by_reference_number",
            [f"$.package.compressionType: unknown value {value[:32]!r} (expected 'Zip' or 'TarGz')"],
        ) from None


@attrs.frozen
class ExportedInvoice:
    """One invoice of a package.

    Attributes:
        ksef_number: Its KSeF number (from ``_metadata.json``).
        xml: The invoice XML, checked against the metadata's ``invoiceHash``; ``None`` for ``onlyMetadata``.
        metadata: Its `InvoiceMetadata`.
        raw_metadata: The same metadata as KSeF sent it (JSON object), e.g. for an index file.
    """

    ksef_number: str
    xml: bytes | None = attrs.field(repr=False)
    metadata: InvoiceMetadata = attrs.field(repr=False)
    raw_metadata: Mapping[str, Any] = attrs.field(repr=False)


def _digest(value: bytes | str) -> bytes:
    # The models decode Sha256HashBase64 (format: byte) to the raw 32 bytes; accept Base64 text as well.
    return value if isinstance(value, bytes) else b64decode(value, field="hash")


def _text(value: bytes | str) -> str:
    return b64(value) if isinstance(value, bytes) else value


class _Concatenation(io.RawIOBase):
    """A read-only, seekable view of several files as one (the decrypted parts as the whole archive)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        super().__init__()
        self._files: list[Any] = [p.open("rb") for p in paths]
        self._starts: list[int] = []
        total = 0
        for path in paths:
            self._starts.append(total)
            total += path.stat().st_size
        self._size = total
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self._size:
            index = max(i for i, start in enumerate(self._starts) if start <= self._pos)
            fh = self._files[index]
            fh.seek(self._pos - self._starts[index])
            got = fh.readinto(view[done:])
            if not got:
                # Zero-length part file (or the end of one): move to the next.
                end = self._starts[index + 1] if index + 1 < len(self._starts) else self._size
                if self._pos >= end:
                    break
                continue
            done += got
            self._pos += got
        return done

    def close(self) -> None:
        for fh in self._files:
            fh.close()
        super().close()


class _MetadataIndex:
    """``_metadata.json`` kept as text and decoded one entry at a time.

    Decoded whole, 10,000 entries take tens of MB of dicts; as text they take about 12 MB, and only the entry being
    yielded is a dict. Entries are located once (offsets by KSeF number) for archives whose members come in
    another order (TarGz).
    """

    def __init__(self, text: str) -> None:
        self._text = text
        self._fallback = []
        self._decoder = json.JSONDecoder()
        self._offsets: dict[str, int] = {}
        for start, entry in self._scan():
            self._offsets[str(entry.get("ksefNumber"))] = start

    def _scan(self) -> Iterator[tuple[int, dict[str, Any]]]:
        text = self._text
        opening = _METADATA_OPENING.match(text)
        if opening is None:  # another layout: decode it whole
            entries = json.loads(text)["invoices"]
            if not isinstance(entries, list):
                raise TypeError("'invoices' is not a list")
            for entry in entries:
                offset = len(self._fallback)
                self._fallback.append(entry)
                yield -1 - offset, entry
            return
        pos = opening.end()
        while True:
            pos = _skip_space(text, pos)
            if text.startswith("]", pos):
                return
            entry, end = self._decoder.raw_decode(text, pos)
            if not isinstance(entry, dict):
                raise TypeError("an 'invoices' item is not an object")
            yield pos, entry
            pos = _skip_space(text, end)
            if text.startswith(",", pos):
                pos += 1

    _fallback: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self._offsets)

    def _at(self, offset: int) -> dict[str, Any]:
        if offset < 0:
            return self._fallback[-1 - offset]
        entry, _ = self._decoder.raw_decode(self._text, offset)
        return dict(entry)

    def get(self, number: str) -> dict[str, Any] | None:
        """The entry of ``number``, or None."""
        offset = self._offsets.get(number)
        return None if offset is None else self._at(offset)

    def iter(self) -> Iterator[dict[str, Any]]:
        """The entries in file order, decoded one at a time."""
        for offset in self._offsets.values():
            yield self._at(offset)


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


class ExportPackage:
    """A finished, downloaded and verified export package, spooled (decrypted) in a temporary directory.

    Iterate it with `invoices` or write it out with `write_to`; `close` (or leaving ``export_invoices``) removes
    the spool.

    Attributes:
        reference_number: The export's reference number.
        status: The final ``GET /invoices/exports/{ref}`` answer.
        package: Its `InvoicePackage` (counts, ``isTruncated``, ``lastPermanentStorageDate``,
            ``permanentStorageHwmDate``...).
        compression: ``Zip`` or ``TarGz``: the status's ``package.compressionType``, which decides how the parts are
            unpacked (not what was asked for, not the bytes).
        requested_compression: What the export request asked for.
    """

    def __init__(
        self,
        reference_number: str,
        status: InvoiceExportStatusResponse,
        compression: CompressionType | str,
        spool: Path,
        parts: Sequence[Path],
    ) -> None:
        assert status.package is not None
        self.reference_number = reference_number
        self.status = status
        self.package: InvoicePackage = status.package
        self.compression: str = package_compression(status.package)
        self.requested_compression = str(compression)
        self._spool = spool
        self._parts = list(parts)

    def __repr__(self) -> str:
        return (
            f"ExportPackage(reference_number={self.reference_number!r}, invoices={self.package.invoice_count}, "
            f"parts={len(self._parts)}, truncated={self.package.is_truncated})"
        )

    def close(self) -> None:
        """Remove the spooled plaintext."""
        shutil.rmtree(self._spool, ignore_errors=True)

    # -- reading (worker thread) -------------------------------------------------------------------------------------

    def _iter_sync(self) -> Iterator[ExportedInvoice]:
        if self.compression == CompressionType.TAR_GZ:
            yield from self._iter_tar()
        else:
            yield from self._iter_zip()

    @property
    def _metadata_limit(self) -> int:
        count = min(max(self.package.invoice_count or 0, 1), MAX_PACKAGE_INVOICES)
        return 1_048_576 + count * METADATA_BYTES_PER_INVOICE

    def _entries(self, raw: bytes) -> _MetadataIndex:
        try:
            return _MetadataIndex(raw.decode("utf-8"))
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"export {self.reference_number}: {METADATA_FILE} is not readable ({exc})") from None

    def _make(self, entry: Mapping[str, Any], xml: bytes | None) -> ExportedInvoice:
        # The one gate for server-supplied KSeF numbers: they become file names downstream.
        number = checked_ksef_number(entry.get("ksefNumber"), source=f"export {self.reference_number}: {METADATA_FILE}")
        metadata = structure(entry, InvoiceMetadata)
        if xml is not None:
            actual = hashlib.sha256(xml).digest()
            if actual != _digest(metadata.invoice_hash):
                raise IntegrityError(
                    f"export {self.reference_number}: {number}.xml has SHA-256 {b64(actual)}, "
                    f"but {METADATA_FILE} says {_text(metadata.invoice_hash)}"
                )
        return ExportedInvoice(number, xml, metadata, entry)

    def _what(self, member: str) -> str:
        return f"export {self.reference_number}: member {shown(member)}"

    def _iter_zip(self) -> Iterator[ExportedInvoice]:
        # A small buffer: zipfile seeks to every member, and each seek throws the buffer away.
        with _Concatenation(self._parts) as raw, zipfile.ZipFile(io.BufferedReader(raw, 1 << 16)) as archive:
            names = set(archive.namelist())
            if METADATA_FILE not in names:
                raise IntegrityError(f"export {self.reference_number}: the package has no {METADATA_FILE}")
            with archive.open(METADATA_FILE) as fh:
                entries = self._entries(_read_bounded(fh, self._metadata_limit, self._what(METADATA_FILE)))
            only_metadata = not (names - {METADATA_FILE})
            for entry in entries.iter():
                number = str(entry.get("ksefNumber"))
                if only_metadata:
                    yield self._make(entry, None)
                    continue
                member = f"{number}.xml"
                if member not in names:
                    raise IntegrityError(f"export {self.reference_number}: {member} is listed but not in the package")
                with archive.open(member) as fh:
                    xml = _read_bounded(fh, MAX_INVOICE_BYTES, self._what(member))
                yield self._make(entry, xml)

    def _iter_tar(self) -> Iterator[ExportedInvoice]:
        entries: _MetadataIndex | None = None
        with (
            _Concatenation(self._parts) as raw,
            tarfile.open(fileobj=io.BufferedReader(raw, 1 << 20), mode="r|gz") as tar,
        ):
            for member in tar:
                if member.name == METADATA_FILE:
                    fh = tar.extractfile(member)
                    what = self._what(METADATA_FILE)
                    entries = self._entries(_read_bounded(fh, self._metadata_limit, what) if fh else b"")
                    break
        if entries is None:
            raise IntegrityError(f"export {self.reference_number}: the package has no {METADATA_FILE}")
        seen: set[str] = set()
        # A second streaming pass yields the invoices; when _metadata.json comes first (it does on KSeF and in our
        # simulator) the first pass stopped right after it, so the archive is decompressed about once.
        with (
            _Concatenation(self._parts) as raw,
            tarfile.open(fileobj=io.BufferedReader(raw, 1 << 20), mode="r|gz") as tar,
        ):
            for member in tar:
                name = member.name
                if name == METADATA_FILE or not name.endswith(".xml") or not member.isfile():
                    continue
                number = checked_ksef_number(
                    name.rsplit("/", 1)[-1][: -len(".xml")], source=f"export {self.reference_number}: archive member"
                )
                entry = entries.get(number)
                if entry is None:
                    raise IntegrityError(f"export {self.reference_number}: {name} is not listed in {METADATA_FILE}")
                fh = tar.extractfile(member)
                seen.add(number)
                yield self._make(entry, _read_bounded(fh, MAX_INVOICE_BYTES, self._what(name)) if fh else b"")
        for entry in entries.iter():
            number = str(entry.get("ksefNumber"))
            if number not in seen:
                if seen:
                    raise IntegrityError(
                        f"export {self.reference_number}: {number}.xml is listed but not in the package"
                    )
                yield self._make(entry, None)  # onlyMetadata: the package holds _metadata.json alone

    async def invoices(self) -> AsyncIterator[ExportedInvoice]:
        """Yield the package's invoices (archive reading and hashing run in a worker thread, in batches).

        Raises:
            IntegrityError: A member is missing, unlisted, or its SHA-256 differs from ``invoiceHash``.
        """
        iterator = self._iter_sync()

        def batch() -> list[ExportedInvoice]:
            return [item for _, item in zip(range(_READ_BATCH), iterator, strict=False)]

        while True:
            items = await asyncio.to_thread(batch)
            if not items:
                return
            for item in items:
                yield item

    async def write_to(self, directory: Path) -> int:
        """Write ``{ksefNumber}.xml`` files and ``_metadata.json`` into ``directory``; return the invoice count."""
        await asyncio.to_thread(private_dir, directory)
        entries: list[Mapping[str, Any]] = []
        async for invoice in self.invoices():
            entries.append(invoice.raw_metadata)
            if invoice.xml is not None:
                await asyncio.to_thread(write_private_in, directory, f"{invoice.ksef_number}.xml", invoice.xml)
        text = json.dumps({"invoices": entries}, ensure_ascii=False, indent=1)
        await asyncio.to_thread(write_private_in, directory, METADATA_FILE, text.encode())
        return len(entries)


class _PartSink:
    """Decrypts and hashes one part's chunks into its plaintext spool file (called from a worker thread)."""

    def __init__(self, key: SessionKey, path: Path) -> None:
        self.path = path
        self._fh = path.open("wb")
        self._dec: AesCbcDecryptor = key.decryptor()
        self._cipher = hashlib.sha256()
        self._plain = hashlib.sha256()
        self.cipher_size = 0
        self.plain_size = 0

    def feed(self, chunk: bytes) -> None:
        self._cipher.update(chunk)
        self.cipher_size += len(chunk)
        self._write(self._dec.update(chunk))

    def _write(self, data: bytes) -> None:
        if data:
            self._plain.update(data)
            self.plain_size += len(data)
            self._fh.write(data)

    def finish(self) -> tuple[str, str]:
        try:
            self._write(self._dec.finalize())
        finally:
            self._fh.close()
        return b64(self._cipher.digest()), b64(self._plain.digest())

    def abort(self) -> None:
        self._fh.close()
        self.path.unlink(missing_ok=True)


def _within(received: int, declared: int, what: str) -> int:
    # A server that never stops must not fill the disk: stop at the first chunk past the declaration.
    if received > declared:
        raise IntegrityError(f"{what}: more than encryptedPartSize {declared} bytes sent: stopped")
    return received


async def _download_part(  # noqa: C901 - one linear check list
    retrieval: RetrievalResource, key: SessionKey, part: InvoicePackagePart, path: Path, reference: str
) -> None:
    what = f"export {reference} part {part.ordinal_number}"
    declared = part.encrypted_part_size
    if not 0 <= declared <= MAX_PART_BYTES:
        raise ProtocolError(f"{what}: encryptedPartSize {declared} is outside 0..{MAX_PART_BYTES}")
    sink = await asyncio.to_thread(_PartSink, key, path)
    try:
        received = 0
        async with retrieval.stream_part(part.url) as stream:
            # Network chunks are often small; hand the worker thread about 1 MiB at a time.
            pending = bytearray()
            async for chunk in stream.chunks:
                received = _within(received + len(chunk), declared, what)
                pending += chunk
                if len(pending) >= _FEED:
                    await asyncio.to_thread(sink.feed, bytes(pending))
                    pending.clear()
            if pending:
                await asyncio.to_thread(sink.feed, bytes(pending))
            announced = stream.announced_hash
        try:
            encrypted_hash, plain_hash = await asyncio.to_thread(sink.finish)
        except CryptoError as exc:
            raise IntegrityError(f"{what}: cannot be decrypted ({exc})") from None
    except BaseException:
        sink.abort()
        raise
    problems = []
    if sink.cipher_size != part.encrypted_part_size:
        problems.append(f"encrypted size {sink.cipher_size} != encryptedPartSize {part.encrypted_part_size}")
    if encrypted_hash != _text(part.encrypted_part_hash):
        problems.append(f"encrypted SHA-256 {encrypted_hash} != encryptedPartHash {_text(part.encrypted_part_hash)}")
    if announced is not None and announced.strip() != encrypted_hash:
        problems.append(f"encrypted SHA-256 {encrypted_hash} != x-ms-meta-hash {announced}")
    if sink.plain_size != part.part_size:
        problems.append(f"size {sink.plain_size} != partSize {part.part_size}")
    if plain_hash != _text(part.part_hash):
        problems.append(f"SHA-256 {plain_hash} != partHash {_text(part.part_hash)}")
    if problems:
        await asyncio.to_thread(path.unlink, missing_ok=True)
        raise IntegrityError(f"{what}: {'; '.join(problems)}")
    logger.debug("export part downloaded", extra=extras(reference_number=reference, part=part.ordinal_number))


async def download_package(  # noqa: C901
    retrieval: RetrievalResource,
    reference_number: str,
    status: InvoiceExportStatusResponse,
    key: SessionKey,
    *,
    compression: CompressionType | str = CompressionType.ZIP,
    workdir: Path | None = None,
    concurrency: int = 4,
    attempts: int = 3,
) -> ExportPackage:
    """Download, check and decrypt every part of a finished export into a spool directory.

    Parts download concurrently (``concurrency`` at a time); a part whose hashes or sizes do not match, or whose
    connection fails, is downloaded again, up to ``attempts`` times.

    Raises:
        IntegrityError: A part still does not match its declaration after ``attempts`` tries.
        TransportError: A part still cannot be downloaded.
    """
    if status.package is None:
        raise IntegrityError(f"export {reference_number}: status 200 without a package")
    package_compression(status.package)  # an unknown format fails before anything is downloaded
    spool = Path(tempfile.mkdtemp(prefix=f"ksef-export-{reference_number}-", dir=workdir))
    parts = sorted(status.package.parts, key=lambda p: p.ordinal_number)
    paths = [spool / f"part-{p.ordinal_number:04d}.bin" for p in parts]
    limit = asyncio.Semaphore(max(1, concurrency))

    async def fetch(part: InvoicePackagePart, path: Path) -> None:
        async with limit:
            for attempt in range(1, attempts + 1):
                try:
                    await _download_part(retrieval, key, part, path, reference_number)
                except (IntegrityError, TransportError) as exc:
                    if attempt == attempts:
                        raise
                    logger.warning(
                        "export part failed, downloading it again",
                        extra=extras(reference_number=reference_number, part=part.ordinal_number, error=str(exc)),
                    )
                else:
                    return

    try:
        async with task_group() as group:
            for part, path in zip(parts, paths, strict=True):
                group.create_task(fetch(part, path))
    except BaseExceptionGroup as group_error:
        shutil.rmtree(spool, ignore_errors=True)
        first = group_error.exceptions[0]
        if isinstance(first, KsefError):
            raise first from None
        raise
    except BaseException:
        shutil.rmtree(spool, ignore_errors=True)
        raise
    return ExportPackage(reference_number, status, compression, spool, paths)


@contextlib.asynccontextmanager
async def export_invoices(
    retrieval: RetrievalResource,
    filters: InvoiceQueryFilters,
    *,
    only_metadata: bool = False,
    compression: CompressionType | str = CompressionType.ZIP,
    workdir: Path | None = None,
    concurrency: int = 4,
    max_wait: float | None = 3600.0,
    backoff: Backoff | None = None,
    on_started: Callable[[str], None] | None = None,
) -> AsyncIterator[ExportPackage]:
    """Run one export end to end and hand over the verified, decrypted package.

    Use it as ``async with export_invoices(client.retrieval, filters) as package:``.

    A fresh AES-256 key (wrapped under the MF ``SymmetricKeyEncryption`` key, with its ``publicKeyId``) encrypts
    this export only. The status is polled with back-off; the parts are downloaded and verified
    (`download_package`); the spool is removed when the block ends.

    Args:
        retrieval: ``client.retrieval``.
        filters: What to export (date-times must carry a UTC offset; at most 100 days counted in UTC).
        only_metadata: Ask for ``_metadata.json`` alone.
        compression: ``Zip`` or ``TarGz`` asked for (the package is unpacked by what the status reports).
        workdir: Where the spool directory goes (default: the system temp directory).
        concurrency: Parts downloaded at once.
        max_wait: Give up polling after this many seconds.
        backoff: Waits between status polls.
        on_started: Called with the reference number once KSeF accepted the export.

    Raises:
        ExportFailedError: The export ended in 210, 415, 420, 500 or 550.
        DeadlineExceededError: Still in progress after ``max_wait``.
        IntegrityError: A part or an invoice does not match its hash.
        NaiveDateTimeError: A ``dateRange`` date-time has no UTC offset (nothing is sent).
        ConfigurationError: ``dateRange`` spans more than 100 days in UTC (one export is one window: split it with
            `ksef_async.core.windows.split_windows`); nothing is sent.
        DateRangeRefusedError: KSeF refused the range anyway (21405 naming ``dateRange``).
    """
    check_window(filters.date_range.from_, filters.date_range.to)
    key = SessionKey.generate()
    reference = await retrieval.start_export(filters, key, only_metadata=only_metadata, compression=compression)
    if on_started is not None:
        on_started(reference)
    status = await retrieval.wait_for_export(reference, max_wait=max_wait, backoff=backoff)
    package = await download_package(
        retrieval, reference, status, key, compression=compression, workdir=workdir, concurrency=concurrency
    )
    try:
        yield package
    finally:
        package.close()
