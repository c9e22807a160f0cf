"""The simulator's in-memory world: clock, contexts and KSeF tokens, auth operations, sessions and stored invoices.

Everything the HTTP handlers know lives in one `SimState`; handlers mutate it on the event loop thread only
(batch processing computes its results in a worker thread and applies them back on the loop).

State API (what the retrieval endpoints, ``/invoices/*`` in `retrieval`, read):

* ``state.invoices``: ``dict[str, StoredInvoice]`` keyed by KSeF number, in acceptance order. A `StoredInvoice`
  holds the exact XML bytes (``content``), ``invoice_hash`` (Base64 SHA-256), ``size``, ``seller_nip``,
  ``buyer_identifier`` (``(type, value)`` or ``None``), ``invoice_number`` (P_2), ``invoice_type``
  (RodzajFaktury), ``form`` (the spec's ``FormCode`` dict), ``issue_date``, ``invoicing_date`` (accepted by
  KSeF), ``acquisition_date`` (KSeF number assigned), ``permanent_storage_date`` (= ``invoicing_date`` +
  ``storage_delay``), ``invoicing_mode`` (``Online``/``Offline``), ``has_attachment``, ``session_reference``
  and ``context`` (the `ContextKey` that sent it). The dates are aware UTC datetimes; an invoice becomes
  visible once ``state.clock.now_dt() >= acquisition_date``.
* The High Water Mark is computed by `ksef_async.testing.simulator.retrieval.hwm` (from ``state.invoices``).
* ``state.duplicates``: the global duplicate index (seller NIP, RodzajFaktury, P_2) -> (session ref, KSeF number).
* ``state.clock``: `SimClock`; ``advance(seconds)`` moves simulated time for every time-based rule.
"""

from __future__ import annotations

import datetime as dt
import enum
import random
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ALL_PERMISSIONS",
    "AuthOperation",
    "BatchPart",
    "CertificateEnrollment",
    "ContextKey",
    "ContextRecord",
    "InvoiceEntry",
    "IssuedCertificate",
    "KsefTokenRecord",
    "PeppolProviderRecord",
    "PermissionGrant",
    "PermissionOperation",
    "Session",
    "SessionKind",
    "SimClock",
    "SimState",
    "StoredInvoice",
    "TestPerson",
    "iso",
]

ALL_PERMISSIONS: tuple[str, ...] = (
    "InvoiceRead",
    "InvoiceWrite",
    "CredentialsRead",
    "CredentialsManage",
    "SubunitManage",
    "EnforcementOperations",
    "Introspection",
    "CollectiveIdentifierManage",
)
"""The spec's ``TokenPermissionType`` values: what a seeded context's KSeF token may do."""

ContextKey = tuple[str, str]
"""A context identifier as ``(type, value)``, e.g. ``("Nip", "5265877635")``."""


def iso(moment: dt.datetime) -> str:
    """Format an aware datetime as KSeF does (ISO 8601 with milliseconds and an offset)."""
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds")


class SimClock:
    """Wall-clock time plus an offset that tests move forward with `advance` (never backwards)."""

    def __init__(self) -> None:
        self._offset = 0.0

    def now(self) -> float:
        """Seconds since the epoch, simulated."""
        return time.time() + self._offset

    def now_dt(self) -> dt.datetime:
        """The simulated time as an aware UTC datetime."""
        return dt.datetime.fromtimestamp(self.now(), dt.UTC)

    def advance(self, seconds: float) -> None:
        """Move simulated time forward by ``seconds``."""
        if seconds < 0:
            msg = "the simulator clock only moves forward"
            raise ValueError(msg)
        self._offset += seconds


@dataclass(eq=False)
class KsefTokenRecord:
    """A KSeF token of a context: its secret, reference number and permissions."""

    token: str = field(repr=False)
    reference_number: str
    context: ContextKey
    permissions: frozenset[str]
    description: str
    created: dt.datetime
    status: str = "Active"
    author: tuple[str, str] | None = None
    """Who created it (``("Nip"|"Pesel"|"Fingerprint", value)``); seeded tokens: the context's NIP."""
    last_use: dt.datetime | None = None


@dataclass(eq=False)
class ContextRecord:
    """A context (taxpayer) known to the simulator and its KSeF tokens."""

    key: ContextKey
    tokens: dict[str, KsefTokenRecord] = field(default_factory=dict, repr=False)
    blocked: bool = False


