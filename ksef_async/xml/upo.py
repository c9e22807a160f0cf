"""UPO (Urzędowe Poświadczenie Odbioru, KSeF receipt) v4-2/v4-3: parse, validate against the bundled XSD, build."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Sequence
from typing import Any, Literal, cast

import attrs
from lxml import etree

from ksef_async._schemas import schema_path
from ksef_async.errors import KsefError
from ksef_async.xml._resolver import DoctypeRefusedError, parse_untrusted
from ksef_async.xml.auth_request import ContextIdentifier, safe_xml_parser

__all__ = [
    "MAX_DOCUMENTS_PER_PAGE",
    "RECEIVING_ENTITY",
    "UPO_NAMESPACES",
    "Upo",
    "UpoAuthentication",
    "UpoContext",
    "UpoDocument",
    "UpoError",
    "UpoPage",
    "UpoVersion",
    "build_session_upo_pages",
    "build_upo",
    "parse_upo",
    "validate_upo",
]

UpoVersion = Literal["4-2", "4-3"]
UPO_NAMESPACES: dict[str, str] = {
    "4-2": "http://upo.schematy.mf.gov.pl/KSeF/v4-2",
    "4-3": "http://upo.schematy.mf.gov.pl/KSeF/v4-3",
}
_VERSION_BY_NS = {ns: version for version, ns in UPO_NAMESPACES.items()}
_DS_SIGNATURE = "{http://www.w3.org/2000/09/xmldsig#}Signature"
RECEIVING_ENTITY = "Ministerstwo Finansów"
"""The XSD's fixed ``NazwaPodmiotuPrzyjmujacego``; non-production UPOs append `` - <environment name>``."""
MAX_DOCUMENTS_PER_PAGE = 10_000
"""XSD ``Dokument`` maxOccurs: one UPO page lists at most this many invoices."""

UpoContextType = Literal["Nip", "IdWewnetrzny", "IdZlozonyVatUE", "IdDostawcyUslugPeppol"]
# UPO element names of IdKontekstu <-> the API's ContextIdentifier types.
_CONTEXT_TO_API = {
    "Nip": "Nip",
    "IdWewnetrzny": "InternalId",
    "IdZlozonyVatUE": "NipVatUe",
    "IdDostawcyUslugPeppol": "PeppolId",
}
_API_TO_CONTEXT = {api: upo for upo, api in _CONTEXT_TO_API.items()}


class UpoError(KsefError, ValueError):
    """A UPO document cannot be read, or values given to build one are unusable."""


@attrs.frozen
class UpoContext:
    """``Uwierzytelnienie/IdKontekstu``: ``type`` is the UPO element name, ``value`` its text."""

    type: UpoContextType
    value: str

    @property
    def api_identifier(self) -> ContextIdentifier:
        """The same context as the API's ``ContextIdentifier`` (Nip, InternalId, NipVatUe, PeppolId)."""
        return ContextIdentifier(_CONTEXT_TO_API[self.type], self.value)  # type: ignore[arg-type]

    @classmethod
    def from_api(cls, context: ContextIdentifier) -> UpoContext:
        """Convert the API's ``ContextIdentifier`` to its UPO form."""
        return cls(cast("UpoContextType", _API_TO_CONTEXT[context.type]), context.value)


@attrs.frozen
class UpoAuthentication:
    """``Uwierzytelnienie``: the login context and how the session was authenticated.

    Attributes:
        context: ``IdKontekstu``.
        ksef_token_reference: ``NumerReferencyjnyTokenaKSeF`` (KSeF-token login), or None.
        auth_document_digest: ``SkrotDokumentuUwierzytelniajacego`` (base64 SHA-256 of the signed XAdES document),
            or None. Exactly one of the two is set.
    """

    context: UpoContext
    ksef_token_reference: str | None = None
    auth_document_digest: str | None = None


@attrs.frozen
class UpoPage:
    """``OpisPotwierdzenia``: where this page sits in a multi-page session UPO.

    Attributes:
        page: ``Strona`` (1-based).
        page_count: ``LiczbaStron``.
        range_from: ``ZakresDokumentowOd``, ordinal of the first document on the page.
        range_to: ``ZakresDokumentowDo``, ordinal of the last document on the page. The XSD calls it exclusive,
            but the official sample (2 documents: 1..2) uses it inclusively, and so does `build_session_upo_pages`.
        total_documents: ``CalkowitaLiczbaDokumentow`` over all pages.
    """

    page: int
    page_count: int
    range_from: int
    range_to: int
    total_documents: int


