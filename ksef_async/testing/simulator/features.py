"""``X-KSeF-Feature`` on session open, and the ``subject-identifier-validation`` check of the invoice parties.

With ``X-KSeF-Feature: subject-identifier-validation`` on POST /sessions/online or /sessions/batch, KSeF validates
"the NIP numbers and internal identifiers of the entities named on the invoice" (spec text). The simulator checks
the NIP check digit of ``Podmiot1``, ``Podmiot2``, ``Podmiot3`` and ``PodmiotUpowazniony`` and the ``IDWew``
(internal identifier: NIP-5 digits with a CRC-8 check digit) of ``Podmiot3``; an invoice that fails ends with
status 450 and one detail per bad identifier (a third-party SDK reports 450 on TEST; the spec names no code).
"""

from __future__ import annotations

from aiohttp import web
from lxml import etree

from ksef_async.core.identifiers import is_valid_internal_id, is_valid_nip
from ksef_async.xml.auth_request import safe_xml_parser

__all__ = [
    "FEATURE_HEADER",
    "SUBJECT_IDENTIFIER_VALIDATION",
    "party_identifier_problems",
    "requested_features",
]

FEATURE_HEADER = "X-KSeF-Feature"
"""The request header that switches on optional KSeF behaviour for a session."""
SUBJECT_IDENTIFIER_VALIDATION = "subject-identifier-validation"
"""Feature: validate the NIP and internal identifiers of the invoice's parties."""

_PARTIES = ("Podmiot1", "Podmiot2", "Podmiot3", "PodmiotUpowazniony")
_MAX_FEATURES = 16


def requested_features(request: web.Request) -> frozenset[str]:
    """The features of ``request``: every ``X-KSeF-Feature`` header, comma-separated values, trimmed."""
    values = [
        item.strip()
        for header in request.headers.getall(FEATURE_HEADER, [])
        for item in header.split(",")
        if item.strip()
    ]
    return frozenset(values[:_MAX_FEATURES])


def party_identifier_problems(data: bytes) -> list[str]:
    """One line per NIP / internal identifier of an invoice party whose check digit is wrong (empty: all valid)."""
    try:
        root = etree.fromstring(data, safe_xml_parser())
    except etree.XMLSyntaxError:
        return []  # unparseable invoices are refused by the schema check already
    problems: list[str] = []
    for party in _PARTIES:
        for index, element in enumerate(root.findall(f"{{*}}{party}"), start=1):
            where = party if party in ("Podmiot1", "Podmiot2") else f"{party}[{index}]"
            ident = element.find("{*}DaneIdentyfikacyjne")
            if ident is None:
                continue
            nip = ident.findtext("{*}NIP")
            if nip is not None and not is_valid_nip(nip.strip()):
                problems.append(f"{where}/DaneIdentyfikacyjne/NIP: {nip.strip()} nie jest prawidłowym numerem NIP")
            internal = ident.findtext("{*}IDWew")
            if internal is not None and not is_valid_internal_id(internal.strip()):
                problems.append(
                    f"{where}/DaneIdentyfikacyjne/IDWew: {internal.strip()} nie jest prawidłowym identyfikatorem "
                    "wewnętrznym"
                )
    return problems
