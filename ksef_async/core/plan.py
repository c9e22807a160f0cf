"""The batch plan: sessions, parts, hashes and per-invoice outcomes as attrs values, JSON round-trip, no I/O.

The plan is the resume record of a batch send. It lives in the state directory next to the ciphertext spool
(``<state_dir>/plan.json``) and is rewritten atomically after every step by `ksef_async.batch`.

Secret handling: the plan never holds the AES session key. It holds what opening the session and uploading
need and nothing that decrypts the spool: the RSA-OAEP-wrapped key (``encryptedSymmetricKey``, which only the
Ministry's private key opens), the IV (not secret) and ``publicKeyId``. The spool is ciphertext. Resume therefore
uploads existing parts as they are; if a part file is lost or the upload window has passed, the invoices that
have no KSeF number are prepared again under a fresh key, as a new session.

Sessions are split by `plan_sessions` (or incrementally by `SessionPacker`, which it folds): one form code per
session; at most ``max_invoices`` invoices (10,000: batch status 420 beyond it); an archive of at most
``min(max_archive_size, max_parts * part_size)`` bytes. The spec's ``BatchFileInfo`` fixes the size limits:
``fileSize`` maximum 5,000,000,000 ("Maksymalny rozmiar paczki to 5GB") and ``fileParts`` maxItems 50, each part
at most 100 MB before encryption ("Maksymalny dozwolony rozmiar części przed zaszyfrowaniem to 100MB"); the
archive is split binary-wise into parts of exactly ``part_size`` bytes (the last one shorter), so it needs
``ceil(size / part_size)`` parts, and the archive budget keeps that within ``max_parts``.

What an invoice costs in the archive: the batch pipeline compresses each invoice *before* it packs it and passes
the entry's real archive bytes (`ksef_async.core.zipstream.DeflatedEntry.archive_size`: headers, name, compressed
data, central directory record), so sessions are packed by compressed bytes and parts fill to ``part_size``.
Without that cost (`plan_sessions` on bare entries) the bound before compression,
`ksef_async.core.zipstream.zip_size_bound`, is used: an entry is never larger than its stored form, so either
way no session is found too big after zipping.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final

import attrs
import cattrs
from cattrs.preconf.json import make_converter

from ksef_async.core.batch_limits import (
    MAX_ARCHIVE_SIZE,
    MAX_INVOICES,
    MAX_PART_PLAIN_SIZE,
    MAX_PARTS,
    part_size_validator,
)
from ksef_async.core.zipstream import END_OVERHEAD, zip_size_bound
from ksef_async.errors import ConfigurationError, InvoiceError, InvoiceProblem

if TYPE_CHECKING:  # the archive pipeline (and its cryptography) stays out of a pool worker's imports
    from ksef_async.core.pipeline import PreparedArchive

__all__ = [
    "MAX_ARCHIVE_SIZE",
    "MAX_INVOICES",
    "MAX_PARTS",
    "PLAN_VERSION",
    "BatchPlan",
    "EncryptionRecord",
    "FormKey",
    "InvoiceEntry",
    "InvoiceOutcome",
    "InvoicesJsonMemo",
    "OutcomeStatus",
    "PartRecord",
    "SessionLimits",
    "SessionPacker",
    "SessionPlan",
    "SessionState",
    "entry_json",
    "plan_sessions",
]

PLAN_VERSION: Final = 1
_MB: Final = 1_000_000  # KSeF sizes are SI


@attrs.frozen(cache_hash=True)  # a dict key once per invoice while packing sessions
class FormKey:
    """A session ``formCode`` (``systemCode``, ``schemaVersion``, ``value``); sessions never mix two."""

    system_code: str
    schema_version: str
    value: str

    def to_json(self) -> dict[str, str]:
        """Return the spec's ``FormCode`` object."""
        return {"systemCode": self.system_code, "schemaVersion": self.schema_version, "value": self.value}