@attrs.frozen
class UpoDocument:
    """One ``Dokument``: an invoice acknowledged by the UPO.

    Attributes:
        seller_nip: ``NipSprzedawcy``.
        ksef_number: ``NumerKSeFDokumentu``.
        invoice_number: ``NumerFaktury``.
        issue_date: ``DataWystawieniaFaktury``.
        sent_at: ``DataPrzeslaniaDokumentu`` (timezone-aware).
        ksef_number_assigned_at: ``DataNadaniaNumeruKSeF`` (timezone-aware).
        document_hash: ``SkrotDokumentu``, base64 SHA-256 of the invoice as sent.
        sending_mode: ``TrybWysylki`` (``Online``/``Offline``); v4-3 only, None in v4-2.
    """

    seller_nip: str
    ksef_number: str
    invoice_number: str
    issue_date: dt.date
    sent_at: dt.datetime
    ksef_number_assigned_at: dt.datetime
    document_hash: str
    sending_mode: Literal["Online", "Offline"] | None = None


@attrs.frozen
class Upo:
    """A parsed UPO (root ``Potwierdzenie``).

    Attributes:
        version: ``"4-2"`` or ``"4-3"``, from the namespace.
        receiving_entity: ``NazwaPodmiotuPrzyjmujacego`` (e.g. "Ministerstwo Finansów - środowisko testowe (TE)").
        session_reference_number: ``NumerReferencyjnySesji``.
        authentication: ``Uwierzytelnienie``.
        page: ``OpisPotwierdzenia``; None on single-invoice UPOs.
        logical_structure_name: ``NazwaStrukturyLogicznej`` (e.g. ``Schemat_FA(3)_v1-0E.xsd``).
        form_code: ``KodFormularza`` (e.g. ``FA (3)``).
        documents: The ``Dokument`` entries in document order.
        schema_version: The optional ``wersjaSchemy`` attribute.
        signed: Whether the document carries a ``ds:Signature`` (not verified here).
    """

    version: UpoVersion
    receiving_entity: str
    session_reference_number: str
    authentication: UpoAuthentication
    page: UpoPage | None
    logical_structure_name: str
    form_code: str
    documents: tuple[UpoDocument, ...]
    schema_version: str | None = None
    signed: bool = False


# --- parsing ---------------------------------------------------------------------------------------------------


class _Reader:
    """Reads required/optional children of one namespace, naming the missing element in errors."""

    def __init__(self, ns: str) -> None:
        self.ns = ns

    def child(self, parent: etree._Element, name: str) -> etree._Element:
        found = parent.find(f"{{{self.ns}}}{name}")
        if found is None:
            msg = f"UPO: <{etree.QName(parent).localname}> has no <{name}>"
            raise UpoError(msg)
        return found

    def text(self, parent: etree._Element, name: str) -> str:
        value = (self.child(parent, name).text or "").strip()
        if not value:
            msg = f"UPO: <{name}> is empty"
            raise UpoError(msg)
        return value

    def optional_text(self, parent: etree._Element, name: str) -> str | None:
        found = parent.find(f"{{{self.ns}}}{name}")
        return (found.text or "").strip() if found is not None else None

    def integer(self, parent: etree._Element, name: str) -> int:
        text = self.text(parent, name)
        try:
            return int(text)
        except ValueError:
            msg = f"UPO: <{name}> {text!r} is not an integer"
            raise UpoError(msg) from None

    def date(self, parent: etree._Element, name: str) -> dt.date:
        text = self.text(parent, name)
        try:
            return dt.date.fromisoformat(text[:10])  # xsd:date may carry a timezone suffix
        except ValueError:
            msg = f"UPO: <{name}> {text!r} is not a date"
            raise UpoError(msg) from None

    def datetime(self, parent: etree._Element, name: str) -> dt.datetime:
        text = self.text(parent, name)
        try:
            value = dt.datetime.fromisoformat(text)
        except ValueError:
            msg = f"UPO: <{name}> {text!r} is not a date-time"
            raise UpoError(msg) from None
        # A date-time without offset is KSeF's local time; it never sends one, but keep the value usable.
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _parse_root(data: bytes) -> etree._Element:
    try:
        return parse_untrusted(data, safe_xml_parser())
    except DoctypeRefusedError as exc:
        msg = f"UPO refused: {exc}"
        raise UpoError(msg) from None
    except etree.XMLSyntaxError as exc:
        msg = f"UPO is not well-formed XML: {exc}"
        raise UpoError(msg) from None


