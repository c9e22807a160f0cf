"""Offline invoice validation: byte preflight, one parse, XSD validation and extraction of the key fields.

One `validate_invoice` call parses the bytes once and answers everything later stages need: the form (hence the
session ``formCode``), seller NIP, issue date, invoice number, invoice kind, whether it carries an attachment,
and the SHA-256 and size of the exact bytes.

Threads: the compiled XSDs and the parser are kept per thread. libxml2 validates with a fresh context per call
and lxml releases the GIL meanwhile, but lxml's ``XMLSchema`` keeps one ``error_log`` per instance, cleared and
refilled by each call, so a shared instance would mix up two threads' errors; and an lxml parser serialises its
users behind a lock. Each thread compiles a schema the first time it needs it (FA(3): about 15 ms).

Network: schemas are read through `ksef_async.xml._resolver.BundledSchemaResolver` with ``no_network=True``; the
invoice parser never loads DTDs or expands entities.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Iterable
from typing import Any, cast

import attrs
from lxml import etree

from ksef_async._schemas import schema_path
from ksef_async.core.digest import sha256_b64
from ksef_async.errors import InvoiceError, InvoiceProblem
from ksef_async.xml._resolver import BUNDLED_URLS, doctype_in_prolog, hardened_parser, schema_parser
from ksef_async.xml.forms import InvoiceForm, form_for_tag, unknown_form_problem
from ksef_async.xml.preflight import MAX_INVOICE_SIZE_WITH_ATTACHMENT, preflight, size_problem, utf8_problem

__all__ = [
    "ValidatedInvoice",
    "ValidationResult",
    "check_invoice",
    "compile_schema",
    "load_schemas",
    "readable_schema_error",
    "validate_invoice",
]

_MAX_XSD_PROBLEMS = 20
_MAX_EXPECTED_SHOWN = 6


@attrs.frozen
class ValidatedInvoice:
    """An invoice that passed validation, with what later stages need.

    Attributes:
        name: The file name given by the caller.
        sha256: Base64 SHA-256 of the exact bytes (the spec's ``invoiceHash``).
        size: Size of the exact bytes (the spec's ``invoiceSize``).
        form: The detected form; ``form.form_code`` is the session ``formCode``.
        seller_nip: Seller tax id (FA: ``Podmiot1/DaneIdentyfikacyjne/NIP``; PEF: the supplier's
            ``PartyTaxScheme/CompanyID`` without a ``PL`` prefix).
        issue_date: Issue date (FA: ``P_1``; FA_RR: ``P_4B``; PEF: ``IssueDate``).
        invoice_number: Invoice number (FA: ``P_2``; FA_RR: ``P_4C``; PEF: ``ID``).
        invoice_type: FA: ``RodzajFaktury``; PEF: ``InvoiceTypeCode``/``CreditNoteTypeCode``.
        has_attachment: Whether the invoice has an FA(3) ``Zalacznik`` (allowed only in batch sessions).
    """

    name: str
    sha256: str
    size: int
    form: InvoiceForm
    seller_nip: str | None
    issue_date: dt.date | None
    invoice_number: str | None
    invoice_type: str | None
    has_attachment: bool

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict (snake_case keys; ``form_code`` spelled as the spec's ``FormCode``)."""
        return {
            "file": self.name,
            "form": self.form.name,
            "form_code": self.form.form_code.to_json(),
            "seller_nip": self.seller_nip,
            "issue_date": self.issue_date.isoformat() if self.issue_date else None,
            "invoice_number": self.invoice_number,
            "invoice_type": self.invoice_type,
            "has_attachment": self.has_attachment,
            "size": self.size,
            "sha256": self.sha256,
        }


@attrs.frozen
class ValidationResult:
    """The outcome of checking one invoice: its problems, or the validated invoice.

    Attributes:
        name: The file name given by the caller.
        problems: Every problem found; empty when the invoice is valid.
        invoice: The validated invoice when there are no problems, else ``None``.
        form: The detected form, when the root element could be read.
    """

    name: str
    problems: tuple[InvoiceProblem, ...]
    invoice: ValidatedInvoice | None
    form: InvoiceForm | None

    @property
    def ok(self) -> bool:
        """Whether the invoice is valid."""
        return self.invoice is not None

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict: file, valid, form, problems and, when valid, the extracted fields."""
        out: dict[str, Any] = {
            "file": self.name,
            "valid": self.ok,
            "form": self.form.name if self.form else None,
            "problems": [{"line": p.line, "rule": p.rule, "reason": p.reason} for p in self.problems],
        }
        if self.invoice is not None:
            out |= self.invoice.to_json()
        return out


def _invoice_parser() -> etree.XMLParser:
    # No DTD loading, no entity expansion, no network, every external resolution refused (libxml2 2.14 loads
    # external parameter entities when collect_ids=False; a DOCTYPE is refused before parsing anyway). Faster:
    # ids are not needed, and whitespace-only text between elements is dropped (~6 % of parse+validate); the
    # FA and UBL schemas have no mixed content, and libxml2 keeps whitespace that is the whole content of a
    # leaf element, so validation is unchanged.
    return hardened_parser(collect_ids=False, remove_blank_text=True)


_COMPILE_LOCK = threading.Lock()
_XSD_NS = "http://www.w3.org/2001/XMLSchema"


def compile_schema(form: InvoiceForm) -> etree.XMLSchema:
    """Compile the bundled XSD of ``form`` (imports resolved to bundled files, never the network)."""
    # Under load, with other threads parsing, libxml2 sometimes loaded the crd.gov.pl import without consulting
    # our resolver (which it finds through thread-implied state), so the import's types did not resolve. Pointing
    # the import at the bundled file before compiling takes the resolver out of that path; the resolver stays to
    # refuse any other remote URL. Compilation runs once per thread and form, so the lock costs nothing.
    with _COMPILE_LOCK:
        doc = etree.parse(str(schema_path(*form.xsd)), schema_parser())
        for node in doc.getroot().iter(f"{{{_XSD_NS}}}import", f"{{{_XSD_NS}}}include"):
            parts = BUNDLED_URLS.get(node.get("schemaLocation") or "")
            if parts is not None:
                node.set("schemaLocation", schema_path(*parts).as_uri())
        return etree.XMLSchema(doc)


def _last_step(path: str) -> str:
    """Return the last step's tag of a Clark-notation path (namespaces contain slashes, so no plain split)."""
    match = re.search(r"\{[^}]*\}[^/{}]+$", path)
    assert match is not None, path
    return match.group()


@attrs.frozen
class _Extractor:
    """One compiled XPath union selecting every key field of a form, and which field each tag is."""

    xpath: etree.XPath
    field_of_tag: dict[str, str]

    @classmethod
    def for_form(cls, form: InvoiceForm) -> _Extractor:
        paths = {
            "seller_nip": form.seller_nip_path,
            "issue_date": form.issue_date_path,
            "invoice_number": form.invoice_number_path,
            "invoice_type": form.invoice_type_path,
        }
        if form.attachment_path is not None:
            paths["attachment"] = form.attachment_path
        # ETXPath takes the Clark-notation paths as they are; one union costs ~10 us against ~40 us for
        # five ElementPath lookups. The last step's tag identifies each field.
        xpath = etree.ETXPath(" | ".join(paths.values()))
        return cls(xpath, {_last_step(path): field for field, path in paths.items()})

    def extract(self, root: etree._Element) -> dict[str, etree._Element]:
        found: dict[str, etree._Element] = {}
        result = self.xpath(root)
        assert isinstance(result, list)
        for element in result:
            if isinstance(element, etree._Element):  # noqa: SLF001
                found.setdefault(self.field_of_tag[str(element.tag)], element)
        return found


class _ThreadState(threading.local):
    """Per-thread parser, compiled schemas and extractors (see the module docstring for why)."""

    def __init__(self) -> None:
        self.parser = _invoice_parser()
        self.schemas: dict[str, etree.XMLSchema] = {}
        self.extractors: dict[str, _Extractor] = {}

    def schema(self, form: InvoiceForm) -> etree.XMLSchema:
        schema = self.schemas.get(form.name)
        if schema is None:
            schema = self.schemas[form.name] = compile_schema(form)
        return schema

    def extractor(self, form: InvoiceForm) -> _Extractor:
        extractor = self.extractors.get(form.name)
        if extractor is None:
            extractor = self.extractors[form.name] = _Extractor.for_form(form)
        return extractor


_state = _ThreadState()

_CLARK = re.compile(r"\{(?:https?|urn|ftp):[^}]*\}")
_ELEMENT_PREFIX = re.compile(r"^Element '[^']*'(?:, attribute '[^']*')?: ")
_EXPECTED = re.compile(r"Expected is (?:one of )?\( ([^)]*) \)\.?")
_SYNTAX_POSITION = re.compile(r", line \d+, column \d+$")


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _element_path(root: etree._Element, xpath: str | None) -> str | None:
    """Turn libxml2's ``/*/*[4]/*[2]`` into ``/Faktura/Fa/P_1`` (indexes only where a name repeats)."""
    if not xpath:
        return None
    # libxml2 writes prefixed steps (``/*/cbc:IssueDate``) with the document's own prefixes.
    namespaces = {prefix: uri for prefix, uri in root.nsmap.items() if prefix}
    try:
        found = root.getroottree().xpath(xpath, namespaces=namespaces)
    except etree.XPathError:
        return xpath
    if not isinstance(found, list) or not found or not isinstance(found[0], etree._Element):  # noqa: SLF001
        return xpath
    parts: list[str] = []
    node: etree._Element | None = found[0]
    while node is not None:
        name = _local(str(node.tag))
        parent = node.getparent()
        if parent is not None:
            same = [c for c in parent if c.tag == node.tag]
            if len(same) > 1:
                name += f"[{same.index(node) + 1}]"
        parts.append(name)
        node = parent
    return "/" + "/".join(reversed(parts))


def _shorten_expected(match: re.Match[str]) -> str:
    names = [n.strip() for n in match.group(1).split(",")]
    shown = ", ".join(names[:_MAX_EXPECTED_SHOWN])
    if len(names) > _MAX_EXPECTED_SHOWN:
        shown += f", ... ({len(names) - _MAX_EXPECTED_SHOWN} more)"
    return f"expected {shown}"


def readable_schema_error(message: str, element_path: str | None) -> str:
    """Rewrite a libxml2 schema message: local names instead of ``{namespace}``, a short expected list, a path."""
    text = _CLARK.sub("", message.strip())
    if element_path is not None:
        attribute = re.match(r"^Element '[^']*', attribute '([^']*)'", text)
        text = _ELEMENT_PREFIX.sub("", text)
        where = f"{element_path}/@{attribute.group(1)}" if attribute else element_path
        text = f"{where}: {text}"
    text = text.replace("This element is not expected.", "unexpected element;")
    text = text.replace("Missing child element(s).", "missing child element;")
    text = _EXPECTED.sub(_shorten_expected, text)
    return text.removesuffix(";").strip()


def _schema_problems(name: str, root: etree._Element, schema: etree.XMLSchema) -> list[InvoiceProblem]:
    problems: list[InvoiceProblem] = []
    # lxml-stubs do not declare _ErrorLog iterable; it is.
    entries = list(cast("Iterable[etree._LogEntry]", schema.error_log))  # noqa: SLF001
    for entry in entries[:_MAX_XSD_PROBLEMS]:
        reason = readable_schema_error(entry.message, _element_path(root, entry.path))
        problems.append(InvoiceProblem(name, reason, entry.line or None, "xsd"))
    if len(entries) > _MAX_XSD_PROBLEMS:
        problems.append(InvoiceProblem(name, f"{len(entries) - _MAX_XSD_PROBLEMS} more schema errors", None, "xsd"))
    return problems


def _line(node: etree._Element) -> int | None:
    line: object = node.sourceline  # lxml-stubs type it loosely
    return line if isinstance(line, int) else None


def _pi_problems(name: str, root: etree._Element) -> list[InvoiceProblem]:
    found = [
        *root.itersiblings(etree.ProcessingInstruction, preceding=True),
        *root.iter(etree.ProcessingInstruction),
        *root.itersiblings(etree.ProcessingInstruction),
    ]
    found.sort(key=lambda node: _line(node) or 0)
    return [
        InvoiceProblem(
            name, f"processing instruction <?{getattr(pi, 'target', '')} ...?> is not allowed", _line(pi), "pi"
        )
        for pi in found
    ]


def _text(element: etree._Element | None) -> str | None:
    if element is None:
        return None
    return (element.text or "").strip()


def _number(element: etree._Element | None) -> str | None:
    # The number is compared exactly by KSeF's duplicate check: keep it as written.
    return None if element is None else (element.text or "")


def _seller_id(value: str | None, form: InvoiceForm) -> str | None:
    # PEF carries the VAT id, which for Polish sellers may be written with the country prefix.
    if value is not None and form.root != "Faktura" and value[:2].upper() == "PL" and value[2:].isdigit():
        return value[2:]
    return value


def _date(value: str | None) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        return None


def _syntax_problem(data: bytes, name: str, exc: etree.XMLSyntaxError) -> InvoiceProblem:
    # libxml2 rejects bad UTF-8 with a terse message; name the byte instead.
    if getattr(exc, "code", None) == etree.ErrorTypes.ERR_INVALID_ENCODING:
        bad = utf8_problem(data, name)
        if bad is not None:
            return bad
    reason = f"not well-formed XML: {_SYNTAX_POSITION.sub('', exc.msg or str(exc))}"
    return InvoiceProblem(name, reason, exc.lineno or None, "xml")


def _markup_problems(data: bytes, name: str, root: etree._Element, body_start: int) -> list[InvoiceProblem]:
    """Processing instructions and DOCTYPE, each looked for in the tree only after a cheap byte search hits."""
    problems: list[InvoiceProblem] = []
    # A memchr for "?" first, then "<?": only a hit costs a walk of the tree.
    if data.find(b"?", body_start) != -1 and data.find(b"<?", body_start) != -1:
        problems.extend(_pi_problems(name, root))
    # A DTD could declare entities, which are never expanded here (and unexpanded ones break libxml2's
    # validator); invoices have no business carrying one.
    if data.find(b"<!DOCTYPE", body_start) != -1:
        doctype = str(getattr(root.getroottree().docinfo, "doctype", "") or "")  # lxml-stubs lack `doctype`
        if doctype:
            problems.append(InvoiceProblem(name, f"a DOCTYPE declaration is not allowed ({doctype})", None, "doctype"))
    return problems


def _xsd_problems(name: str, root: etree._Element, form: InvoiceForm) -> list[InvoiceProblem]:
    schema = _state.schema(form)
    try:
        valid = schema.validate(root)
    except etree.XMLSchemaValidateError as exc:  # pragma: no cover - libxml2 internal failure
        return [InvoiceProblem(name, f"schema validation failed: {exc}", None, "xsd")]
    return [] if valid else _schema_problems(name, root, schema)


def _unparsed(
    name: str, size: int, problems: list[InvoiceProblem], *, over_any_limit: bool = False
) -> ValidationResult:
    # Without a tree there is no Zalacznik to raise the limit, so the 1 MB limit applies; above 3 MB no
    # attachment helps, and the message says so.
    big = size_problem(name, size, has_attachment=over_any_limit)
    return ValidationResult(name, (*problems, *([big] if big else [])), None, None)


def _check(data: bytes, name: str, xsd: bool) -> ValidationResult:
    size = len(data)
    if size > MAX_INVOICE_SIZE_WITH_ATTACHMENT:
        # Too large for any invoice: reported without parsing.
        return _unparsed(name, size, [], over_any_limit=True)
    pre = preflight(data, name)
    problems = list(pre.problems)
    parseable = pre.parseable
    if parseable and doctype_in_prolog(data):
        # Refused before parsing: a DTD may name external entities (files, devices, FIFOs) and KSeF rejects it.
        problems.append(InvoiceProblem(name, "a DOCTYPE declaration is not allowed", None, "doctype"))
        parseable = False
    if not parseable:
        return _unparsed(name, size, problems)
    try:
        root = etree.fromstring(data, _state.parser)
    except etree.XMLSyntaxError as exc:
        return _unparsed(name, size, [*problems, _syntax_problem(data, name, exc)])

    markup = _markup_problems(data, name, root, pre.body_start)
    problems.extend(markup)
    form = form_for_tag(str(root.tag))
    if form is None:
        problems.append(unknown_form_problem(name, str(root.tag), _line(root)))
        return ValidationResult(name, tuple(problems), None, None)
    fields = _state.extractor(form).extract(root)
    has_attachment = "attachment" in fields
    big = size_problem(name, size, has_attachment=has_attachment)
    if big is not None:
        problems.append(big)
    if xsd and not any(p.rule == "doctype" for p in markup):
        problems.extend(_xsd_problems(name, root, form))
    if problems:
        return ValidationResult(name, tuple(problems), None, form)
    invoice = ValidatedInvoice(
        name=name,
        sha256=sha256_b64(data),
        size=size,
        form=form,
        seller_nip=_seller_id(_text(fields.get("seller_nip")), form),
        issue_date=_date(_text(fields.get("issue_date"))),
        invoice_number=_number(fields.get("invoice_number")),
        invoice_type=_text(fields.get("invoice_type")),
        has_attachment=has_attachment,
    )
    return ValidationResult(name, (), invoice, form)


def load_schemas(*forms: InvoiceForm) -> None:
    """Compile the schemas of ``forms`` for the calling thread now, not at its first invoice of each form.

    A prepare worker process does this before it forks the other workers, which then share the compiled schemas.
    """
    for form in forms:
        _state.schema(form)


def check_invoice(data: bytes, name: str, *, xsd: bool = True) -> ValidationResult:
    """Check one invoice and report every problem found, without raising.

    Args:
        data: The invoice's exact bytes.
        name: The file name used in problems.
        xsd: Validate against the bundled XSD (the byte checks and the parse always run).

    Returns:
        The problems, or the validated invoice when there are none.
    """
    return _check(data, name, xsd)


def validate_invoice(data: bytes, name: str, *, xsd: bool = True) -> ValidatedInvoice:
    """Validate one invoice and return what later stages need.

    Args:
        data: The invoice's exact bytes.
        name: The file name used in problems.
        xsd: Validate against the bundled XSD (the byte checks and the parse always run).

    Returns:
        The validated invoice: form, key fields, SHA-256 and size.

    Raises:
        InvoiceError: The invoice breaks a rule; ``.problems`` lists each with file, line and reason.
    """
    result = _check(data, name, xsd)
    if result.invoice is None:
        raise InvoiceError(result.problems)
    return result.invoice