class SessionState(enum.Enum):
    """Where a session stands; the plan is saved after each change."""

    PLANNED = "planned"  # invoices assigned, nothing written
    PREPARED = "prepared"  # parts spooled and hashed; not opened
    OPENED = "opened"  # POST /sessions/batch answered: reference number and upload window known
    UPLOADING = "uploading"  # some parts uploaded
    CLOSED = "closed"  # POST .../close answered 204 (or status shows it closed)
    PROCESSING = "processing"  # status 150
    DONE = "done"  # status 200 and per-invoice results fetched
    FAILED = "failed"  # a failure status (4xx/5xx) or the window passed


class OutcomeStatus(enum.Enum):
    """What happened to one invoice."""

    ACCEPTED = "accepted"  # has a KSeF number
    DUPLICATE = "duplicate"  # KSeF already had it (code 440): ksef_number is the original's
    REJECTED = "rejected"  # KSeF answered a failure code
    INVALID = "invalid"  # left out before sending (validation, size, duplicate input)


@attrs.frozen
class InvoiceOutcome:
    """The result slot of one invoice, filled when known."""

    status: OutcomeStatus
    ksef_number: str | None = None
    code: int | None = None
    description: str | None = None
    details: tuple[str, ...] = ()
    reference_number: str | None = None  # the invoice's own reference number in the session
    invoicing_mode: str | None = None  # ``invoicingMode`` of the result (Online | Offline), when KSeF gave it


@attrs.frozen
class InvoiceEntry:
    """One invoice of the batch.

    Attributes:
        name: Its file name inside the archive (``invoiceFileName`` in the results).
        sha256: Base64 SHA-256 of its exact bytes (``invoiceHash`` in the results).
        size: Its size in bytes.
        form: Its form code.
        invoice_number: P_2 (or the form's number field), when known.
        seller_nip: Podmiot1 NIP, when known.
        has_attachment: Whether it carries an attachment (a larger size limit applies).
        source: Where its bytes came from (a file path), so a resume can read it again; ``None`` for bytes
            given in memory.
        outcome: The result, once known.
    """

    name: str
    sha256: str
    size: int
    form: FormKey
    invoice_number: str | None = None
    seller_nip: str | None = None
    has_attachment: bool = False
    source: str | None = None
    outcome: InvoiceOutcome | None = None


@attrs.frozen
class PartRecord:
    """One encrypted part: its declaration and its spool file.

    Attributes:
        ordinal: ``ordinalNumber`` (from 1).
        plain_size: Plaintext archive bytes in the part.
        size: ``fileSize`` (ciphertext bytes, the spool file's size).
        hash: ``fileHash`` (Base64 SHA-256 of the ciphertext).
        file: The spool file's name, relative to the state directory.
        uploaded: Whether the upload was acknowledged (2xx).
    """

    ordinal: int
    plain_size: int
    size: int
    hash: str
    file: str
    uploaded: bool = False


@attrs.frozen
class EncryptionRecord:
    """The spec's ``encryption`` object, ready to send; no secret in it (see the module docstring)."""

    encrypted_symmetric_key: str
    initialization_vector: str
    public_key_id: str | None = None

    def to_json(self) -> dict[str, str]:
        """Return ``EncryptionInfo`` as the spec spells it."""
        out = {
            "encryptedSymmetricKey": self.encrypted_symmetric_key,
            "initializationVector": self.initialization_vector,
        }
        if self.public_key_id is not None:
            out["publicKeyId"] = self.public_key_id
        return out