@dataclass(eq=False)
class AuthOperation:
    """One authentication operation (``...-AU-...``) and the tokens issued under it."""

    reference_number: str
    context: ContextKey
    method: str
    """The spec's ``AuthenticationMethod`` (``Token`` or ``QualifiedSignature``...)."""
    category: str
    """The spec's ``AuthenticationMethodCategory`` (``Token`` or ``XadesSignature``)."""
    started: dt.datetime
    status_code: int
    status_description: str
    status_details: list[str]
    permissions: frozenset[str]
    token_reference: str | None = None
    """Reference number of the KSeF token used, for the UPO's ``NumerReferencyjnyTokenaKSeF``."""
    document_hash: str | None = None
    """SHA-256 of the signed XML, for the UPO's ``SkrotDokumentuUwierzytelniajacego``."""
    identity: tuple[str, str] | None = None
    """Who logged in (XAdES: from the certificate), as ``(type, value)``."""
    redeemed: bool = False
    refresh_valid_until: dt.datetime | None = None
    last_refresh: dt.datetime | None = None
    revoked: bool = False
    certificate_der: bytes | None = field(default=None, repr=False)
    """XAdES logins: the signer's certificate (DER), what ``GET /certificates/enrollments/data`` describes."""


@dataclass(eq=False)
class PermissionGrant:
    """One permission granted through ``/permissions/*/grants`` (one record per permission type)."""

    id: str
    kind: str
    """``person``, ``entity``, ``authorization``, ``indirect``, ``subunit``, ``euAdmin`` or ``euEntity``."""
    grantor: ContextKey
    """The context the grant was made in."""
    context: ContextKey
    """The context the permission works in (a subunit's or EU entity's context for those grants)."""
    author: tuple[str, str]
    subject: tuple[str, str]
    scope: str
    description: str
    started: dt.datetime
    can_delegate: bool = False
    target: tuple[str, str | None] | None = None
    """Indirect grants: ``("Nip"|"InternalId", value)`` or ``("AllPartners", None)``."""
    person_details: dict[str, Any] | None = None
    entity_details: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Kind-specific fields (``subunitName``, ``euEntityName``, ``euEntityDetails``)."""


@dataclass(eq=False)
class PermissionOperation:
    """An asynchronous grant or revocation (``...-EG-...``) and its outcome."""

    reference_number: str
    context: ContextKey
    started: float
    code: int
    description: str
    details: list[str] = field(default_factory=list)


class SessionKind(enum.StrEnum):
    """The spec's ``SessionType``."""

    ONLINE = "Online"
    BATCH = "Batch"


@dataclass(eq=False)
class InvoiceEntry:
    """One invoice of a session with its final outcome; what is visible depends on the clock (`visible_code`)."""

    ordinal_number: int
    reference_number: str
    invoice_hash: str
    received: float
    """Simulated epoch seconds at which KSeF accepted it for processing."""
    invoicing_mode: str
    final_code: int
    final_description: str
    details: list[str] | None = None
    extensions: dict[str, str] | None = None
    file_name: str | None = None
    invoice_number: str | None = None
    ksef_number: str | None = None
    upo_reference: str | None = None
    corrects: InvoiceEntry | None = field(default=None, repr=False)
    """The rejected offline invoice this one technically corrects (``hashOfCorrectedInvoice``)."""


@dataclass(eq=False)
class BatchPart:
    """A declared batch part and, once uploaded, where its ciphertext was spooled."""

    ordinal_number: int
    size: int
    file_hash: str
    path: Path | None = None
    uploading: bool = False


@dataclass(eq=False)
class Session:
    """An online or batch session."""

    reference_number: str
    kind: SessionKind
    context: ContextKey
    auth_reference: str
    created: float
    valid_until: float
    form_code: dict[str, str]
    key: Any = field(repr=False)
    """The decrypted `SessionKey`, or ``None`` when the wrapped key could not be decrypted (status 415)."""
    offline_mode: bool = False
    features: frozenset[str] = frozenset()
    """``X-KSeF-Feature`` values sent when the session was opened (e.g. ``subject-identifier-validation``)."""
    unavailable: bool = False
    """Online only: every invoice sent into it answers 21184 (maintenance; ``session-down`` fault or a test)."""
    closed: float | None = None
    final_code: int | None = None
    """Terminal status code once known (batch: set when processing ends)."""
    final_description: str = ""
    final_details: list[str] | None = None
    updated: float = 0.0
    invoices: list[InvoiceEntry] = field(default_factory=list, repr=False)
    by_reference: dict[str, InvoiceEntry] = field(default_factory=dict, repr=False)
    # Batch only.
    batch_file: dict[str, Any] | None = field(default=None, repr=False)
    parts: dict[int, BatchPart] = field(default_factory=dict, repr=False)
    upload_deadline: float = 0.0
    processing_done: float | None = None
    upo_pages: list[tuple[str, bytes]] | None = field(default=None, repr=False)
    """``(UPO reference number, document)`` pages, built once the session is processed."""


@dataclass(eq=False)
class StoredInvoice:
    """An invoice accepted by KSeF (status 200): the record the retrieval endpoints serve."""

    ksef_number: str
    content: bytes = field(repr=False)
    invoice_hash: str
    size: int
    seller_nip: str
    buyer_identifier: tuple[str, str] | None
    invoice_number: str
    invoice_type: str
    form: dict[str, str]
    issue_date: dt.date | None
    invoicing_date: dt.datetime
    acquisition_date: dt.datetime
    permanent_storage_date: dt.datetime
    invoicing_mode: str
    has_attachment: bool
    session_reference: str
    context: ContextKey


