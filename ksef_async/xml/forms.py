"""The invoice forms KSeF accepts (FA(3), FA(2), FA_RR(1), PEF(3), PEF_KOR(3)) and how to tell them apart."""

from __future__ import annotations

import io

import attrs
from lxml import etree

from ksef_async.errors import InvoiceError, InvoiceProblem
from ksef_async.xml._resolver import RefuseAllResolver, doctype_in_prolog

__all__ = [
    "FA2",
    "FA3",
    "FA_RR1",
    "FORMS",
    "PEF3",
    "PEF_KOR3",
    "FormCode",
    "InvoiceForm",
    "detect_form",
    "form_for_tag",
    "unknown_form_problem",
]

_FA3_NS = "http://crd.gov.pl/wzor/2025/06/25/13775/"
_FA2_NS = "http://crd.gov.pl/wzor/2023/06/29/12648/"
_FA_RR1_NS = "http://crd.gov.pl/wzor/2026/03/06/14189/"
_UBL_INVOICE_NS = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
_UBL_CREDIT_NOTE_NS = "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"
_CAC = "{urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2}"
_CBC = "{urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2}"


@attrs.frozen
class FormCode:
    """The spec's ``FormCode`` object sent when a session is opened.

    Attributes:
        system_code: ``systemCode``, e.g. ``"FA (3)"`` (note the space).
        schema_version: ``schemaVersion``, e.g. ``"1-0E"``.
        value: ``value``, e.g. ``"FA"``.
    """

    system_code: str
    schema_version: str
    value: str

    def to_json(self) -> dict[str, str]:
        """Return the object as the spec spells it (``systemCode``, ``schemaVersion``, ``value``)."""
        return {"systemCode": self.system_code, "schemaVersion": self.schema_version, "value": self.value}


@attrs.frozen
class InvoiceForm:
    """One invoice form: how to recognise it, its bundled XSD, its form code and where its key fields live.

    The ``*_path`` attributes are ElementPath expressions relative to the root element (Clark notation).

    Attributes:
        name: Human name, equal to ``form_code.system_code`` (e.g. ``"FA (3)"``).
        namespace: Namespace of the root element.
        root: Local name of the root element.
        form_code: The session ``formCode``.
        xsd: Path parts of the bundled XSD under the schemas directory.
        seller_nip_path: Seller (or supplier) tax id.
        issue_date_path: Issue date.
        invoice_number_path: Invoice number.
        invoice_type_path: Invoice kind (``RodzajFaktury`` or the UBL type code).
        attachment_path: The attachment element (FA(3) ``Zalacznik``), ``None`` when the form has none.
    """

    name: str
    namespace: str
    root: str
    form_code: FormCode
    xsd: tuple[str, ...]
    seller_nip_path: str
    issue_date_path: str
    invoice_number_path: str
    invoice_type_path: str
    attachment_path: str | None = None

    @property
    def tag(self) -> str:
        """The root element's tag in Clark notation (``{namespace}root``)."""
        return f"{{{self.namespace}}}{self.root}"


def _fa(ns: str, *parts: str) -> str:
    return "/".join(f"{{{ns}}}{p}" for p in parts)