@attrs.frozen
class SessionPlan:
    """One batch session of the plan.

    Attributes:
        index: Position in the plan (from 1); spool files of this session start with ``s{index:03d}-``.
        form: The session's ``formCode``.
        invoices: Its invoices in archive order.
        state: See `SessionState`.
        compression_type: ``batchFile.compressionType`` (``"Zip"``).
        file_size: ``batchFile.fileSize`` (plaintext archive), once prepared.
        file_hash: ``batchFile.fileHash``, once prepared.
        parts: The encrypted parts, once prepared.
        encryption: The ``encryption`` object, once prepared.
        reference_number: The session's reference number, once opened.
        upload_deadline: When the upload window closes (UTC), once opened.
        status_code: Last session status code seen.
        status_description: Last session status description seen.
        offline_mode: Open the session with ``offlineMode`` true: its invoices were issued offline. Recorded in
            the plan so that a resumed send reopens in the same mode.
    """

    index: int
    form: FormKey
    invoices: tuple[InvoiceEntry, ...]
    state: SessionState = SessionState.PLANNED
    compression_type: str = "Zip"
    file_size: int | None = None
    file_hash: str | None = None
    parts: tuple[PartRecord, ...] = ()
    encryption: EncryptionRecord | None = None
    reference_number: str | None = None
    upload_deadline: dt.datetime | None = None
    status_code: int | None = None
    status_description: str | None = None
    offline_mode: bool = False

    def prepared(self, archive: PreparedArchive, files: Sequence[str], encryption: EncryptionRecord) -> SessionPlan:
        """Return this session with its archive, parts and encryption recorded, in state ``PREPARED``."""
        if len(files) != len(archive.parts):
            msg = "one spool file per part is needed"
            raise ValueError(msg)
        parts = tuple(
            PartRecord(p.ordinal, p.plain_size, p.size, p.hash, f) for p, f in zip(archive.parts, files, strict=True)
        )
        return attrs.evolve(
            self,
            state=SessionState.PREPARED,
            file_size=archive.file_size,
            file_hash=archive.file_hash,
            parts=parts,
            encryption=encryption,
        )

    def batch_file(self) -> dict[str, Any]:
        """Return the spec's ``batchFile`` object for POST /sessions/batch.

        Raises:
            ValueError: The session is not prepared yet.
        """
        if self.file_size is None or self.file_hash is None or not self.parts:
            msg = f"session {self.index} is not prepared"
            raise ValueError(msg)
        return {
            "fileSize": self.file_size,
            "fileHash": self.file_hash,
            "compressionType": self.compression_type,
            "fileParts": [{"ordinalNumber": p.ordinal, "fileSize": p.size, "fileHash": p.hash} for p in self.parts],
        }

    def open_request(self, *, offline_mode: bool | None = None) -> dict[str, Any]:
        """Return the body of POST /sessions/batch (``OpenBatchSessionRequest``) for this prepared session.

        ``offlineMode`` is ``offline_mode`` when given, else the session's recorded `offline_mode`.

        Raises:
            ValueError: The session is not prepared yet.
        """
        if self.encryption is None:
            msg = f"session {self.index} is not prepared"
            raise ValueError(msg)
        return {
            "formCode": self.form.to_json(),
            "batchFile": self.batch_file(),
            "encryption": self.encryption.to_json(),
            "offlineMode": self.offline_mode if offline_mode is None else offline_mode,
        }


