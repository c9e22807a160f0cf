"""Offline invoice preflight and XSD validation, form detection, and the `ksef-async validate` command."""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from ksef_async._schemas import schema_path
from ksef_async.cli._commands import app
from ksef_async.errors import InvoiceError
from ksef_async.xml import FORMS, check_invoice, detect_form, validate_invoice
from ksef_async.xml._resolver import BUNDLED_URLS, BundledSchemaResolver, RemoteSchemaRefusedError, schema_parser
from ksef_async.xml.forms import FA2, FA3, FA_RR1, PEF3, PEF_KOR3, InvoiceForm
from ksef_async.xml.preflight import MAX_INVOICE_SIZE, discouraged_characters, preflight
from ksef_async.xml.validation import compile_schema, readable_schema_error

INVOICES = Path(__file__).parent / "data" / "samples" / "invoices"
SAMPLE = INVOICES / "fa3-invoice-sample.xml"
SELLER = "5265877635"
BUYER = "6808208874"
_SUBSTITUTIONS = {
    "#nip#": SELLER,
    "#supplier_nip#": SELLER,
    "#buyer_nip#": BUYER,
    "#invoice_number#": "FV/7/2026",
    "#issue_date#": "2026-03-01",
    "#due_date#": "2026-03-15",
    "#buyer_reference#": "REF-1",
    "#iban#": "PL61109010140000071219812874",
    "#ksef_number#": "5265877635-20260301-0100001AF629-AF",
}


def _fill(template: str) -> bytes:
    """Substitute the official templates' placeholders (``#compliant#``/``#extended#`` are literal UBL ids)."""
    text = (INVOICES / template).read_text(encoding="utf-8")
    for placeholder, value in _SUBSTITUTIONS.items():
        text = text.replace(placeholder, value)
    assert not re.search(r"#(nip|supplier_nip|buyer_nip|invoice_number|issue_date|due_date|iban)#", text)
    return text.encode()


def _fa2_from_fa3() -> bytes:
    """No official FA(2) template is bundled: the FA(3) one in the FA(2) namespace, minus FA(3)-only JST/GV."""
    text = _fill("invoice-template-fa-3.xml").decode()
    text = re.sub(r"\s*<(JST|GV)>\d</\1>", "", text)
    text = text.replace(FA3.namespace, FA2.namespace).replace('kodSystemowy="FA (3)"', 'kodSystemowy="FA (2)"')
    return text.replace("<WariantFormularza>3<", "<WariantFormularza>2<").encode()


@pytest.fixture(scope="module")
def sample() -> bytes:
    return SAMPLE.read_bytes()


def run_cli(*args: str) -> int:
    result = app(list(args), result_action="return_value")
    assert isinstance(result, int)
    return result


# --- the official sample --------------------------------------------------------------------------------------


def test_sample_fields(sample: bytes) -> None:
    invoice = validate_invoice(sample, "fa3-invoice-sample.xml")
    assert invoice.form is FA3
    assert invoice.form.form_code.to_json() == {"systemCode": "FA (3)", "schemaVersion": "1-0E", "value": "FA"}
    assert invoice.seller_nip == "5265877635"
    assert invoice.issue_date == dt.date(2025, 10, 31)
    assert invoice.invoice_number == "FA/YUCFO-4342344706/03/2026"
    assert invoice.invoice_type == "VAT"
    assert invoice.has_attachment is False
    assert invoice.size == 13_215
    assert invoice.sha256 == "OmE5U9cjvIU6pc3yL3bxV0D96hteDTCwMdB0gaJ5KhM="


# --- the five forms -------------------------------------------------------------------------------------------

_FORM_CASES: list[tuple[InvoiceForm, Callable[[], bytes], dict[str, Any]]] = [
    (FA3, lambda: _fill("invoice-template-fa-3.xml"), {"invoice_number": "FA/GRQMB-FV/7/2026/05/2025"}),
    (FA3, lambda: _fill("invoice-template-fa-3-with-attachment.xml"), {"has_attachment": True}),
    (FA2, _fa2_from_fa3, {"invoice_type": "VAT"}),
    (FA_RR1, lambda: _fill("invoice-template-fa-rr-1.xml"), {"invoice_number": "FV/7/2026", "invoice_type": "VAT_RR"}),
    (PEF3, lambda: _fill("invoice-template-fa-3-pef.xml"), {"invoice_number": "FV/7/2026", "invoice_type": "380"}),
    (
        PEF_KOR3,
        lambda: _fill("invoice-template-fa-3-pef-correction.xml"),
        {"invoice_number": "FV/7/2026", "invoice_type": "381"},
    ),
]


