"""The work each prepare pool worker does for an invoice: read it, validate (or identify) it, hash and compress it.

Kept apart from `ksef_async.batch.prepare` so that a spawned worker process imports only this (lxml, the
validators, the deflate backend), not the engine, anyio or the archive pipeline.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

import attrs

from ksef_async.batch.inputs import InvoiceInput, PendingFile, read_file_input
from ksef_async.batch.selection import UnusableFileError
from ksef_async.core.digest import sha256_b64
from ksef_async.core.zipstream import DeflatedEntry, deflate_entry
from ksef_async.errors import InvoiceError, InvoiceProblem
from ksef_async.xml.forms import FA2, FA3, FA_RR1, InvoiceForm, detect_form, form_for_tag

__all__ = [
    "BATCH_FORMS",
    "Description",
    "Entry",
    "FileRef",
    "Source",
    "Unreadable",
    "describe_batch",
    "warm_up",
]

BATCH_FORMS: Final[tuple[InvoiceForm, ...]] = (FA2, FA3, FA_RR1)
"""Forms POST /sessions/batch accepts (the spec's ``formCode`` table); PEF is online-only."""


# The root start tag, after an optional BOM-less prolog of declarations, comments and whitespace.
_ROOT = re.compile(
    rb"\A(?:\s|<\?.*?\?>|<!--.*?-->)*<(?:([A-Za-z_][\w.-]*):)?([A-Za-z_][\w.-]*)((?:\s[^>]*)?)>", re.DOTALL
)
_XMLNS = re.compile(rb"""\sxmlns(?::([A-Za-z_][\w.-]*))?\s*=\s*(?:"([^"]*)"|'([^']*)')""")


def identify(data: bytes, name: str) -> InvoiceForm:
    """Identify the form from the root start tag (no validation); lxml's `detect_form` explains failures.

    A regex over the first tag is about 20x faster than building a parser per invoice, which matters when
    validation is off and this is the only look at the XML.
    """
    match = _ROOT.match(data, 0, 65536)
    if match is not None:
        prefix, local, attributes = match.group(1), match.group(2), match.group(3)
        for decl in _XMLNS.finditer(attributes):
            if decl.group(1) == prefix:
                namespace = (decl.group(2) if decl.group(2) is not None else decl.group(3)).decode("utf-8", "replace")
                form = form_for_tag(f"{{{namespace}}}{local.decode('ascii', 'replace')}")
                if form is not None:
                    return form
    return detect_form(data, name)


@attrs.frozen
class Unreadable:
    """A `PendingFile` the worker could not read: raised as `UnusableFileError` when its turn comes."""

    path: str
    reason: str
    rule: str

    def error(self) -> UnusableFileError:
        return UnusableFileError(self.path, self.reason, self.rule)


Entry = tuple[str, str, int, int, str | None, str | None, bool, str | None]
"""An invoice's plan entry as a plain tuple, cheap to pickle: name, SHA-256, size, index of its form in
`BATCH_FORMS`, invoice number, seller NIP, whether it has an attachment, source path."""
Description = tuple[Entry | None, tuple[InvoiceProblem, ...], DeflatedEntry | None]
Source = InvoiceInput | PendingFile
FileRef = tuple[str, str]
"""A `PendingFile` as sent to a worker process, ``(name, path)``: a plain tuple pickles several times faster."""


_Checked = tuple[Entry | None, tuple[InvoiceProblem, ...]]
"""An invoice's entry, or why it cannot be sent."""


def _read(source: Source | FileRef) -> InvoiceInput | Unreadable:
    if isinstance(source, InvoiceInput):
        return source
    name, path = source if isinstance(source, tuple) else (source.name, source.path)
    try:
        return read_file_input(name, path)
    except UnusableFileError as exc:
        return Unreadable(exc.path, exc.reason, exc.rule)


def _check(item: InvoiceInput, validate: bool) -> _Checked:
    if validate:
        from ksef_async.xml.validation import check_invoice  # noqa: PLC0415 - compiles schemas on first use

        result = check_invoice(item.data, item.name)
        if result.invoice is None:
            return None, result.problems
        v = result.invoice
        form, sha, number, nip, attachment = v.form, v.sha256, v.invoice_number, v.seller_nip, v.has_attachment
    else:
        try:
            form = identify(item.data, item.name)
        except InvoiceError as exc:
            return None, tuple(exc.problems)
        sha = sha256_b64(item.data)
        number = nip = None
        attachment = False
    if form not in BATCH_FORMS:
        accepted = ", ".join(f.name for f in BATCH_FORMS)
        problem = InvoiceProblem(item.name, f"{form.name} cannot be sent in a batch session (accepted: {accepted})")
        return None, (attrs.evolve(problem, rule="form"),)
    return (item.name, sha, len(item.data), BATCH_FORMS.index(form), number, nip, attachment, item.source), ()


def _deflated(item: InvoiceInput, checked: _Checked, level: int) -> Description:
    entry, problems = checked
    if entry is None:
        return None, problems, None
    # Compressed here, in the worker, so that deflate runs on every core and the session packer sees each
    # invoice's real archive bytes before it picks the session.
    try:
        return entry, (), deflate_entry(item.name, item.data, level=level)
    except ValueError:  # a name no archive entry can have: `DuplicateCheck` names the reason, in order
        return entry, (), None


def describe_batch(batch: Sequence[Source | FileRef], validate: bool, level: int) -> list[Description | Unreadable]:
    """Describe a batch of invoices in one pool task (one round trip, one pickling, for a process pool).

    Stage by stage over the whole batch (read every invoice, then check every one, then compress every one), not
    invoice by invoice: each stage's code and tables (the parser and schema, the deflate state) stay in the CPU's
    caches, ~8 % less CPU per invoice than one invoice at a time (13 kB FA(3) invoices, 64 per batch).
    """
    items = [_read(source) for source in batch]
    checked = [item if isinstance(item, Unreadable) else (item, _check(item, validate)) for item in items]
    return [item if isinstance(item, Unreadable) else _deflated(*item, level) for item in checked]


def warm_up() -> None:
    """Import what describing needs and compile the FA(3) schema (the form of nearly every batch).

    A new worker process, and every worker forked from it, is then ready before its first batch arrives.
    """
    from ksef_async.xml.validation import load_schemas  # noqa: PLC0415 - not imported by prepare's own process

    load_schemas(FA3)