@attrs.frozen
class SessionLimits:
    """The limits that split invoices into sessions.

    Defaults are KSeF's fixed limits; the ``max_invoices`` and size limits of a context come from
    ``GET /limits/context`` (``batchSession``): see `from_context`.

    Attributes:
        max_invoices: Invoices per session (``maxInvoices``).
        max_archive_size: Plaintext archive bytes per session (``batchFile.fileSize`` maximum).
        max_parts: Parts per session.
        part_size: Largest plaintext part (``--part-size``).
        max_invoice_size: Largest invoice without attachment, bytes (``maxInvoiceSizeInMB``).
        max_invoice_with_attachment_size: Largest invoice with one (``maxInvoiceWithAttachmentSizeInMB``).
    """

    max_invoices: int = attrs.field(default=MAX_INVOICES, validator=attrs.validators.ge(1))
    max_archive_size: int = attrs.field(default=MAX_ARCHIVE_SIZE, validator=attrs.validators.ge(1))
    max_parts: int = attrs.field(default=MAX_PARTS, validator=attrs.validators.ge(1))
    part_size: int = attrs.field(default=MAX_PART_PLAIN_SIZE, validator=part_size_validator)
    max_invoice_size: int = attrs.field(default=1_000_000, validator=attrs.validators.ge(0))
    max_invoice_with_attachment_size: int = attrs.field(default=3_000_000, validator=attrs.validators.ge(0))

    @classmethod
    def from_context(cls, batch_session: dict[str, Any], *, part_size: int = MAX_PART_PLAIN_SIZE) -> SessionLimits:
        """Build from the ``batchSession`` object of ``GET /limits/context`` (KSeF's fixed limits still apply).

        Raises:
            ConfigurationError: A field is missing or not an integer.
        """
        try:
            max_invoices = int(batch_session["maxInvoices"])
            size_mb = int(batch_session["maxInvoiceSizeInMB"])
            with_att_mb = int(batch_session["maxInvoiceWithAttachmentSizeInMB"])
        except (KeyError, TypeError, ValueError) as exc:
            msg = f"batchSession limits lack or mistype a field: {exc}"
            raise ConfigurationError(msg) from exc
        if max_invoices < 1:
            msg = f"this context's batchSession.maxInvoices is {max_invoices}: it cannot send batch invoices"
            raise ConfigurationError(msg)
        return cls(
            max_invoices=min(max_invoices, MAX_INVOICES),
            part_size=part_size,
            max_invoice_size=size_mb * _MB,
            max_invoice_with_attachment_size=with_att_mb * _MB,
        )

    @property
    def archive_budget(self) -> int:
        """Plaintext archive bytes a session may hold: the archive limit and the parts x part size limit."""
        return min(self.max_archive_size, self.max_parts * self.part_size)

    def size_problem(self, entry: InvoiceEntry) -> InvoiceProblem | None:
        """Return why ``entry`` is too large for these limits, or ``None``."""
        limit = self.max_invoice_with_attachment_size if entry.has_attachment else self.max_invoice_size
        if entry.size <= limit:
            return None
        kind = "with an attachment" if entry.has_attachment else "without an attachment"
        return InvoiceProblem(
            entry.name, f"invoice is {entry.size:,} bytes; this context's limit {kind} is {limit:,} bytes", None, "size"
        )


@attrs.define
class _Open:
    index: int
    form: FormKey
    invoices: list[InvoiceEntry]
    archive_bound: int  # END_OVERHEAD + the cost of every entry: the archive's size, or a bound of it


class SessionPacker:
    """Assign invoices to sessions one at a time (the incremental form of `plan_sessions`).

    One session per form code is open at a time; an invoice that would break a limit closes its form's session
    and starts the next. Sessions are numbered in the order they are started.

    Args:
        limits: The limits to respect.
    """

    def __init__(self, limits: SessionLimits) -> None:
        self.limits = limits
        self._budget = limits.archive_budget
        self._open: dict[FormKey, _Open] = {}
        self._next = 1

    def add(self, entry: InvoiceEntry, cost: int | None = None) -> tuple[int, SessionPlan | None]:
        """Assign ``entry``; return its session index and the session this closed (or ``None``).

        Args:
            entry: The invoice.
            cost: The archive bytes its entry takes (headers, name, compressed data, central directory record;
                `ksef_async.core.zipstream.DeflatedEntry.archive_size`), or an upper bound of them; default the
                bound before compression, `ksef_async.core.zipstream.zip_size_bound`.

        Raises:
            InvoiceError: The invoice is above the size limits, or alone exceeds a session's archive budget.
            ValueError: ``cost`` is negative.
        """
        problem = self.limits.size_problem(entry)
        if cost is not None and cost < 0:
            msg = f"an archive entry cannot cost {cost} bytes"
            raise ValueError(msg)
        bound = zip_size_bound(entry.name, entry.size) if cost is None else cost
        if problem is None and bound + END_OVERHEAD > self._budget:
            problem = InvoiceProblem(
                entry.name,
                f"invoice of {entry.size:,} bytes does not fit one session of {self._budget:,} bytes",
                None,
                "size",
            )
        if problem is not None:
            raise InvoiceError([problem])
        closed: SessionPlan | None = None
        current = self._open.get(entry.form)
        if current is not None and (
            len(current.invoices) >= self.limits.max_invoices or current.archive_bound + bound > self._budget
        ):
            closed = self._close(entry.form)
            current = None
        if current is None:
            current = _Open(self._next, entry.form, [], END_OVERHEAD)
            self._next += 1
            self._open[entry.form] = current
        current.invoices.append(entry)
        current.archive_bound += bound
        return current.index, closed

    def _close(self, form: FormKey) -> SessionPlan:
        done = self._open.pop(form)
        return SessionPlan(done.index, done.form, tuple(done.invoices))

    def finish(self) -> list[SessionPlan]:
        """Close every open session; return them by index."""
        return sorted((self._close(form) for form in list(self._open)), key=lambda s: s.index)