@pytest.mark.parametrize(("form", "make", "expected"), _FORM_CASES, ids=lambda v: getattr(v, "name", ""))
def test_every_form_is_detected_and_valid(
    form: InvoiceForm, make: Callable[[], bytes], expected: dict[str, Any]
) -> None:
    data = make()
    assert detect_form(data) is form
    result = check_invoice(data, "t.xml")
    assert result.problems == ()
    invoice = validate_invoice(data, "t.xml")
    assert invoice.form is form
    assert invoice.seller_nip == SELLER
    assert invoice.issue_date is not None
    for field, value in expected.items():
        assert getattr(invoice, field) == value


def test_form_codes_match_the_spec() -> None:
    assert {f.form_code.to_json()["systemCode"]: f.form_code.to_json() for f in FORMS} == {
        "FA (3)": {"systemCode": "FA (3)", "schemaVersion": "1-0E", "value": "FA"},
        "FA (2)": {"systemCode": "FA (2)", "schemaVersion": "1-0E", "value": "FA"},
        "FA_RR (1)": {"systemCode": "FA_RR (1)", "schemaVersion": "1-1E", "value": "FA_RR"},
        "PEF (3)": {"systemCode": "PEF (3)", "schemaVersion": "2-1", "value": "PEF"},
        "PEF_KOR (3)": {"systemCode": "PEF_KOR (3)", "schemaVersion": "2-1", "value": "PEF"},
    }


def test_the_xsds_fix_the_form_codes_we_send() -> None:
    # The FA XSDs fix kodSystemowy/wersjaSchemy: our table must agree with them.
    for form in (FA3, FA2, FA_RR1):
        xsd = Path(etree.parse(str(Path(__file__).parents[1] / "schemas" / Path(*form.xsd))).docinfo.URL or "")
        text = xsd.read_text(encoding="utf-8")
        assert f'fixed="{form.form_code.system_code}"' in text, form.name
        assert f'fixed="{form.form_code.schema_version}"' in text, form.name


def test_pef_seller_id_drops_the_country_prefix() -> None:
    data = _fill("invoice-template-fa-3-pef.xml").replace(f">{SELLER}<".encode(), f">PL{SELLER}<".encode(), 1)
    assert validate_invoice(data, "pef.xml").seller_nip == SELLER


def test_detect_form_rejects_other_roots() -> None:
    with pytest.raises(InvoiceError) as info:
        detect_form(b'<?xml version="1.0" encoding="UTF-8"?>\n<Faktura xmlns="urn:other"/>', "x.xml")
    (problem,) = info.value.problems
    assert (problem.file, problem.rule, problem.line) == ("x.xml", "form", 2)
    assert "{urn:other}Faktura is not a KSeF invoice form" in problem.reason
    with pytest.raises(InvoiceError) as info:
        detect_form(b"%PDF-1.7", "x.pdf")
    assert info.value.problems[0].rule == "xml"


# --- rejections: each names the file, the line and the rule ---------------------------------------------------


def _pad_to(data: bytes, size: int) -> bytes:
    body = data.rstrip()
    out = body + b"<!--" + b"x" * (size - len(body) - 7) + b"-->"
    assert len(out) == size
    return out


class Rejection(NamedTuple):
    case: str
    mutate: Callable[[bytes], bytes]
    rule: str
    line: int | None
    reason: str


_REJECTIONS = [
    Rejection(*row)
    for row in [
        ("bom", lambda d: b"\xef\xbb\xbf" + d, "bom", 1, "byte order mark"),
        (
            "iso-8859-2",
            lambda d: d.replace(b'encoding="utf-8"', b'encoding="ISO-8859-2"'),
            "prolog",
            1,
            'declares encoding "ISO-8859-2"',
        ),
        ("no-encoding", lambda d: d.replace(b' encoding="utf-8"', b""), "prolog", 1, "has no encoding"),
        (
            "pi",
            lambda d: d.replace(b"    <Naglowek>", b'    <?xml-stylesheet href="a.xsl"?>\n    <Naglowek>'),
            "pi",
            4,
            "processing instruction <?xml-stylesheet",
        ),
        ("missing-p2", lambda d: re.sub(rb"\s*<P_2>[^<]*</P_2>", b"", d), "xsd", 47, "/Faktura/Fa/P_6"),
        ("size", lambda d: _pad_to(d, MAX_INVOICE_SIZE + 1), "size", None, "1,000,001 bytes"),
        ("not-xml", lambda _: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "xml", 1, "not well-formed XML"),
        (
            "latin2-bytes",
            lambda d: d.replace("Dróżdż".encode(), "Dróżdż".encode("iso-8859-2")),
            "encoding",
            13,
            "UTF-8",
        ),
        ("bad-nip", lambda d: d.replace(b"<NIP>5265877635<", b"<NIP>52658<", 1), "xsd", 12, "'52658'"),
        ("control-char", lambda d: d.replace(b"Generator", b"Gen\x01erator"), "unicode", 8, "U+0001"),
        ("noncharacter", lambda d: d.replace(b"Generator", "Gen\ufdd0erator".encode()), "unicode", 8, "U+FDD0"),
        ("plane-end", lambda d: d.replace(b"Generator", "Gen\U0001ffffer".encode()), "unicode", 8, "U+1FFFF"),
        ("c1-control", lambda d: d.replace(b"Generator", "Gen\x86er".encode()), "unicode", 8, "U+0086"),
    ]
]