def _version_of(root: etree._Element) -> UpoVersion:
    qname = etree.QName(root)
    version = _VERSION_BY_NS.get(qname.namespace or "")
    if version is None or qname.localname != "Potwierdzenie":
        msg = f"not a KSeF UPO: root {root.tag!r}; expected Potwierdzenie in {sorted(_VERSION_BY_NS)}"
        raise UpoError(msg)
    return cast("UpoVersion", version)


def _parse_document(r: _Reader, el: etree._Element) -> UpoDocument:
    mode = r.optional_text(el, "TrybWysylki")
    if mode not in (None, "Online", "Offline"):
        msg = f"UPO: <TrybWysylki> {mode!r} is neither Online nor Offline"
        raise UpoError(msg)
    return UpoDocument(
        seller_nip=r.text(el, "NipSprzedawcy"),
        ksef_number=r.text(el, "NumerKSeFDokumentu"),
        invoice_number=r.text(el, "NumerFaktury"),
        issue_date=r.date(el, "DataWystawieniaFaktury"),
        sent_at=r.datetime(el, "DataPrzeslaniaDokumentu"),
        ksef_number_assigned_at=r.datetime(el, "DataNadaniaNumeruKSeF"),
        document_hash=r.text(el, "SkrotDokumentu"),
        sending_mode=cast("Literal['Online', 'Offline'] | None", mode),
    )


def parse_upo(data: bytes) -> Upo:
    """Parse a UPO v4-2 or v4-3 document (signed or not) into `Upo`.

    Parsing is structural, not a schema check (see `validate_upo`); a ``ds:Signature`` is tolerated and ignored.

    Raises:
        UpoError: Not XML, not a UPO, or a required element is missing or unreadable.
    """
    root = _parse_root(data)
    version = _version_of(root)
    r = _Reader(UPO_NAMESPACES[version])
    auth_el = r.child(root, "Uwierzytelnienie")
    context_el = r.child(auth_el, "IdKontekstu")
    choice = next((c for c in context_el if isinstance(c.tag, str)), None)
    if choice is None or etree.QName(choice).localname not in _CONTEXT_TO_API:
        msg = f"UPO: <IdKontekstu> must hold one of {sorted(_CONTEXT_TO_API)}"
        raise UpoError(msg)
    token_ref = r.optional_text(auth_el, "NumerReferencyjnyTokenaKSeF")
    auth_digest = r.optional_text(auth_el, "SkrotDokumentuUwierzytelniajacego")
    if (token_ref is None) == (auth_digest is None):
        msg = (
            "UPO: <Uwierzytelnienie> must hold exactly one of NumerReferencyjnyTokenaKSeF, "
            "SkrotDokumentuUwierzytelniajacego"
        )
        raise UpoError(msg)
    page_el = root.find(f"{{{r.ns}}}OpisPotwierdzenia")
    page = (
        UpoPage(
            page=r.integer(page_el, "Strona"),
            page_count=r.integer(page_el, "LiczbaStron"),
            range_from=r.integer(page_el, "ZakresDokumentowOd"),
            range_to=r.integer(page_el, "ZakresDokumentowDo"),
            total_documents=r.integer(page_el, "CalkowitaLiczbaDokumentow"),
        )
        if page_el is not None
        else None
    )
    documents = tuple(_parse_document(r, el) for el in root.iterfind(f"{{{r.ns}}}Dokument"))
    if not documents:
        msg = "UPO lists no <Dokument>"
        raise UpoError(msg)
    return Upo(
        version=version,
        receiving_entity=r.text(root, "NazwaPodmiotuPrzyjmujacego"),
        session_reference_number=r.text(root, "NumerReferencyjnySesji"),
        authentication=UpoAuthentication(
            context=UpoContext(cast("UpoContextType", etree.QName(choice).localname), (choice.text or "").strip()),
            ksef_token_reference=token_ref,
            auth_document_digest=auth_digest,
        ),
        page=page,
        logical_structure_name=r.text(root, "NazwaStrukturyLogicznej"),
        form_code=r.text(root, "KodFormularza"),
        documents=documents,
        schema_version=root.get("wersjaSchemy"),
        signed=root.find(f".//{_DS_SIGNATURE}") is not None,
    )


# --- validation ------------------------------------------------------------------------------------------------


