"""A streaming, deterministic ZIP writer (ZIP64 when needed) that hands its bytes to a sink and does no I/O.

Each invoice is in memory when it is added (KSeF invoices are at most 3 MB), so the entry is compressed first and
its local header carries the real CRC-32 and sizes: no data descriptors, and a reader can stream the archive.
Output is deterministic: fixed timestamps (1980-01-01 00:00), entries in the order given, no extra fields except
the ZIP64 ones the sizes require. Raw deflate comes from ``isal.isal_zlib`` when the ``fast`` extra is installed,
stdlib `zlib` otherwise.

Default levels, measured per CPU-second on one core (see benchmarks/RESULTS.md), on the official 13 kB FA(3)
sample / on 13 kB `InvoiceFactory` invoices (MB/s, compression ratio):

=========  ===========  ===========
level      sample       factory
=========  ===========  ===========
isal 0     900, 6.6     497, 3.64
isal 1     460, 7.9     276, 4.39
isal 2     440, 7.9     267, 4.40
isal 3     110, 8.0      92, 4.47
zlib 1     190, 7.7      94, 4.30
zlib 6      83, 8.4      54, 4.86
=========  ===========  ===========

isal level 1 is the default: level 2 compresses no better, level 3 is 3x slower for 2% smaller output, and level 0
gives up 20% of ratio. The zlib fallback uses level 1 too: level 6 would cut throughput in half (the stdlib-based
clients' choice, and why they are slow) for an archive 10-12% smaller.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from types import ModuleType
from typing import Final, Literal, NamedTuple

from ksef_async.core.extras import require_extra

__all__ = [
    "DEFAULT_LEVEL",
    "END_OVERHEAD",
    "ENTRY_OVERHEAD",
    "DeflatedEntry",
    "ZipWriter",
    "check_level",
    "deflate_backend",
    "deflate_entry",
    "zip_size_bound",
]

_isal_zlib: ModuleType | None
try:  # the `fast` extra
    from isal import isal_zlib as _isal_zlib
except ImportError:  # pragma: no cover - depends on installed extras
    _isal_zlib = None

DEFAULT_LEVEL: Final = 1
"""Deflate level used by both backends (see the module docstring for the measurements)."""

_U16: Final = 0xFFFF
_U32: Final = 0xFFFFFFFF
_DOS_TIME: Final = 0  # 00:00:00
_DOS_DATE: Final = (0 << 9) | (1 << 5) | 1  # 1980-01-01, the earliest DOS date: fixed for determinism
_FLAG_UTF8: Final = 0x0800
_STORED: Final = 0
_DEFLATED: Final = 8
_VERSION_DEFAULT: Final = 20
_VERSION_ZIP64: Final = 45
_ZIP64_EXTRA_ID: Final = 0x0001

_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_EOCD = struct.Struct("<IHHHHIIH")
_EOCD64 = struct.Struct("<IQHHIIQQQQ")
_LOCATOR64 = struct.Struct("<IIQI")

ENTRY_OVERHEAD: Final = _LOCAL.size + _CENTRAL.size + 2 * (4 + 24)
"""Archive bytes per entry besides its data and twice its name: both headers plus room for ZIP64 extras."""
END_OVERHEAD: Final = _EOCD.size + _EOCD64.size + _LOCATOR64.size
"""Archive bytes after the central directory, at most."""


def deflate_backend(name: Literal["auto", "isal", "zlib"] = "auto") -> ModuleType:
    """Return the raw-deflate module: by default ``isal.isal_zlib`` when installed, else stdlib `zlib`.

    Args:
        name: ``"isal"`` asks for isal explicitly, ``"zlib"`` for the standard library.

    Raises:
        MissingExtraError: ``"isal"`` was asked for and the ``fast`` extra is not installed.
    """
    if name == "zlib":
        return zlib
    if name == "isal":
        return require_extra("isal.isal_zlib", extra="fast")
    return _isal_zlib if _isal_zlib is not None else zlib


def zip_size_bound(name: str, size: int) -> int:
    """Upper bound of the archive bytes one entry adds (stored or deflated, headers and ZIP64 extras included).

    An entry is never larger than its stored form because `ZipWriter` stores whatever deflate does not shrink.
    """
    return ENTRY_OVERHEAD + 2 * len(name.encode()) + size


class DeflatedEntry(NamedTuple):
    """One archive entry, compressed and checksummed, ready for `ZipWriter.add_deflated`.

    Made by `deflate_entry`, which needs no writer: entries can be compressed anywhere (a worker thread: isal and
    zlib release the GIL while they deflate and checksum) and written in order afterwards.

    Attributes:
        name: The member name.
        raw_name: ``name`` in UTF-8.
        method: 0 (stored) or 8 (deflated).
        crc: CRC-32 of the uncompressed bytes.
        size: Uncompressed size.
        payload: The bytes stored in the archive (compressed, or the input itself when stored).
    """

    name: str
    raw_name: bytes
    method: int
    crc: int
    size: int
    payload: bytes | bytearray | memoryview

    @property
    def archive_size(self) -> int:
        """Archive bytes this entry takes: local header, name, payload and central directory record.

        Exact, except that the ZIP64 offset field of the central record (12 bytes) is always counted, since
        whether it is needed depends on where the entry lands (past 4 GiB): an upper bound by at most 12 bytes
        (for a writer without ``force_zip64``).
        """
        extra = 2 * (4 + 16) if self.size >= _U32 or len(self.payload) >= _U32 else 0
        return _LOCAL.size + _CENTRAL.size + 2 * len(self.raw_name) + len(self.payload) + extra + 12


def _checked_name(name: str) -> bytes:
    if not name or name.startswith("/") or "\\" in name:
        msg = f"bad archive member name {name!r}"
        raise ValueError(msg)
    return name.encode()


def check_level(level: int, backend: ModuleType) -> None:
    """Raise `ValueError` when ``level`` is outside what ``backend`` supports."""
    top = 3 if backend is _isal_zlib else 9  # isal_zlib levels stop at 3 (ISA-L's own levels)
    if not 0 <= level <= top:
        msg = f"deflate level must be between 0 and {top} for {backend.__name__}, got {level}"
        raise ValueError(msg)


def deflate_entry(
    name: str, data: bytes | bytearray | memoryview, *, level: int = DEFAULT_LEVEL, backend: ModuleType | None = None
) -> DeflatedEntry:
    """Compress and checksum one entry (pure and thread-safe; the heavy work runs without the GIL).

    Data that deflate does not shrink is stored, so an entry never exceeds its stored size (`zip_size_bound`).

    Raises:
        ValueError: ``name`` is empty, absolute or has a backslash.
    """
    raw_name = _checked_name(name)
    module = backend if backend is not None else deflate_backend()
    size = len(data)
    crc = module.crc32(data) & _U32
    if level > 0 and size > 0:
        packed = module.compress(data, level, -15)  # one-shot raw deflate: no stream object
        if len(packed) < size:
            return DeflatedEntry(name, raw_name, _DEFLATED, crc, size, packed)
    return DeflatedEntry(name, raw_name, _STORED, crc, size, data)


class ZipWriter:
    """Write a ZIP archive entry by entry to ``sink``, which receives every byte in order.

    Args:
        sink: Called with each piece of the archive; it must consume (copy or write) the bytes before returning.
        level: Deflate level (isal: 1-3, zlib: 1-9); ``0`` stores entries uncompressed.
        backend: The raw-deflate module (``isal.isal_zlib`` or `zlib`); default: `deflate_backend()`.
        force_zip64: Write ZIP64 records even for small archives (for tests of the ZIP64 paths).

    Raises:
        ValueError: ``level`` is outside what the backend supports.
    """

    __slots__ = ("_backend", "_central", "_closed", "_count", "_force64", "_level", "_names", "_offset", "_sink")

    def __init__(
        self,
        sink: Callable[[bytes], object],
        *,
        level: int = DEFAULT_LEVEL,
        backend: ModuleType | None = None,
        force_zip64: bool = False,
    ) -> None:
        self._sink = sink
        self._level = level
        self._backend = backend if backend is not None else deflate_backend()
        check_level(level, self._backend)
        self._force64 = force_zip64
        self._central = bytearray()
        self._names: set[str] = set()
        self._offset = 0
        self._count = 0
        self._closed = False

    @property
    def offset(self) -> int:
        """Bytes written so far."""
        return self._offset

    @property
    def count(self) -> int:
        """Entries added so far."""
        return self._count

    def _emit(self, data: bytes) -> None:
        self._sink(data)
        self._offset += len(data)

    @property
    def level(self) -> int:
        """The deflate level."""
        return self._level

    @property
    def backend(self) -> ModuleType:
        """The raw-deflate module."""
        return self._backend

    def add(self, name: str, data: bytes | bytearray | memoryview) -> int:
        """Compress and append one entry; return the archive bytes it took (local header and data).

        Raises:
            ValueError: The writer is closed, or ``name`` is empty, absolute or already in the archive.
        """
        if self._closed:
            msg = "the archive is already closed"
            raise ValueError(msg)
        return self.add_deflated(deflate_entry(name, data, level=self._level, backend=self._backend))

    def add_deflated(self, entry: DeflatedEntry) -> int:
        """Append one entry compressed by `deflate_entry`; return the archive bytes it took (local header, data).

        Raises:
            ValueError: The writer is closed, or the entry's name is bad or already in the archive.
        """
        if self._closed:
            msg = "the archive is already closed"
            raise ValueError(msg)
        name = entry.name
        raw_name = _checked_name(name)
        if name in self._names:
            msg = f"duplicate archive member name {name!r}"
            raise ValueError(msg)
        self._names.add(name)
        flags = 0 if raw_name.isascii() else _FLAG_UTF8
        method, crc, size, payload = entry.method, entry.crc, entry.size, entry.payload
        csize = len(payload)
        start = self._offset
        big_sizes = size >= _U32 or csize >= _U32
        local_extra = struct.pack("<HHQQ", _ZIP64_EXTRA_ID, 16, size, csize) if big_sizes else b""
        version = _VERSION_ZIP64 if big_sizes else _VERSION_DEFAULT
        header = _LOCAL.pack(
            0x04034B50,
            version,
            flags,
            method,
            _DOS_TIME,
            _DOS_DATE,
            crc,
            _U32 if big_sizes else csize,
            _U32 if big_sizes else size,
            len(raw_name),
            len(local_extra),
        )
        # One sink call per entry: the copy of a (compressed) invoice is cheaper than a second call downstream.
        self._emit(b"".join((header, raw_name, local_extra, payload)))
        self._central_entry(raw_name, flags=flags, method=method, crc=crc, size=size, csize=csize, at=start)
        self._count += 1
        return self._offset - start

    def _central_entry(
        self, raw_name: bytes, *, flags: int, method: int, crc: int, size: int, csize: int, at: int
    ) -> None:
        # Fields that overflow (or every field, when forced) move to the ZIP64 extra, in the order the format
        # fixes: uncompressed size, compressed size, local header offset.
        fields: list[int] = []
        size32, csize32, at32 = size, csize, at
        if self._force64 or size >= _U32:
            fields.append(size)
            size32 = _U32
        if self._force64 or csize >= _U32:
            fields.append(csize)
            csize32 = _U32
        if self._force64 or at >= _U32:
            fields.append(at)
            at32 = _U32
        extra = struct.pack(f"<HH{len(fields)}Q", _ZIP64_EXTRA_ID, 8 * len(fields), *fields) if fields else b""
        version = _VERSION_ZIP64 if fields else _VERSION_DEFAULT
        self._central += _CENTRAL.pack(
            0x02014B50,
            version,  # made by: MS-DOS attributes, spec version
            version,
            flags,
            method,
            _DOS_TIME,
            _DOS_DATE,
            crc,
            csize32,
            size32,
            len(raw_name),
            len(extra),
            0,  # comment length
            0,  # disk number start
            0,  # internal attributes
            0,  # external attributes
            at32,
        )
        self._central += raw_name + extra

    def close(self) -> int:
        """Write the central directory and end records; return the archive's total size."""
        if self._closed:
            return self._offset
        self._closed = True
        cd_offset = self._offset
        cd_size = len(self._central)
        if self._central:
            self._emit(bytes(self._central))
        self._central = bytearray()
        zip64 = self._force64 or self._count > _U16 - 1 or cd_offset >= _U32 or cd_size >= _U32
        if zip64:
            eocd64_at = self._offset
            self._emit(
                _EOCD64.pack(
                    0x06064B50,
                    _EOCD64.size - 12,  # size of the record after this field
                    _VERSION_ZIP64,
                    _VERSION_ZIP64,
                    0,
                    0,
                    self._count,
                    self._count,
                    cd_size,
                    cd_offset,
                )
            )
            self._emit(_LOCATOR64.pack(0x07064B50, 0, eocd64_at, 1))
        count16 = _U16 if zip64 else self._count
        self._emit(
            _EOCD.pack(
                0x06054B50,
                0,
                0,
                count16,
                count16,
                _U32 if zip64 else cd_size,
                _U32 if zip64 else cd_offset,
                0,
            )
        )
        return self._offset