@pytest.mark.parametrize("rejection", _REJECTIONS, ids=[r.case for r in _REJECTIONS])
def test_rejections(sample: bytes, rejection: Rejection) -> None:
    case, mutate, rule, line, reason = rejection
    data = mutate(sample)
    name = f"{case}.xml"
    with pytest.raises(InvoiceError) as info:
        validate_invoice(data, name)
    matching = [p for p in info.value.problems if p.rule == rule]
    assert matching, info.value.problems
    problem = matching[0]
    assert problem.file == name
    assert problem.line == line
    assert reason in problem.reason
    assert name in str(info.value)


def test_missing_element_message_is_readable(sample: bytes) -> None:
    result = check_invoice(re.sub(rb"\s*<P_2>[^<]*</P_2>", b"", sample), "m.xml")
    (problem,) = result.problems
    assert problem.reason == "/Faktura/Fa/P_6: unexpected element; expected P_2"
    assert str(problem) == "m.xml:47: /Faktura/Fa/P_6: unexpected element; expected P_2"


def test_readable_message_trims_long_expected_lists() -> None:
    ns = "{http://crd.gov.pl/wzor/2025/06/25/13775/}"
    names = [f"{ns}E{i}" for i in range(40)]
    message = f"Element '{ns}X': This element is not expected. Expected is one of ( {', '.join(names)} )."
    text = readable_schema_error(message, "/Faktura/X")
    assert text == "/Faktura/X: unexpected element; expected E0, E1, E2, E3, E4, E5, ... (34 more)"
    # Curly braces that are not namespaces (pattern quantifiers) survive.
    pattern = r"Element 'NIP': [facet 'pattern'] The value '1' is not accepted by the pattern '\d{7}'."
    assert r"\d{7}" in readable_schema_error(pattern, None)


def test_nel_is_not_discouraged_but_c1_controls_are(sample: bytes) -> None:
    # XML 1.0 section 2.2 lists [#x7F-#x84] and [#x86-#x9F]: U+0085 (NEL) is a plain Char.
    assert validate_invoice(sample.replace(b"Generator", "Gen\x85er".encode()), "nel.xml").size > 0
    assert [cp for _, cp in discouraged_characters("a\x84b\x85c\x9f\U0010fffe\ufdef\ufff0".encode())] == [
        0x84,
        0x9F,
        0x10FFFE,
        0xFDEF,
    ]


def _discouraged_reference(cp: int) -> bool:
    """XML 1.0 section 2.2's discouraged list plus the C0 controls outside Char, written out plainly."""
    return (
        (cp < 0x20 and cp not in {0x09, 0x0A, 0x0D})
        or 0x7F <= cp <= 0x84
        or 0x86 <= cp <= 0x9F
        or 0xFDD0 <= cp <= 0xFDEF
        or (cp & 0xFFFE) == 0xFFFE
    )


_INTERESTING = st.sampled_from(
    [
        *(0x00, 0x08, 0x09, 0x0A, 0x0D, 0x1F, 0x20, 0x7E, 0x7F, 0x84, 0x85, 0x86, 0x9F, 0xA0, 0xF3, 0x17C),
        *(0xFDCF, 0xFDD0, 0xFDEF, 0xFDF0, 0xFFFD, 0xFFFE, 0xFFFF, 0x10000, 0x1FFFD, 0x1FFFE, 0x1FFFF),
        *(0x10FFFE, 0x10FFFF),
    ]
).map(chr)


@given(st.lists(st.one_of(st.characters(exclude_categories=["Cs"]), _INTERESTING), max_size=40).map("".join))
def test_discouraged_detection_matches_a_plain_reference(text: str) -> None:
    data = text.encode()
    expected = []
    offset = 0
    for char in text:
        if _discouraged_reference(ord(char)):
            expected.append((offset, ord(char)))
        offset += len(char.encode())
    assert discouraged_characters(data) == expected