FA3 = InvoiceForm(
    name="FA (3)",
    namespace=_FA3_NS,
    root="Faktura",
    form_code=FormCode("FA (3)", "1-0E", "FA"),
    xsd=("xsd", "FA", "schemat_FA(3)_v1-0E.xsd"),
    seller_nip_path=_fa(_FA3_NS, "Podmiot1", "DaneIdentyfikacyjne", "NIP"),
    issue_date_path=_fa(_FA3_NS, "Fa", "P_1"),
    invoice_number_path=_fa(_FA3_NS, "Fa", "P_2"),
    invoice_type_path=_fa(_FA3_NS, "Fa", "RodzajFaktury"),
    attachment_path=_fa(_FA3_NS, "Zalacznik"),
)
FA2 = InvoiceForm(
    name="FA (2)",
    namespace=_FA2_NS,
    root="Faktura",
    form_code=FormCode("FA (2)", "1-0E", "FA"),
    xsd=("xsd", "FA", "schemat_FA(2)_v1-0E.xsd"),
    seller_nip_path=_fa(_FA2_NS, "Podmiot1", "DaneIdentyfikacyjne", "NIP"),
    issue_date_path=_fa(_FA2_NS, "Fa", "P_1"),
    invoice_number_path=_fa(_FA2_NS, "Fa", "P_2"),
    invoice_type_path=_fa(_FA2_NS, "Fa", "RodzajFaktury"),
)
# FA_RR: Podmiot1 is the supplier (the flat-rate farmer, XSD "Dane dostawcy"); P_4B is the issue date and P_4C
# the invoice number (XSD "Data wystawienia faktury", "Kolejny numer faktury").
FA_RR1 = InvoiceForm(
    name="FA_RR (1)",
    namespace=_FA_RR1_NS,
    root="Faktura",
    form_code=FormCode("FA_RR (1)", "1-1E", "FA_RR"),
    xsd=("xsd", "RR", "schemat_FA_RR(1)_v1-1E.xsd"),
    seller_nip_path=_fa(_FA_RR1_NS, "Podmiot1", "DaneIdentyfikacyjne", "NIP"),
    issue_date_path=_fa(_FA_RR1_NS, "FakturaRR", "P_4B"),
    invoice_number_path=_fa(_FA_RR1_NS, "FakturaRR", "P_4C"),
    invoice_type_path=_fa(_FA_RR1_NS, "FakturaRR", "RodzajFaktury"),
)
# PEF (UBL 2.1): the seller's VAT id is AccountingSupplierParty/Party/PartyTaxScheme/CompanyID, the number cbc:ID,
# the kind the InvoiceTypeCode / CreditNoteTypeCode (UNCL1001, e.g. 380, 381).
_PEF_SELLER = f"{_CAC}AccountingSupplierParty/{_CAC}Party/{_CAC}PartyTaxScheme/{_CBC}CompanyID"
PEF3 = InvoiceForm(
    name="PEF (3)",
    namespace=_UBL_INVOICE_NS,
    root="Invoice",
    form_code=FormCode("PEF (3)", "2-1", "PEF"),
    xsd=("xsd", "PEF", "Schemat_PEF(3)_v2-1.xsd"),
    seller_nip_path=_PEF_SELLER,
    issue_date_path=f"{_CBC}IssueDate",
    invoice_number_path=f"{_CBC}ID",
    invoice_type_path=f"{_CBC}InvoiceTypeCode",
)
PEF_KOR3 = InvoiceForm(
    name="PEF_KOR (3)",
    namespace=_UBL_CREDIT_NOTE_NS,
    root="CreditNote",
    form_code=FormCode("PEF_KOR (3)", "2-1", "PEF"),
    xsd=("xsd", "PEF", "Schemat_PEF_KOR(3)_v2-1.xsd"),
    seller_nip_path=_PEF_SELLER,
    issue_date_path=f"{_CBC}IssueDate",
    invoice_number_path=f"{_CBC}ID",
    invoice_type_path=f"{_CBC}CreditNoteTypeCode",
)

FORMS: tuple[InvoiceForm, ...] = (FA3, FA2, FA_RR1, PEF3, PEF_KOR3)
_BY_TAG = {form.tag: form for form in FORMS}


def form_for_tag(tag: str) -> InvoiceForm | None:
    """Return the form whose root element has ``tag`` (Clark notation), or ``None``."""
    return _BY_TAG.get(tag)


def detect_form(data: bytes, name: str = "<invoice>") -> InvoiceForm:
    """Detect the form of an invoice from its root element, reading no further than the root's start tag.

    Args:
        data: The invoice's bytes.
        name: The file name used in the error.

    Raises:
        InvoiceError: The bytes are not XML up to the root element (rule ``xml``), or the root is not a KSeF
            invoice form (rule ``form``).
    """
    # iterparse stops after the first start event: the body is never parsed; no DOCTYPE, entities, DTDs,
    # network or any other external resolution.
    if doctype_in_prolog(data):
        raise InvoiceError([InvoiceProblem(name, "a DOCTYPE declaration is not allowed", None, "doctype")])
    events = etree.iterparse(
        io.BytesIO(data), events=("start",), resolve_entities=False, no_network=True, load_dtd=False
    )
    events.resolvers.add(RefuseAllResolver())
    try:
        _, element = next(iter(events))
    except etree.XMLSyntaxError as exc:
        problem = InvoiceProblem(name, f"not well-formed XML: {exc.msg}", exc.lineno or None, "xml")
        raise InvoiceError([problem]) from exc
    except StopIteration as exc:  # pragma: no cover - libxml2 reports an empty document as a syntax error
        raise InvoiceError([InvoiceProblem(name, "no root element", None, "xml")]) from exc
    form = form_for_tag(str(element.tag))
    if form is None:
        sourceline: object = element.sourceline  # lxml-stubs type it loosely
        line = sourceline if isinstance(sourceline, int) else None
        raise InvoiceError([unknown_form_problem(name, str(element.tag), line)])
    return form


def unknown_form_problem(name: str, tag: str, line: int | None) -> InvoiceProblem:
    """Build the problem reported when the root element is not one of `FORMS`."""
    known = ", ".join(f"{f.name} {{{f.namespace}}}{f.root}" for f in FORMS)
    return InvoiceProblem(
        name, f"root element {tag} is not a KSeF invoice form; expected one of: {known}", line, "form"
    )
