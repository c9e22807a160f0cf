"""Batch prepare: session planning, the plan file, spooled ciphertext that decrypts to the inputs, policies."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import attrs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ksef_async.batch import PLAN_FILE, InvoiceInput, iter_inputs, load_plan, prepare_batch, prepare_batch_sync
from ksef_async.core.crypto import MfPublicKey, SessionKey, b64, b64decode, decrypt_cbc, rsa_oaep_decrypt
from ksef_async.core.plan import (
    BatchPlan,
    FormKey,
    InvoiceEntry,
    InvoiceOutcome,
    InvoicesJsonMemo,
    OutcomeStatus,
    SessionLimits,
    SessionPlan,
    SessionState,
    plan_sessions,
)
from ksef_async.core.zipstream import zip_size_bound
from ksef_async.errors import ConfigurationError, InvoiceError
from ksef_async.testing.invoices import InvoiceFactory
from ksef_async.testing.simulator import KsefSimulator, serve_in_thread

SAMPLES = Path(__file__).parent / "data" / "samples"

SELLER = "5265877635"
FA3 = FormKey("FA (3)", "1-0E", "FA")
FA2 = FormKey("FA (2)", "1-0E", "FA")
RR = FormKey("FA_RR (1)", "1-1E", "FA_RR")
PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
INVOICES = InvoiceFactory(SELLER, seed=5, size_kb=4).iter(40)
POOL = list(INVOICES)


def _entry(i: int, size: int = 1000, form: FormKey = FA3) -> InvoiceEntry:
    return InvoiceEntry(f"i{i:06d}.xml", f"h{i}", size, form)


# ---- plan_sessions: pure, with fake sizes --------------------------------------------------------------------


def test_sessions_hold_one_form_code_each_in_input_order() -> None:
    entries = [_entry(0), _entry(1, form=RR), _entry(2), _entry(3, form=FA2), _entry(4, form=RR)]
    sessions = plan_sessions(entries)
    assert [(s.index, s.form, [e.name for e in s.invoices]) for s in sessions] == [
        (1, FA3, ["i000000.xml", "i000002.xml"]),
        (2, RR, ["i000001.xml", "i000004.xml"]),
        (3, FA2, ["i000003.xml"]),
    ]
    assert all(s.state is SessionState.PLANNED for s in sessions)


def test_at_most_10_000_invoices_per_session() -> None:
    sessions = plan_sessions(_entry(i, 100) for i in range(25_001))
    assert [len(s.invoices) for s in sessions] == [10_000, 10_000, 5_001]
    assert sessions[2].invoices[-1].name == "i025000.xml"


def test_the_context_max_invoices_lowers_the_split() -> None:
    limits = SessionLimits.from_context(
        {"maxInvoices": 300, "maxInvoiceSizeInMB": 1, "maxInvoiceWithAttachmentSizeInMB": 3}
    )
    assert [len(s.invoices) for s in plan_sessions((_entry(i) for i in range(700)), limits)] == [300, 300, 100]


def test_the_5_gb_archive_limit_splits_sessions() -> None:
    # 999,000-byte invoices: the default 50 x 99,999,984 B budget holds 5004 of them by the stored-size bound.
    sessions = plan_sessions(_entry(i, 999_000) for i in range(6000))
    first = len(sessions[0].invoices)
    assert first < 6000
    budget = SessionLimits().archive_budget
    assert budget <= 5_000_000_000
    bound = sum(zip_size_bound(e.name, e.size) for e in sessions[0].invoices)
    assert bound <= budget < bound + zip_size_bound("i000000.xml", 999_000) * 2
    assert sum(len(s.invoices) for s in sessions) == 6000


def test_the_50_part_limit_splits_sessions_with_small_parts() -> None:
    limits = SessionLimits(part_size=10_000)  # 50 parts x 10 kB = 500 kB per session
    sessions = plan_sessions((_entry(i, 9_000) for i in range(120)), limits)
    assert len(sessions) > 2
    for s in sessions:
        assert sum(zip_size_bound(e.name, e.size) for e in s.invoices) <= 50 * 10_000


def test_invoices_above_the_context_size_limits_are_all_reported() -> None:
    limits = SessionLimits(max_invoice_size=2_000, max_invoice_with_attachment_size=5_000)
    big = _entry(1, 2_001)
    attached = attrs.evolve(_entry(2, 4_000), has_attachment=True)
    too_big_attached = attrs.evolve(_entry(3, 5_001), has_attachment=True)
    with pytest.raises(InvoiceError) as info:
        plan_sessions([_entry(0), big, attached, too_big_attached], limits)
    assert [(p.file, p.rule) for p in info.value.problems] == [("i000001.xml", "size"), ("i000003.xml", "size")]
    assert "2,001 bytes" in str(info.value)


def test_context_limits_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="maxInvoices"):
        SessionLimits.from_context({"maxInvoiceSizeInMB": 1, "maxInvoiceWithAttachmentSizeInMB": 3})
    with pytest.raises(ConfigurationError, match="cannot send batch invoices"):
        SessionLimits.from_context({"maxInvoices": 0, "maxInvoiceSizeInMB": 1, "maxInvoiceWithAttachmentSizeInMB": 3})
    limits = SessionLimits.from_context(
        {"maxInvoices": 50_000, "maxInvoiceSizeInMB": 2, "maxInvoiceWithAttachmentSizeInMB": 5}
    )
    assert (limits.max_invoices, limits.max_invoice_size, limits.max_invoice_with_attachment_size) == (
        10_000,
        2_000_000,
        5_000_000,
    )


# ---- the plan file -------------------------------------------------------------------------------------------


def test_plan_json_round_trips_with_outcomes_and_dates() -> None:
    (session,) = plan_sessions([_entry(0), _entry(1)])
    done = attrs.evolve(_entry(0), outcome=InvoiceOutcome(OutcomeStatus.ACCEPTED, "5265877635-20260101-ABC-12"))
    session = attrs.evolve(
        session,
        state=SessionState.OPENED,
        reference_number="20260101-SB-1234567890-ABCDEF1234-01",
        upload_deadline=dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC),
        invoices=(done, session.invoices[1]),
    )
    plan = BatchPlan((session,), created=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), part_size=1000)
    again = BatchPlan.from_json(plan.to_json())
    assert again == plan
    assert again.sessions[0].upload_deadline == dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)


def test_a_memo_writes_the_same_plan_and_never_a_stale_invoice_list() -> None:
    # The engine rewrites the plan after each part; the memo keeps each session's invoice list serialised, and
    # must serialise it again once the session holds a new list (results arrived).
    first, second = plan_sessions([_entry(i) for i in range(3)], SessionLimits(max_invoices=2))
    plan = BatchPlan((first, second), created=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), part_size=1000)
    memo = InvoicesJsonMemo()
    assert "".join(plan.json_chunks(memo)) == plan.to_json()
    kept = memo.text(first.index, first.invoices)
    assert memo.text(first.index, first.invoices) is kept

    moved = plan.with_session(attrs.evolve(first, state=SessionState.OPENED))
    assert "".join(moved.json_chunks(memo)) == moved.to_json()
    assert memo.text(first.index, first.invoices) is kept  # the same list: not serialised again

    done = attrs.evolve(first.invoices[0], outcome=InvoiceOutcome(OutcomeStatus.ACCEPTED, "5265877635-20260101-A-1"))
    results = moved.with_session(attrs.evolve(first, invoices=(done, first.invoices[1])))
    assert "".join(results.json_chunks(memo)) == results.to_json()
    assert BatchPlan.from_json("".join(results.json_chunks(memo))).sessions[0].invoices[0].outcome == done.outcome


_TEXT = st.one_of(st.none(), st.text(st.characters(blacklist_categories=["Cs"]), max_size=12))


@given(
    st.lists(
        st.tuples(
            st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=12),
            _TEXT,
            _TEXT,
            _TEXT,
            st.integers(0, 10**12),
            st.booleans(),
            st.sampled_from([FA3, FA2, RR]),
            st.one_of(st.none(), st.sampled_from(list(OutcomeStatus))),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_plan_json_is_canonical_and_round_trips_any_invoice_text(
    rows: list[tuple[str, str | None, str | None, str | None, int, bool, FormKey, OutcomeStatus | None]],
) -> None:
    # Invoice entries without an outcome are written by hand (fast); the text must be what json.dumps gives
    # (sorted keys, no spaces, non-ASCII kept) and read back to the same entries, whatever the strings hold.
    invoices = tuple(
        InvoiceEntry(
            name,
            f"h{i}",
            size,
            form,
            number,
            nip,
            attachment,
            source,
            None if status is None else InvoiceOutcome(status, number, 440, nip, (name,)),
        )
        for i, (name, number, nip, source, size, attachment, form, status) in enumerate(rows)
    )
    plan = BatchPlan((SessionPlan(0, FA3, invoices),), created=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    text = "".join(plan.json_chunks(InvoicesJsonMemo()))
    assert text == json.dumps(json.loads(text), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    assert BatchPlan.from_json(text) == plan


@pytest.mark.parametrize("text", ["not json", '{"version": 99}', "[]", '{"version": 1, "sessions": "x"}'])
def test_bad_plan_files_raise_configuration_error(text: str) -> None:
    with pytest.raises(ConfigurationError, match="plan"):
        BatchPlan.from_json(text)


# ---- prepare: round trip -------------------------------------------------------------------------------------


def _key(session: SessionPlan) -> SessionKey:
    assert session.encryption is not None
    aes = rsa_oaep_decrypt(PRIVATE, b64decode(session.encryption.encrypted_symmetric_key))
    return SessionKey(aes, b64decode(session.encryption.initialization_vector))


def _archive(state: Path, session: SessionPlan) -> bytes:
    key = _key(session)
    return b"".join(decrypt_cbc(key, (state / p.file).read_bytes()) for p in session.parts)


def _check_spool(state: Path, plan: BatchPlan, part_size: int) -> dict[str, bytes]:
    """Check every claim the plan makes about the spool; return the files of all archives."""
    files: dict[str, bytes] = {}
    spooled = set()
    for s in plan.sessions:
        assert s.state is SessionState.PREPARED
        for p in s.parts:
            raw = (state / p.file).read_bytes()
            spooled.add(p.file)
            assert len(raw) == p.size <= part_size + 16
            assert p.hash == b64(hashlib.sha256(raw).digest())
            assert stat.S_IMODE((state / p.file).stat().st_mode) == 0o600
            assert not p.uploaded
        archive = _archive(state, s)
        assert len(archive) == s.file_size
        assert b64(hashlib.sha256(archive).digest()) == s.file_hash
        with zipfile.ZipFile(io.BytesIO(archive)) as zf:
            assert zf.namelist() == [e.name for e in s.invoices]
            for e in s.invoices:
                data = zf.read(e.name)
                assert b64(hashlib.sha256(data).digest()) == e.sha256
                files[e.name] = data
    # Only ciphertext and the plan: no plaintext archive, no temporary files left behind.
    assert {p.name for p in state.iterdir()} == spooled | {PLAN_FILE}
    assert stat.S_IMODE((state / PLAN_FILE).stat().st_mode) == 0o600
    assert load_plan(state) == plan
    assert (state / PLAN_FILE).read_text(encoding="utf-8") == plan.to_json()
    return files


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    picks=st.lists(st.integers(0, len(POOL) - 1), min_size=1, max_size=25, unique=True),
    part_size=st.integers(100, 40_000),  # 50 parts must hold one ~4 kB invoice
    max_invoices=st.integers(1, 30),
)
def test_decrypted_parts_give_back_the_inputs(
    tmp_path_factory: pytest.TempPathFactory, picks: list[int], part_size: int, max_invoices: int
) -> None:
    state = tmp_path_factory.mktemp("state")
    inputs = [POOL[i] for i in picks]
    plan = prepare_batch_sync(
        inputs,
        public_key=PRIVATE.public_key(),
        state_dir=state,
        part_size=part_size,
        validate=False,
        limits=SessionLimits(max_invoices=max_invoices),
    )
    assert _check_spool(state, plan, part_size) == dict(inputs)
    assert [e.name for s in plan.sessions for e in s.invoices] == [n for n, _ in inputs]
    assert all(len(s.invoices) <= max_invoices for s in plan.sessions)


def test_validated_prepare_records_invoice_fields_and_the_default_part_size(tmp_path: Path) -> None:
    cert = _mf_key()
    plan = prepare_batch_sync(POOL[:5], public_key=cert, state_dir=tmp_path / "state")
    (session,) = plan.sessions
    assert session.form == FA3
    assert session.encryption is not None
    assert session.encryption.public_key_id == "test-key-id"
    assert len(b64decode(session.encryption.initialization_vector)) == 16
    first = session.invoices[0]
    assert first.seller_nip == SELLER
    assert first.invoice_number is not None
    assert first.invoice_number in POOL[0][1].decode()
    assert len(session.parts) == 1
    assert plan.part_size == 99_999_984
    assert _check_spool(tmp_path / "state", plan, 99_999_984) == dict(POOL[:5])
    body = session.batch_file()
    assert body["fileParts"] == [
        {"ordinalNumber": 1, "fileSize": session.parts[0].size, "fileHash": session.parts[0].hash}
    ]
    assert body["compressionType"] == "Zip"
    request = session.open_request()
    assert request == {
        "formCode": {"systemCode": "FA (3)", "schemaVersion": "1-0E", "value": "FA"},
        "batchFile": body,
        "encryption": {
            "encryptedSymmetricKey": session.encryption.encrypted_symmetric_key,
            "initializationVector": session.encryption.initialization_vector,
            "publicKeyId": "test-key-id",
        },
        "offlineMode": False,
    }
    with pytest.raises(ValueError, match="not prepared"):
        plan_sessions([_entry(0)])[0].open_request()


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_parallel_validation_keeps_input_order_and_finds_the_invalid_one(tmp_path: Path, executor: str) -> None:
    inputs = [*POOL[:9], _broken(), *POOL[9:14]]
    plan = prepare_batch_sync(
        inputs, public_key=PRIVATE.public_key(), state_dir=tmp_path, workers=2, executor=executor,  # type: ignore[arg-type]
        on_invalid="skip",
    )  # fmt: skip
    assert [e.name for e in plan.sessions[0].invoices] == [n for n, _ in POOL[:14]]
    assert {p.file for p in plan.skipped} == {"broken.xml"}
    assert plan.sessions[0].invoices[3].seller_nip == SELLER


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_a_file_unreadable_when_its_turn_comes_stops_the_batch_in_order(tmp_path: Path, executor: str) -> None:
    # Selection accepts the file; the pool worker that reads it refuses its size. The caller gets that file's
    # own error, typed and named, and nothing stays spooled.
    source = tmp_path / "in"
    source.mkdir()
    for name, data in POOL[:20]:
        (source / name).write_bytes(data)
    huge = source / f"{POOL[9][0][:-4]}-huge.xml"
    with huge.open("wb") as handle:
        handle.truncate(4 * 1024**3)  # sparse
    seen: list[str] = []
    with pytest.raises(ConfigurationError, match=r"-huge\.xml: file is 4,294,967,296 bytes.*not read") as info:
        prepare_batch_sync(
            str(source), public_key=PRIVATE.public_key(), state_dir=tmp_path / "state", workers=2,
            executor=executor, on_session=lambda s: seen.append(s.index),  # type: ignore[arg-type]
        )  # fmt: skip
    assert getattr(info.value, "rule", None) == "size"
    assert seen == []
    assert list((tmp_path / "state").iterdir()) == []


def test_the_plan_never_holds_the_aes_key(tmp_path: Path) -> None:
    plan = prepare_batch_sync(POOL[:2], public_key=PRIVATE.public_key(), state_dir=tmp_path, validate=False)
    key = _key(plan.sessions[0])
    text = (tmp_path / PLAN_FILE).read_bytes()
    assert b64(key.key).encode() not in text
    assert key.key.hex().encode() not in text


def test_form_codes_go_to_separate_sessions(tmp_path: Path) -> None:
    rr = (SAMPLES / "invoices" / "invoice-template-fa-rr-1.xml").read_bytes()
    inputs = [POOL[0], ("rr.xml", rr), POOL[1]]
    plan = prepare_batch_sync(inputs, public_key=PRIVATE.public_key(), state_dir=tmp_path, validate=False)
    assert [(s.form, [e.name for e in s.invoices]) for s in plan.sessions] == [
        (FA3, [POOL[0][0], POOL[1][0]]),
        (RR, ["rr.xml"]),
    ]
    _check_spool(tmp_path, plan, 99_999_984)


# ---- invalid inputs and duplicates ---------------------------------------------------------------------------


def _broken() -> tuple[str, bytes]:
    _, data = POOL[7]
    return "broken.xml", data.replace(b"<P_2>", b"<P_2x>", 1).replace(b"</P_2>", b"</P_2x>", 1)


def test_an_invalid_invoice_stops_the_batch_and_leaves_nothing_to_send(tmp_path: Path) -> None:
    state = tmp_path / "state"
    sessions: list[SessionPlan] = []
    inputs = [*POOL[:20], _broken(), *POOL[20:25]]
    with pytest.raises(InvoiceError) as info:
        prepare_batch_sync(
            inputs, public_key=PRIVATE.public_key(), state_dir=state, part_size=2_000, on_session=sessions.append,
            limits=SessionLimits(max_invoices=5),
        )  # fmt: skip
    assert [p.file for p in info.value.problems] == ["broken.xml"]
    assert "broken.xml" in str(info.value)
    assert sessions  # earlier sessions had been spooled ...
    assert sorted(p.name for p in state.iterdir()) == []  # ... and were deleted


def test_skip_leaves_invalid_and_duplicate_invoices_out_and_reports_them(tmp_path: Path) -> None:
    inputs = [
        POOL[0],
        _broken(),
        ("copy.xml", POOL[0][1]),  # identical bytes under another name
        (POOL[1][0], POOL[2][1]),  # another invoice under POOL[1]'s name ...
        POOL[1],  # ... so the real POOL[1] comes second: same name
        POOL[3],
    ]
    plan = prepare_batch_sync(inputs, public_key=PRIVATE.public_key(), state_dir=tmp_path, on_invalid="skip")
    assert [e.name for e in plan.sessions[0].invoices] == [POOL[0][0], POOL[1][0], POOL[3][0]]
    assert [(p.file, p.rule) for p in plan.skipped if p.rule != "xsd"] == [
        ("copy.xml", "duplicate"),
        (POOL[1][0], "duplicate-name"),
    ]
    assert {p.file for p in plan.skipped if p.rule == "xsd"} == {"broken.xml"}
    assert POOL[0][0] in next(p.reason for p in plan.skipped if p.file == "copy.xml")
    assert load_plan(tmp_path).skipped == plan.skipped


def test_pef_invoices_are_refused_in_batch(tmp_path: Path) -> None:
    pef = (SAMPLES / "invoices" / "invoice-template-fa-3-pef.xml").read_bytes()
    with pytest.raises(InvoiceError, match=r"PEF \(3\) cannot be sent in a batch session") as info:
        prepare_batch_sync([("pef.xml", pef)], public_key=PRIVATE.public_key(), state_dir=tmp_path, validate=False)
    assert info.value.problems[0].rule == "form"


def test_duplicates_stop_the_batch_by_default(tmp_path: Path) -> None:
    with pytest.raises(InvoiceError, match="identical to"):
        prepare_batch_sync(
            [POOL[0], ("again.xml", POOL[0][1])], public_key=PRIVATE.public_key(), state_dir=tmp_path, validate=False
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_all_invalid_or_no_input_raises(tmp_path: Path) -> None:
    with pytest.raises(InvoiceError, match=r"broken\.xml"):
        prepare_batch_sync([_broken()], public_key=PRIVATE.public_key(), state_dir=tmp_path, on_invalid="skip")
    with pytest.raises(InvoiceError, match="no invoices"):
        prepare_batch_sync([], public_key=PRIVATE.public_key(), state_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_state_dir_holding_a_batch_is_refused(tmp_path: Path) -> None:
    prepare_batch_sync(POOL[:1], public_key=PRIVATE.public_key(), state_dir=tmp_path, validate=False)
    with pytest.raises(ConfigurationError, match="already holds a batch plan"):
        prepare_batch_sync(POOL[1:2], public_key=PRIVATE.public_key(), state_dir=tmp_path, validate=False)
    (tmp_path / PLAN_FILE).unlink()  # as if a prepare had been killed before writing its plan
    with pytest.raises(ConfigurationError, match="part files but no plan"):
        prepare_batch_sync(POOL[1:2], public_key=PRIVATE.public_key(), state_dir=tmp_path, validate=False)


@pytest.mark.parametrize("part_size", [15, 99_999_985])
def test_bad_part_sizes_are_configuration_errors(tmp_path: Path, part_size: int) -> None:
    with pytest.raises(ConfigurationError, match="part_size"):
        prepare_batch_sync(POOL[:1], public_key=PRIVATE.public_key(), state_dir=tmp_path, part_size=part_size)


# ---- inputs --------------------------------------------------------------------------------------------------


def test_paths_directories_and_globs_are_read_lazily_with_their_source(tmp_path: Path) -> None:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    for name, data in POOL[:3]:
        (src / name).write_bytes(data)
    (src / "sub" / POOL[3][0]).write_bytes(POOL[3][1])
    (src / "notes.txt").write_text("not an invoice")
    items = iter_inputs([src / POOL[0][0], src / "sub", str(src / "*.xml")])
    first = next(items)
    assert first == InvoiceInput(POOL[0][0], POOL[0][1], str(src / POOL[0][0]))
    (src / POOL[2][0]).write_bytes(b"changed")  # not read yet: the glob reads it when its turn comes
    rest = list(items)
    assert [i.name for i in rest] == [POOL[3][0], POOL[0][0], POOL[1][0], POOL[2][0]]
    assert rest[-1].data == b"changed"
    with pytest.raises(ConfigurationError, match="no such file"):
        list(iter_inputs(src / "missing-*.xml"))


def test_unnamed_bytes_get_numbered_names_and_bad_items_are_refused() -> None:
    assert [i.name for i in iter_inputs([b"<a/>", ("x.xml", b"<b/>"), b"<c/>"])] == [
        "invoice-00001.xml",
        "x.xml",
        "invoice-00002.xml",
    ]
    with pytest.raises(ConfigurationError, match="int"):
        list(iter_inputs([42]))  # type: ignore[list-item]


def test_prepare_records_the_source_path(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.xml").write_bytes(POOL[0][1])
    plan = prepare_batch_sync(src, public_key=PRIVATE.public_key(), state_dir=tmp_path / "state")
    assert plan.sessions[0].invoices[0].source == str(src / "a.xml")


@pytest.mark.anyio
async def test_async_prepare_takes_an_async_iterable_and_awaits_on_session(tmp_path: Path) -> None:
    async def source() -> AsyncIterator[tuple[str, bytes]]:
        for item in POOL[:6]:
            yield item

    seen: list[int] = []

    async def on_session(session: SessionPlan) -> None:
        seen.append(session.index)

    plan = await prepare_batch(
        source(), public_key=PRIVATE.public_key(), state_dir=tmp_path, limits=SessionLimits(max_invoices=4),
        on_session=on_session,
    )  # fmt: skip
    assert seen == [1, 2]
    assert _check_spool(tmp_path, plan, 99_999_984) == dict(POOL[:6])


@pytest.mark.anyio
async def test_cancelling_async_prepare_stops_the_worker_and_leaves_nothing(tmp_path: Path) -> None:
    pulled = 0
    many = list(InvoiceFactory(SELLER, seed=6, size_kb=4).iter(200))  # well past the pool's read-ahead

    async def source() -> AsyncIterator[tuple[str, bytes]]:
        nonlocal pulled
        for item in many:
            pulled += 1
            if pulled == 5:
                scope.cancel()
            yield item

    with anyio.CancelScope() as scope:
        await prepare_batch(source(), public_key=PRIVATE.public_key(), state_dir=tmp_path, validate=False)
    assert scope.cancelled_caught
    assert pulled < len(many)
    assert not any(tmp_path.iterdir())  # noqa: ASYNC240 - a test's check after the work is done


def _mf_key() -> MfPublicKey:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Ministerstwo Finansów (test)")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(PRIVATE.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(PRIVATE, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    return MfPublicKey(der, now, now, ("SymmetricKeyEncryption",), "test-key-id")


# ---- the command line ----------------------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSEF_")}
    return subprocess.run(
        [sys.executable, "-m", "ksef_async.cli", "prepare", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def _write_inputs(directory: Path, items: list[tuple[str, bytes]]) -> None:
    directory.mkdir()
    for name, data in items:
        (directory / name).write_bytes(data)


def test_cli_prepare_with_a_certificate_file_needs_no_network(tmp_path: Path) -> None:
    cert = _mf_key()
    pem = tmp_path / "mf.pem"
    pem.write_bytes(x509.load_der_x509_certificate(cert.certificate_der).public_bytes(serialization.Encoding.PEM))
    _write_inputs(tmp_path / "in", POOL[:6])
    out = tmp_path / "out"
    result = _cli(str(tmp_path / "in"), "--out", str(out), "--public-key-cert", str(pem), "--part-size", "5000")
    assert result.returncode == 0, result.stderr
    plan = load_plan(out)
    assert f"6 invoices, {sum(len(d) for _, d in POOL[:6]):,} bytes in" in result.stdout
    assert f"{len(plan.sessions[0].parts)} part(s)" in result.stdout
    assert "MB/s" in result.stdout
    spki = PRIVATE.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert plan.sessions[0].encryption is not None
    assert plan.sessions[0].encryption.public_key_id == b64(hashlib.sha256(spki).digest())
    assert _check_spool(out, plan, 5000) == dict(POOL[:6])


def test_cli_prepare_stops_on_an_invalid_invoice_and_leaves_nothing(tmp_path: Path) -> None:
    cert = tmp_path / "mf.der"
    cert.write_bytes(_mf_key().certificate_der)
    _write_inputs(tmp_path / "in", [POOL[0], _broken()])
    result = _cli(str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--public-key-cert", str(cert))
    assert result.returncode == 1
    assert "broken.xml" in result.stderr
    assert not any((tmp_path / "out").iterdir())
    usage = _cli(str(tmp_path / "in"), "--out", str(tmp_path / "out2"))
    assert usage.returncode == 2
    assert "--public-key-cert" in usage.stderr


def test_cli_prepare_fetches_the_key_from_base_url(tmp_path: Path) -> None:
    with serve_in_thread(KsefSimulator(contexts=[(SELLER, "token-1")], seed=1, strict_contract=True)) as sim:
        _write_inputs(tmp_path / "in", POOL[:3])
        out = tmp_path / "out"
        result = _cli(str(tmp_path / "in"), "--out", str(out), "--base-url", sim.base_url, "--no-validate")
        assert result.returncode == 0, result.stderr
        mf = sim.runtime.keys.current("SymmetricKeyEncryption")
        assert sim.contract_violations == []
    (session,) = load_plan(out).sessions
    assert session.encryption is not None
    assert session.encryption.public_key_id == mf.public_key_id
    aes = rsa_oaep_decrypt(mf.private_key, b64decode(session.encryption.encrypted_symmetric_key))
    key = SessionKey(aes, b64decode(session.encryption.initialization_vector))
    archive = decrypt_cbc(key, (out / session.parts[0].file).read_bytes())
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        assert zf.namelist() == [n for n, _ in POOL[:3]]