def test_prolog_is_optional_and_case_insensitive(sample: bytes) -> None:
    body = sample.split(b"?>", 1)[1].lstrip()
    assert validate_invoice(body, "no-prolog.xml").sha256  # no prolog at all: fine
    upper = sample.replace(b'encoding="utf-8"', b"encoding='UTF-8'")
    assert validate_invoice(upper, "upper.xml").invoice_number == "FA/YUCFO-4342344706/03/2026"
    standalone = sample.replace(b'encoding="utf-8"?>', b'encoding = "UTF-8"  standalone="yes" ?>')
    assert validate_invoice(standalone, "standalone.xml").size == len(standalone)


def test_pi_inside_a_comment_is_not_a_pi(sample: bytes) -> None:
    data = sample.replace(b"    <Naglowek>", b"    <!-- <?not-a-pi?> -->\n    <Naglowek>")
    assert check_invoice(data, "c.xml").ok


def test_attachment_raises_the_size_limit_to_3mb() -> None:
    with_attachment = _fill("invoice-template-fa-3-with-attachment.xml")
    big = _pad_to(with_attachment, 1_500_000)
    invoice = validate_invoice(big, "att.xml")
    assert invoice.has_attachment is True
    assert invoice.size == 1_500_000
    without = _pad_to(_fill("invoice-template-fa-3.xml"), 1_500_000)
    problems = check_invoice(without, "plain.xml").problems
    assert [p.rule for p in problems] == ["size"]
    assert "1,500,000 bytes" in problems[0].reason
    too_big = check_invoice(_pad_to(with_attachment, 3_000_001), "huge.xml").problems
    assert [p.rule for p in too_big] == ["size"]
    assert "3,000,000" in too_big[0].reason


def test_xsd_false_skips_only_the_schema(sample: bytes) -> None:
    broken = sample.replace(b"<NIP>5265877635<", b"<NIP>52658<", 1)
    assert validate_invoice(broken, "b.xml", xsd=False).seller_nip == "52658"
    with pytest.raises(InvoiceError):
        validate_invoice(b"\xef\xbb\xbf" + sample, "bom.xml", xsd=False)


def test_preflight_marks_undecodable_input_unparseable(sample: bytes) -> None:
    result = preflight(sample.replace(b'encoding="utf-8"', b'encoding="windows-1250"'), "w.xml")
    assert result.parseable is False
    assert [p.rule for p in result.problems] == ["prolog"]


# --- network and threads --------------------------------------------------------------------------------------


def test_schemas_compile_without_network(monkeypatch: pytest.MonkeyPatch, sample: bytes) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    # libxml2 does its own networking in C, so also prove the remote import goes through our resolver only:
    # a fresh thread compiles every schema from scratch.
    errors: list[BaseException] = []

    def compile_all() -> None:
        try:
            for form in FORMS:
                compile_schema(form)
            validate_invoice(sample, "s.xml")
        except BaseException as exc:  # reported below
            errors.append(exc)

    worker = threading.Thread(target=compile_all)
    worker.start()
    worker.join()
    assert errors == []


def test_the_remote_import_is_served_from_the_bundled_file(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str | None] = []

    def refuse_remote(self: BundledSchemaResolver, url: str | None, public_id: str | None, context: Any) -> Any:
        asked.append(url)
        if url and url.startswith("http"):
            raise RemoteSchemaRefusedError(url)
        return None

    # compile_schema points the crd.gov.pl import at the bundled copy, so no remote URL is ever asked for.
    monkeypatch.setattr(BundledSchemaResolver, "resolve", refuse_remote)
    compile_schema(FA3)
    assert not [url for url in asked if url and url.startswith("http")]
    assert next(iter(BUNDLED_URLS)).startswith("http://crd.gov.pl/")
    # Without that mapping the same import cannot load: no_network leaves no other way to reach it.
    with pytest.raises(etree.XMLSchemaParseError):
        etree.XMLSchema(etree.parse(str(schema_path(*FA3.xsd)), etree.XMLParser(no_network=True)))


