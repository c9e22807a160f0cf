"""Sessions packed full: by real compressed archive bytes and invoice count, never past a KSeF limit."""

from __future__ import annotations

import io
import itertools
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ksef_async.batch import prepare_batch_sync
from ksef_async.cli.demo import demo_part_size
from ksef_async.core.crypto import SessionKey, b64decode, decrypt_cbc, rsa_oaep_decrypt
from ksef_async.core.plan import FormKey, InvoiceEntry, SessionLimits, SessionPacker, SessionPlan
from ksef_async.core.zipstream import END_OVERHEAD, ZipWriter, deflate_entry, zip_size_bound
from ksef_async.errors import InvoiceError
from ksef_async.testing.invoices import InvoiceFactory

SELLER = "5265877635"
FA3 = FormKey("FA (3)", "1-0E", "FA")
RR = FormKey("FA_RR (1)", "1-1E", "FA_RR")
PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
POOL = list(InvoiceFactory(SELLER, seed=11, size_kb=3).iter(60))


# ---- the entry cost ----------------------------------------------------------------------------------------


@given(st.lists(st.tuples(st.binary(max_size=3000), st.integers(0, 3)), min_size=1, max_size=12))
def test_archive_size_bounds_each_entry_exactly_but_for_the_offset_field(entries: list[tuple[bytes, int]]) -> None:
    out = bytearray()
    writer = ZipWriter(out.extend)
    total = 0
    for i, (data, level) in enumerate(entries):
        deflated = deflate_entry(f"f{i}-ż.xml", data, level=level)
        assert deflated.archive_size <= zip_size_bound(deflated.name, len(data))
        total += deflated.archive_size
        writer.add_deflated(deflated)
    size = writer.close()
    # Below 4 GiB every central record lacks the 12-byte ZIP64 offset field that archive_size counts.
    assert size + 12 * len(entries) == total + (size - writer.offset) + _end_records(bytes(out))
    with zipfile.ZipFile(io.BytesIO(bytes(out))) as zf:
        assert [zf.read(f"f{i}-ż.xml") for i in range(len(entries))] == [d for d, _ in entries]


def _end_records(archive: bytes) -> int:
    return 22 if archive[-22:-18] == b"PK\x05\x06" else 0


# ---- the packer: a property over random limits and costs -----------------------------------------------------

_limits = st.builds(
    SessionLimits,
    max_invoices=st.integers(1, 12),
    max_archive_size=st.integers(2_000, 60_000),
    max_parts=st.integers(1, 6),
    part_size=st.integers(300, 20_000),
    max_invoice_size=st.just(10_000),
    max_invoice_with_attachment_size=st.just(10_000),
)
_invoices = st.lists(
    st.tuples(st.sampled_from([FA3, RR]), st.integers(0, 9_000), st.floats(0.05, 1.0)), min_size=1, max_size=80
)


@settings(max_examples=300)
@given(_limits, _invoices)
def test_packing_never_exceeds_a_limit_and_leaves_no_room(
    limits: SessionLimits, invoices: list[tuple[FormKey, int, float]]
) -> None:
    packer = SessionPacker(limits)
    budget = min(limits.max_archive_size, limits.max_parts * limits.part_size)
    cost: dict[str, int] = {}
    sessions: list[SessionPlan] = []
    accepted: list[str] = []
    for i, (form, size, ratio) in enumerate(invoices):
        entry = InvoiceEntry(f"i{i:04d}.xml", f"h{i}", size, form)
        cost[entry.name] = int(zip_size_bound(entry.name, size) * ratio)
        if cost[entry.name] + END_OVERHEAD > budget:  # could never fit an empty session: refused
            with pytest.raises(InvoiceError, match="does not fit one session"):
                packer.add(entry, cost[entry.name])
            continue
        _, closed = packer.add(entry, cost[entry.name])
        accepted.append(entry.name)
        if closed is not None:
            sessions.append(closed)
    sessions.extend(packer.finish())
    sessions.sort(key=lambda s: s.index)
    assert sorted(e.name for s in sessions for e in s.invoices) == sorted(accepted)
    for s in sessions:
        archive = END_OVERHEAD + sum(cost[e.name] for e in s.invoices)
        assert 1 <= len(s.invoices) <= limits.max_invoices
        assert archive <= limits.max_archive_size
        assert archive <= limits.max_parts * limits.part_size  # so ceil(archive / part_size) <= max_parts
        assert {e.form for e in s.invoices} == {s.form}
    # Full: a session of a form closes only when that form's next invoice does not fit in it.
    for form in (FA3, RR):
        same = [s for s in sessions if s.form == form]
        for current, following in itertools.pairwise(same):
            archive = END_OVERHEAD + sum(cost[e.name] for e in current.invoices)
            first = following.invoices[0].name
            assert len(current.invoices) == limits.max_invoices or archive + cost[first] > budget


