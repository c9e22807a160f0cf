"""The streaming ZIP writer: stdlib zipfile reads back what it writes (ZIP64 too), deterministically."""

from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from isal import isal_zlib

from ksef_async.core.zipstream import DEFAULT_LEVEL, END_OVERHEAD, ZipWriter, deflate_backend, zip_size_bound

_names = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="/\\\x00"), min_size=1, max_size=30)
_files = st.dictionaries(_names, st.binary(max_size=3000) | st.text(max_size=3000).map(str.encode), max_size=12)


def _write(files: dict[str, bytes], **kwargs: object) -> bytes:
    out = io.BytesIO()
    writer = ZipWriter(out.write, **kwargs)  # type: ignore[arg-type]
    for name, data in files.items():
        writer.add(name, data)
    size = writer.close()
    assert size == out.tell() == writer.offset
    return out.getvalue()


def _read(archive: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        assert zf.testzip() is None  # every CRC checks out
        return {info.filename: zf.read(info) for info in zf.infolist()}


@given(
    files=_files,
    zip64=st.booleans(),
    backend_level=st.sampled_from([(isal_zlib, 0), (isal_zlib, 1), (isal_zlib, 3), (zlib, 1), (zlib, 6), (zlib, 9)]),
)
def test_stdlib_zipfile_reads_back_every_file_in_order(
    files: dict[str, bytes], zip64: bool, backend_level: tuple[object, int]
) -> None:
    backend, level = backend_level
    archive = _write(files, force_zip64=zip64, backend=backend, level=level)
    read = _read(archive)
    assert list(read) == list(files)
    assert read == files


@given(files=_files)
def test_output_is_deterministic_and_within_the_size_bound(files: dict[str, bytes]) -> None:
    first = _write(files)
    assert first == _write(files)
    assert len(first) <= sum(zip_size_bound(n, len(d)) for n, d in files.items()) + END_OVERHEAD


def test_forced_zip64_writes_the_zip64_end_records_and_extras() -> None:
    archive = _write({"a.xml": b"<a/>" * 100}, force_zip64=True)
    assert struct.pack("<I", 0x06064B50) in archive  # ZIP64 end of central directory record
    assert struct.pack("<I", 0x07064B50) in archive  # and its locator
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        (info,) = zf.infolist()
        assert info.header_offset == 0
        assert info.extract_version == 45
    plain = _write({"a.xml": b"<a/>" * 100})
    assert struct.pack("<I", 0x06064B50) not in plain


def test_more_than_65534_entries_switch_to_zip64() -> None:
    files = {f"{i}.xml": b"" for i in range(65_536)}
    archive = _write(files, level=0)
    assert struct.pack("<I", 0x06064B50) in archive
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        names = zf.namelist()
    assert len(names) == 65_536
    assert names[-1] == "65535.xml"


def test_entries_are_deflated_or_stored_whichever_is_smaller_and_names_flag_utf8() -> None:
    text = b"<Faktura>" + b"<P_2>FV/1</P_2>" * 500 + b"</Faktura>"
    noise = random.Random(7).randbytes(512)
    archive = _write({"faktura-łódź.xml": text, "noise.bin": noise})
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        fa, nz = zf.infolist()
    assert fa.compress_type == zipfile.ZIP_DEFLATED
    assert fa.compress_size < len(text) // 10
    assert fa.flag_bits & 0x800  # UTF-8 name
    assert nz.compress_type == zipfile.ZIP_STORED
    assert not nz.flag_bits & 0x800
    assert fa.date_time == nz.date_time == (1980, 1, 1, 0, 0, 0)


def test_local_headers_carry_sizes_and_crc_without_data_descriptors() -> None:
    archive = _write({"a.xml": b"hello " * 100})
    sig, _ver, flags, _method, _t, _d, crc, csize, size = struct.unpack("<IHHHHHIII", archive[:26])
    assert sig == 0x04034B50
    assert not flags & 0x08  # no data descriptor
    assert crc == zlib.crc32(b"hello " * 100)
    assert size == 600
    assert 0 < csize < size


@pytest.mark.parametrize("name", ["", "/etc/passwd", "a\\b.xml"])
def test_bad_member_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="bad archive member name"):
        ZipWriter(io.BytesIO().write).add(name, b"x")


def test_duplicate_names_and_adding_after_close_are_refused() -> None:
    writer = ZipWriter(io.BytesIO().write)
    writer.add("a.xml", b"x")
    with pytest.raises(ValueError, match="duplicate"):
        writer.add("a.xml", b"y")
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.add("b.xml", b"y")


@pytest.mark.parametrize(("backend", "level"), [(isal_zlib, 4), (zlib, 10), (zlib, -1)])
def test_levels_the_backend_lacks_are_refused(backend: object, level: int) -> None:
    with pytest.raises(ValueError, match="deflate level"):
        ZipWriter(io.BytesIO().write, backend=backend, level=level)  # type: ignore[arg-type]


def test_the_fast_backend_is_used_when_installed() -> None:
    assert deflate_backend() is isal_zlib
    assert DEFAULT_LEVEL == 1