def plan_sessions(invoices: Iterable[InvoiceEntry], limits: SessionLimits | None = None) -> list[SessionPlan]:
    """Split ``invoices`` into sessions (state ``PLANNED``) by form code and ``limits``; keep input order.

    Raises:
        InvoiceError: Invoices above the size limits (all of them are listed).
    """
    packer = SessionPacker(limits or SessionLimits())
    sessions: list[SessionPlan] = []
    problems: list[InvoiceProblem] = []
    for entry in invoices:
        try:
            _, closed = packer.add(entry)
        except InvoiceError as exc:
            problems.extend(exc.problems)
            continue
        if closed is not None:
            sessions.append(closed)
    if problems:
        raise InvoiceError(problems)
    sessions.extend(packer.finish())
    return sorted(sessions, key=lambda s: s.index)


@attrs.frozen
class BatchPlan:
    """A whole batch send: its sessions and the inputs left out.

    Attributes:
        sessions: The sessions, by index.
        skipped: Invoices left out before sending (invalid or duplicate input) and why.
        created: When the plan was made (UTC).
        part_size: The plaintext part size used.
        version: Plan file format version.
    """

    sessions: tuple[SessionPlan, ...]
    skipped: tuple[InvoiceProblem, ...] = ()
    created: dt.datetime | None = None
    part_size: int = MAX_PART_PLAIN_SIZE
    version: int = PLAN_VERSION

    def with_session(self, session: SessionPlan) -> BatchPlan:
        """Return the plan with ``session`` replacing the one of the same index."""
        return attrs.evolve(self, sessions=tuple(session if s.index == session.index else s for s in self.sessions))

    @property
    def invoice_count(self) -> int:
        """Invoices in all sessions."""
        return sum(len(s.invoices) for s in self.sessions)

    def json_chunks(self, memo: InvoicesJsonMemo | None = None) -> Iterator[str]:
        """Serialise to JSON text piece by piece: one session at a time, so a large plan is never built twice.

        The pieces joined are `to_json`; keys are sorted as ``json.dumps(..., sort_keys=True)`` sorts them. With
        ``memo``, a session's invoice list is serialised again only when it is not the list serialised last time.
        """
        head = _CONVERTER.unstructure(attrs.evolve(self, sessions=()))
        memo = memo or InvoicesJsonMemo()
        yield "{"
        for i, key in enumerate(sorted(head)):
            yield f"{',' if i else ''}{_dumps(key)}:"
            if key != "sessions":
                yield _dumps(head[key])
                continue
            yield "["
            for j, session in enumerate(self.sessions):
                yield ("," if j else "") + _session_json(session, memo)
            yield "]"
        yield "}"

    def to_json(self) -> str:
        """Serialise to JSON text (stable key order)."""
        return "".join(self.json_chunks())

    @classmethod
    def from_json(cls, text: str | bytes) -> BatchPlan:
        """Parse a plan written by `to_json`.

        Raises:
            ConfigurationError: The text is not a plan of a supported version.
        """
        try:
            raw = json.loads(text)
        except ValueError as exc:
            msg = f"the plan file is not JSON: {exc}"
            raise ConfigurationError(msg) from exc
        if not isinstance(raw, dict) or raw.get("version") != PLAN_VERSION:
            found = raw.get("version") if isinstance(raw, dict) else None
            msg = f"unsupported plan file version {found!r} (expected {PLAN_VERSION})"
            raise ConfigurationError(msg)
        try:
            return _CONVERTER.structure(raw, cls)
        except (cattrs.BaseValidationError, ValueError, TypeError, KeyError) as exc:
            msg = f"the plan file is malformed: {exc}"
            raise ConfigurationError(msg) from exc


def _dumps(value: Any) -> str:
    # No indent: json's C encoder only runs without one, and a 10,000-invoice plan is rewritten often.
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