def test_20_000_and_100_000_invoices_need_2_and_10_sessions() -> None:
    # The real cost of 13 kB factory invoices (about 3 kB compressed) and the default limits.
    sample = [deflate_entry(name, data).archive_size for name, data in InvoiceFactory(SELLER, seed=3).iter(50)]
    for count, expected in ((20_000, 2), (100_000, 10)):
        packer = SessionPacker(SessionLimits())
        closed = 0
        for i in range(count):
            _, done = packer.add(InvoiceEntry(f"i{i:06d}.xml", "h", 13_000, FA3), sample[i % len(sample)])
            closed += done is not None
        assert closed + len(packer.finish()) == expected


def test_the_demo_part_size_lets_one_session_hold_10_000_invoices() -> None:
    assert demo_part_size([13_000] * 1_000) == 400_000  # small batches keep small parts
    size = demo_part_size([13_000] * 20_000)
    assert size * 50 >= 10_000 * zip_size_bound("i000000.xml", 13_000) + END_OVERHEAD
    assert demo_part_size([900_000] * 20_000) == 99_999_984


# ---- the whole prepare: real archives, real parts ---------------------------------------------------------------


def _open_parts(state: Path, session: SessionPlan) -> bytes:
    assert session.encryption is not None
    key = SessionKey(rsa_oaep_decrypt(PRIVATE, b64decode(session.encryption.encrypted_symmetric_key)),
                     b64decode(session.encryption.initialization_vector))  # fmt: skip
    return b"".join(decrypt_cbc(key, (state / p.file).read_bytes()) for p in session.parts)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    part_size=st.integers(2_000, 30_000),
    max_parts=st.integers(1, 5),
    max_invoices=st.integers(1, 40),
    picks=st.lists(st.integers(0, len(POOL) - 1), min_size=1, max_size=60, unique=True),
)
def test_prepare_packs_by_compressed_bytes_within_every_limit(
    tmp_path_factory: pytest.TempPathFactory, part_size: int, max_parts: int, max_invoices: int, picks: list[int]
) -> None:
    state = tmp_path_factory.mktemp("pack")
    limits = SessionLimits(max_invoices=max_invoices, max_parts=max_parts, max_invoice_size=1_000_000)
    files = [POOL[i] for i in picks]
    budget = max_parts * part_size
    if any(deflate_entry(n, d).archive_size + END_OVERHEAD > budget for n, d in files):
        with pytest.raises(InvoiceError, match="does not fit one session"):
            prepare_batch_sync(files, public_key=PRIVATE.public_key(), state_dir=state, part_size=part_size,
                               validate=False, limits=limits)  # fmt: skip
        return
    plan = prepare_batch_sync(
        files, public_key=PRIVATE.public_key(), state_dir=state, part_size=part_size, validate=False, limits=limits
    )
    assert [e.name for s in plan.sessions for e in s.invoices] == [n for n, _ in files]
    for k, s in enumerate(plan.sessions):
        assert s.file_size is not None
        assert len(s.invoices) <= max_invoices
        assert s.file_size <= budget
        assert 1 <= len(s.parts) <= max_parts
        assert all(p.plain_size == part_size for p in s.parts[:-1])  # parts fill to the part size
        assert 0 < s.parts[-1].plain_size <= part_size
        archive = _open_parts(state, s)
        assert len(archive) == s.file_size
        with zipfile.ZipFile(io.BytesIO(archive)) as zf:
            assert zf.namelist() == [e.name for e in s.invoices]
        if k + 1 < len(plan.sessions):  # full: the next invoice did not fit
            following = plan.sessions[k + 1].invoices[0]
            cost = deflate_entry(following.name, dict(files)[following.name]).archive_size
            # The packer counted the largest end records (ZIP64 ones) and 12 bytes per entry more than written.
            counted = s.file_size - 22 + END_OVERHEAD + 12 * len(s.invoices)
            assert len(s.invoices) == max_invoices or counted + cost > budget


def test_compressed_packing_needs_fewer_sessions_than_the_stored_bound(tmp_path: Path) -> None:
    # 60 invoices of ~3 kB that compress ~4x: by stored size 50 x 20 kB parts hold ~300 of them; here a 4-part
    # budget of 12 kB parts (48 kB) holds ~16 stored, but ~60 compressed.
    files = POOL
    stored = sum(zip_size_bound(n, len(d)) for n, d in files) + END_OVERHEAD
    compressed = sum(deflate_entry(n, d).archive_size for n, d in files) + END_OVERHEAD
    part_size = -(-compressed // 4) + 1
    assert stored > 2 * 4 * part_size
    limits = SessionLimits(max_parts=4)
    plan = prepare_batch_sync(
        files, public_key=PRIVATE.public_key(), state_dir=tmp_path, part_size=part_size, validate=False, limits=limits
    )
    assert len(plan.sessions) == 1
    assert [p.plain_size for p in plan.sessions[0].parts[:-1]] == [part_size] * (len(plan.sessions[0].parts) - 1)