@dataclass(eq=False)
class IssuedCertificate:
    """A KSeF certificate the simulator's CA issued (``POST /certificates/enrollments``)."""

    serial_number: str
    """``certificateSerialNumber``: 16 upper-case hex digits."""
    name: str
    certificate_type: str
    """``Authentication`` or ``Offline``."""
    der: bytes = field(repr=False)
    fingerprint: str
    """SHA-256 of ``der``, upper-case hex."""
    owner: tuple[str, str]
    """The subject identifier it was issued to (``("Nip"|"Pesel"|"Fingerprint", value)``)."""
    common_name: str
    valid_from: dt.datetime
    valid_to: dt.datetime
    request_date: dt.datetime
    status: str = "Active"
    last_use: dt.datetime | None = None


@dataclass(eq=False)
class CertificateEnrollment:
    """A certificate request: accepted at ``requested``, final (issued or rejected) once ``ready`` has passed."""

    reference_number: str
    owner: tuple[str, str]
    requested: dt.datetime
    ready: dt.datetime
    code: int
    description: str
    details: list[str] | None = None
    serial_number: str | None = None


@dataclass(eq=False)
class PeppolProviderRecord:
    """A registered Peppol service provider (``GET /peppol/query``)."""

    provider_id: str
    name: str
    date_created: dt.datetime


@dataclass(eq=False)
class TestPerson:
    """A person registered through ``/testdata/person``: owner of ``nip``, maybe a bailiff, maybe deceased."""

    __test__ = False  # not a pytest test class despite the name

    pesel: str
    nip: str
    is_bailiff: bool
    is_deceased: bool


class SimState:
    """All mutable simulator state, plus the random source for identifiers (seeded for reproducible runs)."""

    def __init__(self, *, seed: int | None, processing_delay: float, storage_delay: float) -> None:
        self.clock = SimClock()
        self.rng = random.Random(seed)  # noqa: S311 - identifiers, not secrets
        # Never derived from ``seed``: the seed is for reproducible identifiers, and a seed is easy to guess; the
        # signing secret (bearer tokens, pre-signed URLs, continuation tokens) must not be.
        self.secret = secrets.token_bytes(32)
        self.processing_delay = processing_delay
        self.storage_delay = storage_delay
        self.contexts: dict[ContextKey, ContextRecord] = {}
        self.tokens: dict[str, KsefTokenRecord] = {}
        self.challenges: dict[str, float] = {}
        self.auth_operations: dict[str, AuthOperation] = {}
        self.sessions: dict[str, Session] = {}
        self.invoices: dict[str, StoredInvoice] = {}
        self.duplicates: dict[tuple[str, str, str], tuple[str, str]] = {}
        self.grants: dict[tuple[ContextKey, str, str], frozenset[str]] = {}
        """``/testdata/permissions`` grants: (context, identifier type, identifier value) -> permissions."""
        self.subjects: dict[str, str] = {}
        """``/testdata/subject``: NIP -> ``subjectType``."""
        self.persons: dict[str, TestPerson] = {}
        """``/testdata/person``: PESEL -> the person."""
        self.attachments_allowed: set[str] = set()
        """NIPs allowed to send invoices with attachments (``/testdata/attachment``)."""
        self.permission_grants: dict[str, PermissionGrant] = {}
        """``/permissions/*/grants``: permission id -> grant (see `ksef_async.testing.simulator.permissions`)."""
        self.permission_operations: dict[str, PermissionOperation] = {}
        """Grant and revocation operations by reference number."""
        self.permission_derived: set[tuple[tuple[ContextKey, str, str], str]] = set()
        """The ``grants`` entries ((context, identifier type, value), permission) the grant records put there."""
        self.subunits: dict[str, dict[str, str]] = {}
        """Subordinate entities of a JST / VAT group: parent NIP -> {subunit NIP: description}."""
        self.session_limits: dict[ContextKey, dict[str, dict[str, int]]] = {}
        """``/testdata/limits/context/session`` overrides: context -> ``{"onlineSession": {...}, ...}``."""
        self.certificates: dict[str, IssuedCertificate] = {}
        """KSeF certificates by ``certificateSerialNumber``."""
        self.enrollments: dict[str, CertificateEnrollment] = {}
        """Certificate enrollments by reference number."""
        self.certificate_limits: dict[tuple[str, str], dict[str, int]] = {}
        """``/testdata/limits/subject/certificate`` overrides: subject -> ``{"maxEnrollments": n, ...}``."""
        self.peppol_providers: dict[str, PeppolProviderRecord] = {}
        """Peppol providers by ``id``."""
        self.certificate_authority: Any = None
        """The simulator CA (key and certificate) that signs KSeF certificates, created on first use."""