@functools.cache
def _upo_schema(version: UpoVersion) -> etree.XMLSchema:
    """Compile the bundled UPO XSD without the ``fixed`` value of NazwaPodmiotuPrzyjmujacego (checked separately)."""
    text = schema_path("xsd", "UPO", f"upo-v{version}.xsd").read_text(encoding="utf-8")
    relaxed = text.replace(
        f'name="NazwaPodmiotuPrzyjmujacego" fixed="{RECEIVING_ENTITY}"', 'name="NazwaPodmiotuPrzyjmujacego"'
    )
    if relaxed == text:  # the bundled XSD changed shape: do not silently validate something else
        msg = f"upo-v{version}.xsd no longer declares the fixed NazwaPodmiotuPrzyjmujacego this module relaxes"
        raise RuntimeError(msg)
    return etree.XMLSchema(etree.fromstring(relaxed.encode("utf-8"), safe_xml_parser()))


def validate_upo(data: bytes) -> list[str]:
    """Validate a UPO against the bundled v4-2/v4-3 XSD, with two documented relaxations.

    1. ``NazwaPodmiotuPrzyjmujacego`` is fixed to "Ministerstwo Finansów" by the XSD, yet KSeF's own TEST/DEMO
       UPOs say "Ministerstwo Finansów - <environment>" (e.g. "- środowisko testowe (TE)"). The schema is compiled
       without the ``fixed`` constraint and the value is instead required to be exactly that name or that name
       followed by `` - `` and a non-empty suffix.
    2. The XSD declares no ``ds:Signature``, while KSeF signs UPOs (XAdES). Signatures that are children of the root
       are removed from a copy before validation; the signature itself is not verified.

    Returns:
        Readable problems (``line N: message``); empty when valid.
    """
    try:
        root = _parse_root(data)
        version = _version_of(root)
    except UpoError as exc:
        return [str(exc)]
    for signature in root.findall(_DS_SIGNATURE):
        root.remove(signature)
    problems: list[str] = []
    schema = _upo_schema(version)
    if not schema.validate(root):
        problems.extend(f"line {e.line}: {e.message}" for e in cast("Iterable[Any]", schema.error_log))
    name_el = root.find(f"{{{UPO_NAMESPACES[version]}}}NazwaPodmiotuPrzyjmujacego")
    if name_el is not None:
        name = " ".join((name_el.text or "").split())
        suffix = name.removeprefix(f"{RECEIVING_ENTITY} - ")
        if name != RECEIVING_ENTITY and (suffix == name or not suffix.strip()):
            problems.append(
                f"line {name_el.sourceline}: NazwaPodmiotuPrzyjmujacego {name!r} is neither "
                f"{RECEIVING_ENTITY!r} nor '{RECEIVING_ENTITY} - <environment>'"
            )
    return problems


# --- building --------------------------------------------------------------------------------------------------


def _iso_datetime(value: dt.datetime, field: str) -> str:
    if value.tzinfo is None:
        msg = f"UpoDocument.{field} must be timezone-aware, got {value.isoformat()}"
        raise UpoError(msg)
    return value.isoformat(timespec="milliseconds")


