"""Match KSeF's per-invoice results to the inputs, and build the report: one entry per input invoice.

Results are matched by ``invoiceFileName`` first (unique within a session: the engine never puts two files of the
same name into one archive) and checked against ``invoiceHash`` (Base64 SHA-256 of the exact bytes); a result
whose name is unknown or whose hash disagrees is matched by hash alone. ``ordinalNumber`` is never used: it does
not follow archive order (KSeF issue #267).

A KSeF duplicate (invoice status 440) is reported as ``duplicate`` with the original KSeF number from
``status.extensions.originalKsefNumber``: the invoice is in KSeF, accepted earlier.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePath
from typing import Any, Final

import attrs

from ksef_async.core.codes import INVOICE_PENDING, InvoiceStatus, is_final_failure
from ksef_async.core.crypto import b64
from ksef_async.core.plan import BatchPlan, InvoiceEntry, InvoiceOutcome, OutcomeStatus, SessionPlan, SessionState
from ksef_async.core.system_warnings import WarningTally
from ksef_async.models import SessionInvoiceStatusResponse

__all__ = [
    "PENDING_CODES",
    "BatchReport",
    "MatchCounts",
    "ReportEntry",
    "build_report",
    "match_results",
    "outcome_of",
]

PENDING_CODES: Final = INVOICE_PENDING
"""Invoice status codes that are not final yet (`ksef_async.core.codes.INVOICE_PENDING`)."""
_OK: Final = InvoiceStatus.SUCCESS
_DUPLICATE: Final = InvoiceStatus.DUPLICATE


def outcome_of(item: SessionInvoiceStatusResponse) -> InvoiceOutcome | None:
    """Turn one ``SessionInvoiceStatusResponse`` into an outcome (``None`` while its status is not final)."""
    status = item.status
    code = status.code
    if code in PENDING_CODES:
        return None
    description = status.description
    details = tuple(status.details or ())
    reference = item.reference_number
    mode = None if item.invoicing_mode is None else str(item.invoicing_mode)
    if code == _OK and item.ksef_number:
        return InvoiceOutcome(OutcomeStatus.ACCEPTED, item.ksef_number, code, description, (), reference, mode)
    if code == _DUPLICATE:
        original = (status.extensions or {}).get("originalKsefNumber")
        return InvoiceOutcome(OutcomeStatus.DUPLICATE, original or None, code, description, details, reference, mode)
    return InvoiceOutcome(OutcomeStatus.REJECTED, None, code, description, details, reference, mode)


@attrs.frozen
class MatchCounts:
    """How the results of one session matched its invoices."""

    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    pending: int = 0
    unmatched: int = 0
    """Results that matched no input of the session (reported, never guessed)."""

    @property
    def missing(self) -> int:
        """Alias used in events: invoices without a final result."""
        return self.pending


def match_results(
    session: SessionPlan, items: Iterable[SessionInvoiceStatusResponse]
) -> tuple[SessionPlan, MatchCounts]:
    """Record the final results among ``items`` on ``session``'s invoices; return it and the counts."""
    by_name = {e.name: i for i, e in enumerate(session.invoices)}
    by_hash: dict[str, list[int]] = {}
    for i, e in enumerate(session.invoices):
        by_hash.setdefault(e.sha256, []).append(i)
    invoices = list(session.invoices)
    unmatched = 0
    for item in items:
        index = None if item.invoice_file_name is None else by_name.get(item.invoice_file_name)
        digest = b64(item.invoice_hash)  # the plan keeps Base64 text, as the spec sends it
        if index is None or invoices[index].sha256 != digest:
            candidates = by_hash.get(digest, [])
            # Among identical invoices (not possible after the duplicate check, but cheap), fill an empty slot.
            index = next((c for c in candidates if invoices[c].outcome is None), candidates[0] if candidates else None)
        if index is None:
            unmatched += 1
            continue
        outcome = outcome_of(item)
        if outcome is not None:
            invoices[index] = attrs.evolve(invoices[index], outcome=outcome)
    counts = MatchCounts(
        accepted=sum(1 for e in invoices if e.outcome and e.outcome.status is OutcomeStatus.ACCEPTED),
        duplicates=sum(1 for e in invoices if e.outcome and e.outcome.status is OutcomeStatus.DUPLICATE),
        rejected=sum(1 for e in invoices if e.outcome and e.outcome.status is OutcomeStatus.REJECTED),
        pending=sum(1 for e in invoices if e.outcome is None),
        unmatched=unmatched,
    )
    return attrs.evolve(session, invoices=tuple(invoices)), counts


