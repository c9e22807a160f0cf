"""Cut a plaintext archive stream into parts, encrypt each part on its own and hash everything, without I/O.

KSeF's batch recipe (``POST /sessions/batch``, schema ``BatchFileInfo``; official docs ``sesja-wsadowa.md``):
the whole plaintext archive is hashed (``batchFile.fileHash``/``fileSize``);
it is split binary-wise into parts of at most 100 MB *before* encryption; each part is encrypted separately
with the session key and IV (its own AES-256-CBC stream with its own PKCS#7 padding); and each encrypted part is
hashed (``fileParts[].fileHash``/``fileSize``). Plaintext parts are capped at 99,999,984 B so that even the
ciphertext stays within 100,000,000 B.

`ArchivePipeline` receives archive bytes through `ArchivePipeline.write` (the `ZipWriter` sink), stages them in
a fixed buffer, encrypts whole chunks with ``update_into`` into a second fixed buffer and hands the ciphertext
to a `PartSink`. Memory is two chunk buffers, whatever the archive size.
"""

from __future__ import annotations

import hashlib
from typing import Final, Protocol

import attrs

from ksef_async.core.batch_limits import MAX_PART_PLAIN_SIZE, check_part_size
from ksef_async.core.crypto import AesCbcEncryptor, SessionKey, b64, encrypted_size

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MAX_PART_PLAIN_SIZE",
    "ArchivePipeline",
    "PartInfo",
    "PartSink",
    "PreparedArchive",
]

DEFAULT_CHUNK_SIZE: Final = 1 << 20
"""Bytes encrypted per ``update_into`` call: large enough to amortise the call, small enough to stay in cache."""


@attrs.frozen
class PartInfo:
    """One encrypted part, as declared in ``batchFile.fileParts``.

    Attributes:
        ordinal: ``ordinalNumber``, from 1.
        plain_size: Plaintext bytes of the archive in this part.
        size: ``fileSize``: ciphertext bytes.
        hash: ``fileHash``: Base64 SHA-256 of the ciphertext.
    """

    ordinal: int
    plain_size: int
    size: int
    hash: str


@attrs.frozen
class PreparedArchive:
    """The whole archive (``batchFile.fileSize``/``fileHash``, plaintext) and its encrypted parts."""

    file_size: int
    file_hash: str
    parts: tuple[PartInfo, ...]


class PartSink(Protocol):
    """Receives the ciphertext of each part, in order."""

    def write_part(self, ordinal: int, data: memoryview) -> None:
        """Consume ``data`` (a view of a reused buffer: copy or write it before returning)."""

    def end_part(self, part: PartInfo) -> None:
        """Called once after the last bytes of part ``part.ordinal``."""


class ArchivePipeline:
    """Split, encrypt and hash an archive stream; see the module docstring.

    Args:
        key: The session key and IV; every part starts a fresh CBC stream from the same IV.
        sink: Receives the ciphertext.
        part_size: Largest plaintext part, 16 <= part_size <= `MAX_PART_PLAIN_SIZE`.
        chunk_size: Staging buffer size.

    Raises:
        ValueError: ``part_size`` or ``chunk_size`` is out of range.
    """

    __slots__ = (
        "_chunk",
        "_enc",
        "_file_hash",
        "_file_size",
        "_fill",
        "_finished",
        "_key",
        "_out",
        "_out_view",
        "_part_hash",
        "_part_plain",
        "_part_size",
        "_parts",
        "_sink",
        "_stage",
        "_stage_view",
    )

    def __init__(
        self,
        key: SessionKey,
        sink: PartSink,
        *,
        part_size: int = MAX_PART_PLAIN_SIZE,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        check_part_size(part_size)
        if chunk_size < 16:  # noqa: PLR2004
            msg = f"chunk_size must be at least 16 bytes, got {chunk_size}"
            raise ValueError(msg)
        self._key = key
        self._sink = sink
        self._part_size = part_size
        self._chunk = chunk_size
        self._stage = bytearray(chunk_size)
        self._stage_view = memoryview(self._stage)
        self._out = bytearray(AesCbcEncryptor.buffer_size(chunk_size))
        self._out_view = memoryview(self._out)
        self._fill = 0
        self._file_hash = hashlib.sha256()
        self._file_size = 0
        self._parts: list[PartInfo] = []
        self._enc: AesCbcEncryptor | None = None
        self._part_hash = hashlib.sha256()
        self._part_plain = 0
        self._finished = False

    @property
    def bytes_in(self) -> int:
        """Plaintext archive bytes received so far."""
        return self._file_size + self._fill

    @property
    def parts(self) -> tuple[PartInfo, ...]:
        """Parts completed so far."""
        return tuple(self._parts)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append archive bytes (any size)."""
        if self._finished:
            msg = "the pipeline is already finished"
            raise ValueError(msg)
        view = memoryview(data).cast("B")
        pos, end = 0, len(view)
        fill = self._fill + end
        if fill < self._chunk and self._part_plain + fill < self._part_size:
            # Fast path (most writes: one small zip entry): it fits in the stage without reaching a boundary.
            self._stage_view[self._fill : fill] = view
            self._fill = fill
            return
        while pos < end:
            # Stage up to a full chunk, but never past the end of the current part.
            room = min(self._chunk - self._fill, self._part_size - self._part_plain - self._fill)
            take = min(room, end - pos)
            self._stage_view[self._fill : self._fill + take] = view[pos : pos + take]
            self._fill += take
            pos += take
            if self._fill == self._chunk or self._part_plain + self._fill == self._part_size:
                self._flush()
            if self._part_plain == self._part_size:
                self._end_part()

    def _flush(self) -> None:
        if not self._fill:
            return
        staged = self._stage_view[: self._fill]
        self._file_hash.update(staged)
        self._file_size += self._fill
        if self._enc is None:
            self._enc = self._key.encryptor()
            self._part_hash = hashlib.sha256()
            self._part_plain = 0
        n = self._enc.update_into(staged, self._out)
        if n:
            out = self._out_view[:n]
            self._part_hash.update(out)
            self._sink.write_part(len(self._parts) + 1, out)
        self._part_plain += self._fill
        self._fill = 0

    def _end_part(self) -> None:
        if self._enc is None:
            return
        tail = self._enc.finalize()
        self._part_hash.update(tail)
        ordinal = len(self._parts) + 1
        self._sink.write_part(ordinal, memoryview(tail))
        part = PartInfo(ordinal, self._part_plain, encrypted_size(self._part_plain), b64(self._part_hash.digest()))
        self._parts.append(part)
        self._enc = None
        self._part_plain = 0
        self._sink.end_part(part)

    def finish(self) -> PreparedArchive:
        """Encrypt what is staged, close the last part and return the description of the archive.

        Raises:
            ValueError: No bytes were written (KSeF requires ``fileSize`` >= 1).
        """
        if self._finished:
            msg = "the pipeline is already finished"
            raise ValueError(msg)
        self._flush()
        self._end_part()
        self._finished = True
        if not self._file_size:
            msg = "the archive is empty"
            raise ValueError(msg)
        return PreparedArchive(self._file_size, b64(self._file_hash.digest()), tuple(self._parts))