def build_upo(
    *,
    session_reference_number: str,
    context: ContextIdentifier,
    documents: Sequence[UpoDocument],
    ksef_token_reference: str | None = None,
    auth_document_digest: str | None = None,
    form_code: str = "FA (3)",
    logical_structure_name: str = "Schemat_FA(3)_v1-0E.xsd",
    page: UpoPage | None = None,
    environment_name: str | None = None,
) -> bytes:
    """Build an unsigned UPO v4-3 document: a session UPO page, or a single invoice's UPO (``page=None``).

    KSeF signs its UPOs with XAdES; this builder (used by the simulator) does not.

    Args:
        session_reference_number: ``NumerReferencyjnySesji``.
        context: The session's login context (mapped to the UPO's ``IdKontekstu`` element names).
        documents: 1..10,000 invoices for this page (every ``sending_mode`` must be set: v4-3 requires it).
        ksef_token_reference: Reference number of the KSeF token used to log in; or
        auth_document_digest: base64 SHA-256 of the signed XAdES login document (exactly one of the two).
        form_code: ``KodFormularza``, e.g. ``FA (3)``.
        logical_structure_name: ``NazwaStrukturyLogicznej``, e.g. ``Schemat_FA(3)_v1-0E.xsd``.
        page: ``OpisPotwierdzenia`` for session UPO pages; None for a single invoice.
        environment_name: Appended to "Ministerstwo Finansów" as `` - <name>`` (e.g. "środowisko testowe (TE)");
            None for production.

    Returns:
        UTF-8 XML with an XML declaration.

    Raises:
        UpoError: Inconsistent or missing values.
    """
    if (ksef_token_reference is None) == (auth_document_digest is None):
        msg = "exactly one of ksef_token_reference and auth_document_digest is required"
        raise UpoError(msg)
    if not 1 <= len(documents) <= MAX_DOCUMENTS_PER_PAGE:
        msg = f"a UPO lists 1..{MAX_DOCUMENTS_PER_PAGE} documents, got {len(documents)}"
        raise UpoError(msg)
    if page is not None and page.range_to - page.range_from + 1 != len(documents):
        msg = f"UpoPage range {page.range_from}..{page.range_to} does not match {len(documents)} documents"
        raise UpoError(msg)
    ns = UPO_NAMESPACES["4-3"]

    def add(parent: etree._Element, tag: str, text: str | None = None) -> etree._Element:
        el = etree.SubElement(parent, f"{{{ns}}}{tag}")
        if text is not None:
            el.text = text
        return el

    root = etree.Element(f"{{{ns}}}Potwierdzenie", nsmap={None: ns})  # type: ignore[dict-item]
    add(
        root,
        "NazwaPodmiotuPrzyjmujacego",
        f"{RECEIVING_ENTITY} - {environment_name}" if environment_name else RECEIVING_ENTITY,
    )
    add(root, "NumerReferencyjnySesji", session_reference_number)
    auth = add(root, "Uwierzytelnienie")
    upo_context = UpoContext.from_api(context)
    add(add(auth, "IdKontekstu"), upo_context.type, upo_context.value)
    if ksef_token_reference is not None:
        add(auth, "NumerReferencyjnyTokenaKSeF", ksef_token_reference)
    else:
        add(auth, "SkrotDokumentuUwierzytelniajacego", auth_document_digest)
    if page is not None:
        description = add(root, "OpisPotwierdzenia")
        add(description, "Strona", str(page.page))
        add(description, "LiczbaStron", str(page.page_count))
        add(description, "ZakresDokumentowOd", str(page.range_from))
        add(description, "ZakresDokumentowDo", str(page.range_to))
        add(description, "CalkowitaLiczbaDokumentow", str(page.total_documents))
    add(root, "NazwaStrukturyLogicznej", logical_structure_name)
    add(root, "KodFormularza", form_code)
    for document in documents:
        if document.sending_mode is None:
            msg = f"UpoDocument {document.ksef_number}: sending_mode (TrybWysylki) is required in UPO v4-3"
            raise UpoError(msg)
        el = add(root, "Dokument")
        add(el, "NipSprzedawcy", document.seller_nip)
        add(el, "NumerKSeFDokumentu", document.ksef_number)
        add(el, "NumerFaktury", document.invoice_number)
        add(el, "DataWystawieniaFaktury", document.issue_date.isoformat())
        add(el, "DataPrzeslaniaDokumentu", _iso_datetime(document.sent_at, "sent_at"))
        add(el, "DataNadaniaNumeruKSeF", _iso_datetime(document.ksef_number_assigned_at, "ksef_number_assigned_at"))
        add(el, "SkrotDokumentu", document.document_hash)
        add(el, "TrybWysylki", document.sending_mode)
    etree.indent(root, space="\t")
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


def build_session_upo_pages(
    *,
    session_reference_number: str,
    context: ContextIdentifier,
    documents: Sequence[UpoDocument],
    page_size: int = MAX_DOCUMENTS_PER_PAGE,
    **options: Any,
) -> list[bytes]:
    """Split a session's documents into UPO pages of at most ``page_size`` entries and build each page.

    Every page carries ``OpisPotwierdzenia`` (page n of m, the 1-based inclusive document range, the total).
    ``options`` are passed to `build_upo` (``ksef_token_reference`` or ``auth_document_digest``, ``form_code``,
    ``logical_structure_name``, ``environment_name``).

    Raises:
        UpoError: No documents, a bad page size, or `build_upo`'s reasons.
    """
    if not 1 <= page_size <= MAX_DOCUMENTS_PER_PAGE:
        msg = f"page_size must be 1..{MAX_DOCUMENTS_PER_PAGE}, got {page_size}"
        raise UpoError(msg)
    if not documents:
        msg = "a session UPO needs at least one document"
        raise UpoError(msg)
    total = len(documents)
    page_count = -(-total // page_size)
    pages = []
    for index in range(page_count):
        chunk = documents[index * page_size : (index + 1) * page_size]
        first = index * page_size + 1
        page = UpoPage(index + 1, page_count, first, first + len(chunk) - 1, total)
        pages.append(
            build_upo(
                session_reference_number=session_reference_number,
                context=context,
                documents=chunk,
                page=page,
                **options,
            )
        )
    return pages