class InvoicesJsonMemo:
    """The JSON text of each session's invoice list, kept while the session holds that same list.

    A send rewrites the plan after each uploaded part and state change, but a session's invoices change only
    with their results: serialising 10,000 entries anew each time held the GIL for ~50 ms per write, which
    stalled the event loop that drives the uploads. Not thread-safe: one writer at a time.
    """

    def __init__(self) -> None:
        self._texts: dict[int, tuple[tuple[InvoiceEntry, ...], str]] = {}  # index -> (the list, its text)

    def keep(self, index: int, invoices: tuple[InvoiceEntry, ...], entry_texts: Sequence[str]) -> None:
        """Keep the JSON text of session ``index``'s ``invoices`` from each entry's `entry_json`, in order.

        Prepare renders each entry as it arrives, while its strings are still in the CPU's caches: rendered at the
        end, scattered over the heap, 10,000 entries took ~30 ms of one core after the others had finished.

        Raises:
            ValueError: There is not one text per invoice.
        """
        if len(entry_texts) != len(invoices):
            msg = f"{len(entry_texts)} entry texts for {len(invoices)} invoices"
            raise ValueError(msg)
        self._texts[index] = (invoices, "[" + ",".join(entry_texts) + "]")

    def text(self, index: int, invoices: tuple[InvoiceEntry, ...]) -> str:
        """Return the JSON text of session ``index``'s ``invoices`` (sorted keys, as `BatchPlan.to_json`)."""
        kept = self._texts.get(index)
        if kept is not None and kept[0] is invoices:
            return kept[1]
        text = "[" + ",".join(map(entry_json, invoices)) + "]"
        self._texts[index] = (invoices, text)
        return text


_ENTRY_FIELDS: Final = (
    "name", "sha256", "size", "form", "invoice_number", "seller_nip", "has_attachment", "source", "outcome",
)  # fmt: skip
_string: Final = json.encoder.encode_basestring  # json.dumps's own string encoder with ensure_ascii=False (C)
_form_texts: dict[FormKey, str] = {}


def _optional(value: str | None) -> str:
    return "null" if value is None else _string(value)


def entry_json(entry: InvoiceEntry) -> str:
    """The JSON text of ``entry`` in a plan file (sorted keys, no spaces), written directly while it has no outcome.

    A plan is written when prepare ends, with no outcome anywhere: through cattrs and json.dumps 10,000 entries
    took ~50 ms of one core after every other core had finished; this takes a fifth of that. Entries with an
    outcome take the general path.
    """
    if entry.outcome is not None or type(entry.size) is not int or type(entry.has_attachment) is not bool:
        return _dumps(_CONVERTER.unstructure(entry))
    form = _form_texts.get(entry.form)
    if form is None:
        form = _form_texts[entry.form] = _dumps(_CONVERTER.unstructure(entry.form))
    return (
        f'{{"form":{form},"has_attachment":{"true" if entry.has_attachment else "false"},'
        f'"invoice_number":{_optional(entry.invoice_number)},"name":{_string(entry.name)},"outcome":null,'
        f'"seller_nip":{_optional(entry.seller_nip)},"sha256":{_string(entry.sha256)},"size":{entry.size},'
        f'"source":{_optional(entry.source)}}}'
    )


def _session_json(session: SessionPlan, memo: InvoicesJsonMemo) -> str:
    head = _CONVERTER.unstructure(attrs.evolve(session, invoices=()))
    fields = (
        f"{_dumps(key)}:{memo.text(session.index, session.invoices) if key == 'invoices' else _dumps(head[key])}"
        for key in sorted(head)
    )
    return "{" + ",".join(fields) + "}"


_CONVERTER = make_converter()
# `entry_json` writes these fields by hand: a new field must be added there too.
assert tuple(f.name for f in attrs.fields(InvoiceEntry)) == _ENTRY_FIELDS, "update entry_json"
_CONVERTER.register_unstructure_hook(InvoiceProblem, attrs.asdict)
_CONVERTER.register_structure_hook(InvoiceProblem, lambda raw, _: InvoiceProblem(**raw))
