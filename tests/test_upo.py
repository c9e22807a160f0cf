"""UPO parsing, relaxed XSD validation and building, against every official v4-2/v4-3 sample."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import attrs
import pytest
from lxml import etree

from ksef_async._schemas import schema_path
from ksef_async.core.identifiers import generate_ksef_number, is_valid_ksef_number
from ksef_async.errors import KsefError
from ksef_async.testing.certificates import generate_seal_certificate
from ksef_async.xml.auth_request import ContextIdentifier
from ksef_async.xml.upo import (
    MAX_DOCUMENTS_PER_PAGE,
    UPO_NAMESPACES,
    UpoContext,
    UpoDocument,
    UpoError,
    UpoPage,
    build_session_upo_pages,
    build_upo,
    parse_upo,
    validate_upo,
)
from ksef_async.xml.xades import KeyCertSigner

SAMPLES = sorted((Path(__file__).parent / "data" / "samples" / "upo").rglob("*.xml"))
SESSION_REF = "20250916-SO-2C3E6C5000-1AA7D2D2C2-E4"
DIGEST = "kyqH+QUgP8ATWd/95IY632mP4uqibwG66Oqclq9+qno="
WARSAW = dt.timezone(dt.timedelta(hours=2))


def _sample(version: str, folder: str, name: str) -> bytes:
    return (Path(__file__).parent / "data" / "samples" / "upo" / version / folder / name).read_bytes()


def test_all_twelve_official_samples_are_present() -> None:
    assert len(SAMPLES) == 12


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_every_official_sample_parses_and_validates(path: Path) -> None:
    data = path.read_bytes()
    upo = parse_upo(data)
    version = path.parent.parent.name.removeprefix("v")
    assert upo.version == version
    assert upo.receiving_entity.startswith("Ministerstwo Finansów")
    assert upo.form_code == "FA (3)"
    assert upo.documents
    for document in upo.documents:
        assert is_valid_ksef_number(document.ksef_number)
        assert document.sent_at.tzinfo is not None
        assert document.sending_mode == ("Online" if version == "4-3" else None)
    if "sesja" in path.name:
        assert upo.page == UpoPage(page=1, page_count=1, range_from=1, range_to=2, total_documents=2)
        assert len(upo.documents) == 2
    else:
        assert upo.page is None
        assert len(upo.documents) == 1
    assert validate_upo(data) == []


def test_parsed_values_match_the_v43_nip_session_sample() -> None:
    upo = parse_upo(_sample("v4-3", "kontekst-nip", "upo-sesja-kontekst-id-nip.xml"))
    assert upo.receiving_entity == "Ministerstwo Finansów - środowisko testowe (TE)"
    assert upo.session_reference_number == "36950822-93-9D5A28BFDA-47C899773E-5C"
    assert upo.authentication.context == UpoContext("Nip", "5265877635")
    assert upo.authentication.context.api_identifier == ContextIdentifier("Nip", "5265877635")
    assert upo.authentication.auth_document_digest == DIGEST
    assert upo.authentication.ksef_token_reference is None
    assert upo.logical_structure_name == "Schemat_FA(3)_v1-0E.xsd"
    first = upo.documents[0]
    assert first == UpoDocument(
        seller_nip="5265877635",
        ksef_number="5265877635-20250916-010040741B3E-46",
        invoice_number="FA/SIGTF-3388125147/11/2025",
        issue_date=dt.date(2025, 9, 16),
        sent_at=dt.datetime(2025, 9, 16, 11, 2, 41, 584000, tzinfo=WARSAW),
        ksef_number_assigned_at=dt.datetime(2025, 9, 16, 11, 2, 42, 84000, tzinfo=WARSAW),
        document_hash="jli86Kp2Kw7jppX59P8VmjWRcwLTvsPK3DcPEB87mNk=",
        sending_mode="Online",
    )
    assert not upo.signed


def test_token_login_and_composite_contexts_are_read() -> None:
    internal = parse_upo(_sample("v4-3", "kontekst-internal-id", "upo-faktura-internal-id.xml"))
    assert internal.authentication.ksef_token_reference == "20250819-EC-1ECDD12000-5EE71AE5E3-B7"
    assert internal.authentication.auth_document_digest is None
    assert internal.authentication.context.api_identifier == ContextIdentifier("InternalId", "5265877635-12345")
    vat_ue = parse_upo(_sample("v4-2", "kontekst-id-zlozony-vat-ue", "upo-sesja-id-zlozony-vat-ue.xml"))
    assert vat_ue.authentication.context.api_identifier == ContextIdentifier("NipVatUe", "5265877635-ATU12345678")
    assert vat_ue.logical_structure_name == "1-0E"


def test_te_samples_need_the_environment_name_relaxation() -> None:
    data = _sample("v4-3", "kontekst-nip", "upo-sesja-kontekst-id-nip.xml")
    strict = etree.XMLSchema(etree.parse(str(schema_path("xsd", "UPO", "upo-v4-3.xsd"))))
    assert not strict.validate(etree.fromstring(data))  # the fixed value rejects "... - środowisko testowe (TE)"
    assert validate_upo(data) == []
    other = data.replace("Ministerstwo Finansów - środowisko".encode(), "Ministerstwo Zdrowia - środowisko".encode())
    assert any("NazwaPodmiotuPrzyjmujacego" in p for p in validate_upo(other))
    dangling = data.replace(" - środowisko testowe (TE)".encode(), b" - ")
    assert any("NazwaPodmiotuPrzyjmujacego" in p for p in validate_upo(dangling))


def test_a_missing_required_element_fails_validation_and_parsing() -> None:
    data = _sample("v4-3", "kontekst-nip", "upo-faktura-kontekst-id-nip.xml")
    root = etree.fromstring(data)
    ns = {"u": UPO_NAMESPACES["4-3"]}
    document = root.find("u:Dokument", ns)
    assert document is not None
    document.remove(document.find("u:SkrotDokumentu", ns))  # type: ignore[arg-type]
    broken = etree.tostring(root, xml_declaration=True, encoding="utf-8")
    problems = validate_upo(broken)
    assert problems
    assert any("TrybWysylki" in p or "SkrotDokumentu" in p for p in problems)
    with pytest.raises(UpoError, match="SkrotDokumentu"):
        parse_upo(broken)


def test_a_v42_document_lacking_v43_fields_fails_under_v43() -> None:
    data = _sample("v4-2", "kontekst-nip", "upo-faktura-kontekst-id-nip.xml")
    as_v43 = data.replace(UPO_NAMESPACES["4-2"].encode(), UPO_NAMESPACES["4-3"].encode())
    assert any("TrybWysylki" in p for p in validate_upo(as_v43))


def test_a_signed_upo_is_tolerated() -> None:
    data = _sample("v4-3", "kontekst-nip", "upo-sesja-kontekst-id-nip.xml")
    seal = generate_seal_certificate(organization_name="Ministerstwo Finansów", nip="5261040828")
    signed = KeyCertSigner(seal.key, seal.certificate).sign(data)
    assert b"Signature" in signed
    assert validate_upo(signed) == []
    upo = parse_upo(signed)
    assert upo.signed
    assert upo == attrs.evolve(parse_upo(data), signed=True)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"<Potwierdzenie", "well-formed"),
        (b'<Potwierdzenie xmlns="urn:other"/>', "not a KSeF UPO"),
        (b"<AuthTokenRequest/>", "not a KSeF UPO"),
    ],
)
def test_non_upo_input_is_a_typed_error(data: bytes, fragment: str) -> None:
    with pytest.raises(UpoError, match=fragment) as info:
        parse_upo(data)
    assert isinstance(info.value, KsefError)
    assert validate_upo(data)


# --- building --------------------------------------------------------------------------------------------------


def _documents(count: int, seed: int = 7) -> list[UpoDocument]:
    rng = random.Random(seed)
    day = dt.date(2026, 3, 2)
    sent = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)
    return [
        UpoDocument(
            seller_nip="5265877635",
            ksef_number=generate_ksef_number("5265877635", day, rng),
            invoice_number=f"FV/{i}/2026",
            issue_date=day,
            sent_at=sent + dt.timedelta(seconds=i),
            ksef_number_assigned_at=sent + dt.timedelta(seconds=i, milliseconds=350),
            document_hash=DIGEST,
            sending_mode="Offline" if i % 5 == 0 else "Online",
        )
        for i in range(count)
    ]


def test_single_invoice_upo_round_trips() -> None:
    documents = _documents(1)
    data = build_upo(
        session_reference_number=SESSION_REF,
        context=ContextIdentifier("InternalId", "6824515772-12343"),
        documents=documents,
        ksef_token_reference="20250819-EC-1ECDD12000-5EE71AE5E3-B7",
        environment_name="środowisko testowe (TE)",
    )
    assert validate_upo(data) == []
    upo = parse_upo(data)
    assert upo.version == "4-3"
    assert upo.receiving_entity == "Ministerstwo Finansów - środowisko testowe (TE)"
    assert upo.authentication.context == UpoContext("IdWewnetrzny", "6824515772-12343")
    assert upo.authentication.ksef_token_reference == "20250819-EC-1ECDD12000-5EE71AE5E3-B7"
    assert upo.page is None
    assert upo.documents == tuple(documents)


def test_production_upo_validates_even_against_the_strict_xsd() -> None:
    data = build_upo(
        session_reference_number=SESSION_REF,
        context=ContextIdentifier("Nip", "5265877635"),
        documents=_documents(3),
        auth_document_digest=DIGEST,
        page=UpoPage(1, 1, 1, 3, 3),
    )
    strict = etree.XMLSchema(etree.parse(str(schema_path("xsd", "UPO", "upo-v4-3.xsd"))))
    assert strict.validate(etree.fromstring(data)), strict.error_log
    assert parse_upo(data).receiving_entity == "Ministerstwo Finansów"


def test_session_pages_split_at_ten_thousand_documents() -> None:
    documents = _documents(MAX_DOCUMENTS_PER_PAGE + 3)
    pages = build_session_upo_pages(
        session_reference_number=SESSION_REF,
        context=ContextIdentifier("NipVatUe", "5265877635-ATU12345678"),
        documents=documents,
        auth_document_digest=DIGEST,
        environment_name="środowisko demonstracyjne (DEMO)",
    )
    assert len(pages) == 2
    parsed = [parse_upo(page) for page in pages]
    assert [p.page for p in parsed] == [
        UpoPage(1, 2, 1, MAX_DOCUMENTS_PER_PAGE, MAX_DOCUMENTS_PER_PAGE + 3),
        UpoPage(2, 2, MAX_DOCUMENTS_PER_PAGE + 1, MAX_DOCUMENTS_PER_PAGE + 3, MAX_DOCUMENTS_PER_PAGE + 3),
    ]
    assert parsed[0].documents + parsed[1].documents == tuple(documents)
    assert parsed[0].authentication.context == UpoContext("IdZlozonyVatUE", "5265877635-ATU12345678")
    for page in pages:
        assert validate_upo(page) == []


def test_small_page_size_pagination() -> None:
    pages = build_session_upo_pages(
        session_reference_number=SESSION_REF,
        context=ContextIdentifier("PeppolId", "PPL123456"),
        documents=_documents(5),
        page_size=2,
        ksef_token_reference="20250819-EC-1ECDD12000-5EE71AE5E3-B7",
    )
    assert [parse_upo(p).page for p in pages] == [
        UpoPage(1, 3, 1, 2, 5),
        UpoPage(2, 3, 3, 4, 5),
        UpoPage(3, 3, 5, 5, 5),
    ]
    assert all(validate_upo(p) == [] for p in pages)


def test_invalid_document_values_fail_validation() -> None:
    # build_upo leaves pattern checks to the XSD; validate_upo must catch what slips through.
    duplicate = [*_documents(2)]
    duplicate[1] = attrs.evolve(duplicate[1], ksef_number=duplicate[0].ksef_number)
    data = build_upo(
        session_reference_number=SESSION_REF,
        context=ContextIdentifier("Nip", "5265877635"),
        documents=duplicate,
        auth_document_digest=DIGEST,
    )
    assert validate_upo(data)  # the XSD's unique NumerKSeFDokumentu constraint
    short_hash = [attrs.evolve(_documents(1)[0], document_hash="abc")]
    data = build_upo(
        session_reference_number=SESSION_REF,
        context=ContextIdentifier("Nip", "5265877635"),
        documents=short_hash,
        auth_document_digest=DIGEST,
    )
    assert any("SkrotDokumentu" in p for p in validate_upo(data))


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"documents": []}, "1..10000"),
        ({"ksef_token_reference": "20250819-EC-1ECDD12000-5EE71AE5E3-B7"}, "exactly one"),
        ({"page": UpoPage(1, 1, 1, 5, 5)}, "does not match"),
        (
            {
                "documents": [
                    UpoDocument(
                        "5265877635",
                        "x",
                        "y",
                        dt.date(2026, 1, 1),
                        dt.datetime(2026, 1, 1),  # noqa: DTZ001 - naive on purpose
                        dt.datetime(2026, 1, 1),  # noqa: DTZ001
                        DIGEST,
                        "Online",
                    )
                ]
            },
            "timezone-aware",
        ),
        (
            {
                "documents": [
                    UpoDocument(
                        "5265877635",
                        "x",
                        "y",
                        dt.date(2026, 1, 1),
                        dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                        dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                        DIGEST,
                    )
                ]
            },
            "TrybWysylki",
        ),
    ],
)
def test_build_rejects_inconsistent_values(kwargs: dict[str, object], fragment: str) -> None:
    arguments: dict[str, object] = {
        "session_reference_number": SESSION_REF,
        "context": ContextIdentifier("Nip", "5265877635"),
        "documents": _documents(2),
        "auth_document_digest": DIGEST,
        **kwargs,
    }
    with pytest.raises(UpoError, match=fragment):
        build_upo(**arguments)  # type: ignore[arg-type]
