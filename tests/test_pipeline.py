"""The split/encrypt/hash pipeline: parts decrypt and join back to the archive, sizes and hashes are right."""

from __future__ import annotations

import hashlib
import itertools
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ksef_async.core.crypto import SessionKey, b64, decrypt_cbc, encrypted_size
from ksef_async.core.pipeline import MAX_PART_PLAIN_SIZE, ArchivePipeline, PartInfo
from ksef_async.errors import ConfigurationError

KEY = SessionKey(bytes(range(32)), bytes(range(16, 32)))


class Collect:
    """A PartSink that keeps every part's ciphertext."""

    def __init__(self) -> None:
        self.parts: dict[int, bytearray] = {}
        self.ended: list[PartInfo] = []

    def write_part(self, ordinal: int, data: memoryview) -> None:
        assert ordinal == len(self.ended) + 1  # parts arrive in order, one at a time
        self.parts.setdefault(ordinal, bytearray()).extend(data)

    def end_part(self, part: PartInfo) -> None:
        self.ended.append(part)


class Count:
    """A PartSink that only counts and hashes (for large inputs)."""

    def __init__(self) -> None:
        self.hashes: list[str] = []
        self._h = hashlib.sha256()

    def write_part(self, ordinal: int, data: memoryview) -> None:
        self._h.update(data)

    def end_part(self, part: PartInfo) -> None:
        self.hashes.append(b64(self._h.digest()))
        self._h = hashlib.sha256()


@given(
    data=st.binary(min_size=1, max_size=20_000),
    part_size=st.integers(16, 6000),
    chunk_size=st.integers(16, 5000),
    cuts=st.lists(st.integers(0, 20_000), max_size=8),
)
def test_parts_decrypt_separately_and_join_to_the_archive(
    data: bytes, part_size: int, chunk_size: int, cuts: list[int]
) -> None:
    sink = Collect()
    pipeline = ArchivePipeline(KEY, sink, part_size=part_size, chunk_size=chunk_size)
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    for lo, hi in itertools.pairwise(bounds):
        pipeline.write(data[lo:hi])
    result = pipeline.finish()

    assert result.file_size == len(data)
    assert result.file_hash == b64(hashlib.sha256(data).digest())
    assert list(result.parts) == sink.ended
    assert [p.ordinal for p in result.parts] == list(range(1, len(result.parts) + 1))
    assert len(result.parts) == -(-len(data) // part_size)
    joined = b""
    for part in result.parts:
        cipher = bytes(sink.parts[part.ordinal])
        assert part.size == len(cipher) == encrypted_size(part.plain_size) <= part_size + 16
        assert part.hash == b64(hashlib.sha256(cipher).digest())
        joined += decrypt_cbc(KEY, cipher)  # each part is its own CBC stream from the session IV
    assert joined == data
    assert all(p.plain_size == part_size for p in result.parts[:-1])


def test_the_default_part_size_keeps_ciphertext_within_100_000_000_bytes() -> None:
    assert MAX_PART_PLAIN_SIZE == 99_999_984
    assert encrypted_size(MAX_PART_PLAIN_SIZE) <= 100_000_000
    with pytest.raises(ConfigurationError, match="part_size"):
        ArchivePipeline(KEY, Collect(), part_size=MAX_PART_PLAIN_SIZE + 1)
    with pytest.raises(ConfigurationError, match="part_size"):
        ArchivePipeline(KEY, Collect(), part_size=15)


def test_an_archive_of_exactly_n_parts_has_no_empty_trailing_part() -> None:
    sink = Collect()
    pipeline = ArchivePipeline(KEY, sink, part_size=100, chunk_size=64)
    pipeline.write(b"x" * 300)
    result = pipeline.finish()
    assert [p.plain_size for p in result.parts] == [100, 100, 100]


def test_empty_archive_and_reuse_are_refused() -> None:
    pipeline = ArchivePipeline(KEY, Collect())
    with pytest.raises(ValueError, match="empty"):
        pipeline.finish()
    with pytest.raises(ValueError, match="finished"):
        pipeline.write(b"x")


def test_memory_stays_bounded_whatever_the_archive_size() -> None:
    block = bytes(range(256)) * 256  # 64 KiB, written repeatedly: the input itself is not held
    sink = Count()
    tracemalloc.start()
    try:
        pipeline = ArchivePipeline(KEY, sink, part_size=7_000_000, chunk_size=1 << 20)
        for _ in range(640):  # 40 MiB of archive
            pipeline.write(block)
        result = pipeline.finish()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.file_size == 640 * len(block)
    assert len(result.parts) == 6
    assert [p.hash for p in result.parts] == sink.hashes
    assert peak < 3 * (1 << 20)  # the two chunk buffers, not the 40 MiB