@attrs.frozen
class ReportEntry:
    """One input invoice in the report.

    Attributes:
        file: The invoice's name (its file name in the archive).
        sha256: Base64 SHA-256 of its bytes (``None`` for an input left out before it was hashed).
        outcome: ``accepted``, ``duplicate`` (KSeF had it: ``ksef_number`` is the original's), ``rejected``,
            ``invalid`` (left out before sending) or ``unknown`` (no final result yet: resume the batch).
        ksef_number: The KSeF number, when accepted or a duplicate.
        error: ``{"code", "description", "details"}`` for a rejected or invalid invoice.
        session_reference: The batch session's reference number.
        session: The session's index in the plan.
        source: Where the invoice came from (its path), when it was read from a file.
        invoicing_mode: ``invoicingMode`` of KSeF's result (``Online`` or ``Offline``), when it gave one.
    """

    file: str
    sha256: str | None
    outcome: str
    ksef_number: str | None = None
    error: dict[str, Any] | None = None
    session_reference: str | None = None
    session: int | None = None
    source: str | None = None
    invoicing_mode: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the entry as a JSON object (camelCase-free, stable keys)."""
        return attrs.asdict(self)


def _entry(invoice: InvoiceEntry, session: SessionPlan) -> ReportEntry:
    outcome = invoice.outcome
    error: dict[str, Any] | None = None
    if outcome is None:
        failed = session.state is SessionState.FAILED
        if failed or (session.status_code is not None and is_final_failure(session.status_code)):
            error = {"code": session.status_code, "description": session.status_description, "details": []}
        return ReportEntry(
            invoice.name,
            invoice.sha256,
            "unknown",
            None,
            error,
            session.reference_number,
            session.index,
            invoice.source,
        )
    if outcome.status in {OutcomeStatus.REJECTED, OutcomeStatus.INVALID}:
        error = {"code": outcome.code, "description": outcome.description, "details": list(outcome.details)}
    return ReportEntry(
        invoice.name,
        invoice.sha256,
        outcome.status.value,
        outcome.ksef_number,
        error,
        session.reference_number,
        session.index,
        invoice.source,
        outcome.invoicing_mode,
    )


@attrs.frozen
class BatchReport:
    """The result of a batch send: one entry per input invoice, plus the sessions and the stage timings.

    Attributes:
        entries: Per invoice, the sent ones in plan order, then the ones left out.
        sessions: Per session: index, reference number, status code and description, UPO files.
        timings: Wall seconds per stage (``prepare``, ``open``, ``upload``, ``close``, ``process``, ``results``,
            ``upo``).
        state_dir: Where the plan and spool are.
        finished: When the report was made (UTC).
        system_warnings: The distinct ``X-System-Warning`` warnings KSeF sent during the run, with their counts.
        system_warning_count: How many warnings arrived during the run (repeats included).
        outages: KSeF outage windows announced by the status service while the send waited, each with the
            offline deadline for invoices issued during it (`ksef_async.core.status_service.OutageWindow.to_json`).
    """

    entries: tuple[ReportEntry, ...]
    sessions: tuple[dict[str, Any], ...] = ()
    timings: dict[str, float] = attrs.field(factory=dict)
    state_dir: str | None = None
    finished: dt.datetime | None = None
    system_warnings: tuple[WarningTally, ...] = ()
    system_warning_count: int = 0
    outages: tuple[dict[str, Any], ...] = ()

    def count(self, outcome: str) -> int:
        """How many entries have ``outcome``."""
        return sum(1 for e in self.entries if e.outcome == outcome)

    @property
    def all_accepted(self) -> bool:
        """Every input invoice is in KSeF (accepted now, or accepted earlier: a duplicate)."""
        return bool(self.entries) and all(e.outcome in {"accepted", "duplicate"} for e in self.entries)

    @property
    def complete(self) -> bool:
        """Every invoice has a final outcome (none is ``unknown``)."""
        return all(e.outcome != "unknown" for e in self.entries)

    def to_json(self) -> dict[str, Any]:
        """The report file's JSON object."""
        return {
            "summary": {
                "invoices": len(self.entries),
                "accepted": self.count("accepted"),
                "duplicate": self.count("duplicate"),
                "rejected": self.count("rejected"),
                "invalid": self.count("invalid"),
                "unknown": self.count("unknown"),
            },
            "sessions": list(self.sessions),
            "timings": dict(self.timings),
            "stateDir": self.state_dir,
            "finished": self.finished.isoformat() if self.finished else None,
            "systemWarnings": {
                "count": self.system_warning_count,
                "distinct": [w.to_json() for w in self.system_warnings],
            },
            "invoices": [e.to_json() for e in self.entries],
            "outages": list(self.outages),
        }


def build_report(
    plan: BatchPlan,
    *,
    upo_files: Mapping[int, list[str]] | None = None,
    timings: Mapping[str, float] | None = None,
    state_dir: str | None = None,
    finished: dt.datetime | None = None,
    system_warnings: Sequence[WarningTally] = (),
    system_warning_count: int = 0,
    outages: tuple[dict[str, Any], ...] = (),
) -> BatchReport:
    """Build the report of ``plan`` (sessions' invoices, then the skipped inputs, and the outages waited out)."""
    entries = [_entry(invoice, session) for session in plan.sessions for invoice in session.invoices]
    entries.extend(
        ReportEntry(
            PurePath(problem.file).name,
            None,
            "invalid",
            error={"code": None, "description": problem.reason, "details": [problem.rule], "line": problem.line},
            source=problem.file,
        )
        for problem in plan.skipped
    )
    sessions = tuple(
        {
            "index": s.index,
            "referenceNumber": s.reference_number,
            "state": s.state.value,
            "statusCode": s.status_code,
            "statusDescription": s.status_description,
            "invoices": len(s.invoices),
            "parts": len(s.parts),
            "upo": list((upo_files or {}).get(s.index, [])),
        }
        for s in plan.sessions
    )
    return BatchReport(
        tuple(entries),
        sessions,
        dict(timings or {}),
        state_dir,
        finished,
        tuple(system_warnings),
        system_warning_count,
        outages,
    )