def test_schema_compilation_is_safe_across_threads() -> None:
    import threading  # noqa: PLC0415

    errors: list[BaseException] = []

    def compile_fa3() -> None:
        try:
            compile_schema(FA3)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=compile_fa3) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_unknown_remote_imports_are_refused(tmp_path: Path) -> None:
    xsd = tmp_path / "remote.xsd"
    xsd.write_text(
        '<xsd:schema xmlns:xsd="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:t">'
        '<xsd:import namespace="urn:x" schemaLocation="http://example.invalid/x.xsd"/></xsd:schema>',
        encoding="utf-8",
    )
    with pytest.raises((RemoteSchemaRefusedError, etree.XMLSchemaParseError)):
        etree.XMLSchema(etree.parse(str(xsd), schema_parser()))


def test_invoice_external_entities_are_not_loaded(sample: bytes) -> None:
    # An external DTD/entity must neither be fetched nor expanded: the document stays unexpanded and invalid.
    doctype = b'<!DOCTYPE Faktura [<!ENTITY x SYSTEM "http://example.invalid/x">]>\n'
    data = sample.replace(b"<Faktura", doctype + b"<Faktura", 1).replace(b"Generator danych", b"&x;")
    result = check_invoice(data, "xxe.xml")
    assert [p.rule for p in result.problems] == ["doctype"]
    assert "DOCTYPE" in result.problems[0].reason


def test_concurrent_validation_keeps_each_threads_errors(sample: bytes) -> None:
    bad = sample.replace(b"<NIP>5265877635<", b"<NIP>52658<", 1)
    failures: list[str] = []

    def work(valid: bool) -> None:
        for _ in range(40):
            result = check_invoice(sample if valid else bad, "v.xml" if valid else "b.xml")
            if valid and result.problems:
                failures.append(f"valid invoice got {result.problems}")
            if not valid and [p.line for p in result.problems] != [12]:
                failures.append(f"invalid invoice got {result.problems}")

    threads = [threading.Thread(target=work, args=(i % 2 == 0,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


# --- the command line -----------------------------------------------------------------------------------------


def test_cli_accepts_the_sample(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("validate", str(SAMPLE)) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert "1 valid, 0 invalid" in err


@pytest.mark.parametrize("rejection", _REJECTIONS, ids=[r.case for r in _REJECTIONS])
def test_cli_rejections(
    tmp_path: Path, sample: bytes, capsys: pytest.CaptureFixture[str], rejection: Rejection
) -> None:
    case, mutate, _, line, reason = rejection
    path = tmp_path / f"{case}.xml"
    path.write_bytes(mutate(sample))
    assert run_cli("validate", str(path)) == 1
    out = capsys.readouterr().out.splitlines()
    where = f"{path}:{line}: " if line is not None else f"{path}: "
    assert any(o.startswith(where) and reason in o for o in out), out


def test_cli_directory_json_and_exit_codes(tmp_path: Path, sample: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "good.xml").write_bytes(sample)
    (tmp_path / "sub" / "bad.xml").write_bytes(b"\xef\xbb\xbf" + sample)
    (tmp_path / "notes.txt").write_text("ignored")
    assert run_cli("validate", str(tmp_path), "--json") == 1
    results = json.loads(capsys.readouterr().out)
    assert [(Path(r["file"]).name, r["valid"]) for r in results] == [("good.xml", True), ("bad.xml", False)]
    assert results[0]["seller_nip"] == "5265877635"
    assert results[0]["form_code"] == {"systemCode": "FA (3)", "schemaVersion": "1-0E", "value": "FA"}
    assert results[1]["problems"][0]["rule"] == "bom"
    assert run_cli("validate", str(tmp_path / "good.xml")) == 0
    assert run_cli("validate", str(tmp_path / "missing.xml")) == 2
    assert "missing.xml: no such file or directory" in capsys.readouterr().err


def test_cli_entry_point_subprocess(tmp_path: Path, sample: bytes) -> None:
    bad = tmp_path / "bom.xml"
    bad.write_bytes(b"\xef\xbb\xbf" + sample)
    ok = subprocess.run(
        [sys.executable, "-m", "ksef_async.cli", "validate", str(SAMPLE)], capture_output=True, text=True, check=False
    )
    assert ok.returncode == 0, ok.stderr
    rejected = subprocess.run(
        [sys.executable, "-m", "ksef_async.cli", "validate", str(SAMPLE), str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert rejected.returncode == 1
    assert rejected.stdout.startswith(f"{bad}:1: starts with a UTF-8 byte order mark")


def test_invoice_number_is_kept_exactly_as_written(sample: bytes) -> None:
    # KSeF's duplicate check compares P_2 as written; the parser drops only whitespace between elements.
    data = sample.replace(b"<P_2>FA/YUCFO-4342344706/03/2026</P_2>", b"<P_2> FA/1 </P_2>")
    assert validate_invoice(data, "ws.xml").invoice_number == " FA/1 "
