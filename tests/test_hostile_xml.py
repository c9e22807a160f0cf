"""Hostile XML: a DOCTYPE is refused before parsing and no parser we build ever resolves an external resource."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from lxml import etree

from ksef_async.xml._resolver import (
    DoctypeRefusedError,
    ExternalResourceRefusedError,
    doctype_in_prolog,
    hardened_parser,
    parse_untrusted,
)

SAMPLE = Path(__file__).parent / "data" / "samples" / "invoices" / "fa3-invoice-sample.xml"
_TIMEOUT = 60  # generous for a loaded machine; a regression spins forever, so any bound fails it

# Run in a child process so that a regression (libxml2 reading /dev/zero or blocking on a FIFO) fails the test by
# its timeout instead of hanging the suite. Each entry point prints one line as it finishes.
_PROBE = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from lxml import etree

    url = sys.argv[1].encode()
    invoice = Path(sys.argv[2]).read_bytes()

    def pe(root_tag):
        return b"<!DOCTYPE " + root_tag + b' [<!ENTITY % d SYSTEM "' + url + b'"> %d;]>\\n'

    def doc(root_tag, body):
        return b'<?xml version="1.0" encoding="UTF-8"?>\\n' + pe(root_tag) + body

    def report(name, fn):
        try:
            fn()
        except Exception as exc:
            print(name, "raised", type(exc).__name__, str(exc).replace("\\n", " ")[:200], flush=True)
        else:
            print(name, "accepted", flush=True)

    from ksef_async.xml import check_invoice, detect_form
    from ksef_async.xml._resolver import hardened_parser
    from ksef_async.xml.auth_request import validate_auth_token_request
    from ksef_async.xml.upo import parse_upo, validate_upo
    from ksef_async.xml.xades import verify_auth_token_request

    data = invoice.replace(b"<Faktura", pe(b"Faktura") + b"<Faktura", 1)
    result = check_invoice(data, "hostile.xml")
    print("check_invoice", [p.rule for p in result.problems], flush=True)
    report("detect_form", lambda: detect_form(data, "hostile.xml"))
    upo = doc(b"Potwierdzenie", b'<Potwierdzenie xmlns="http://upo.schematy.mf.gov.pl/KSeF/v4-3"/>')
    report("parse_upo", lambda: parse_upo(upo))
    print("validate_upo", validate_upo(upo)[:1], flush=True)
    auth = doc(b"AuthTokenRequest", b'<AuthTokenRequest xmlns="http://ksef.mf.gov.pl/auth/token/2.0"/>')
    print("validate_auth_token_request", validate_auth_token_request(auth)[:1], flush=True)
    report("verify_auth_token_request", lambda: verify_auth_token_request(auth))
    # The resolver alone (no DOCTYPE scan first), with the invoice parser's options that made libxml2 load PEs.
    report("hardened_parser", lambda: etree.fromstring(doc(b"a", b"<a/>"), hardened_parser(collect_ids=False)))
    print("done", flush=True)
    """
)


def _hostile_targets(tmp_path: Path) -> dict[str, tuple[str, Path]]:
    """Each target URL and the directory to run in; opening any of them hangs or reads local data."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    local = tmp_path / "local.dtd"  # opening it leads on to /dev/zero: a read shows as a hang
    local.write_text('<!ENTITY % z SYSTEM "file:///dev/zero"> %z;', encoding="ascii")
    return {
        "dev-zero": ("file:///dev/zero", tmp_path),
        "fifo": (str(fifo), tmp_path),
        "local-file": (local.as_uri(), tmp_path),
        "relative": ("local.dtd", tmp_path),
    }


def _run_probe(url: str, cwd: Path, tmp_path: Path) -> list[str]:
    probe = tmp_path / "probe.py"
    probe.write_text(_PROBE, encoding="utf-8")
    try:
        done = subprocess.run(
            [sys.executable, str(probe), url, str(SAMPLE)],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        pytest.fail(f"parsing hung on an external parameter entity {url!r}; finished before the hang:\n{out}")
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.parametrize("target", ["dev-zero", "fifo", "local-file", "relative"])
def test_external_parameter_entities_are_refused_everywhere(tmp_path: Path, target: str) -> None:
    url, cwd = _hostile_targets(tmp_path)[target]
    lines = _run_probe(url, cwd, tmp_path)
    by_name = {line.split(" ", 1)[0]: line for line in lines}
    assert lines[-1] == "done"
    assert by_name["check_invoice"] == "check_invoice ['doctype']"
    assert "raised InvoiceError" in by_name["detect_form"]
    assert "DOCTYPE" in by_name["parse_upo"]
    assert "DOCTYPE" in by_name["validate_upo"]
    assert "DOCTYPE" in by_name["validate_auth_token_request"]
    assert "raised SignatureError" in by_name["verify_auth_token_request"]
    assert "DOCTYPE" in by_name["verify_auth_token_request"]
    assert "raised ExternalResourceRefusedError" in by_name["hardened_parser"]


def test_cli_validate_refuses_a_doctype_quickly(tmp_path: Path) -> None:
    invoice = tmp_path / "hostile.xml"
    pe = b'<!DOCTYPE Faktura [<!ENTITY % d SYSTEM "file:///dev/zero"> %d;]>\n'
    invoice.write_bytes(SAMPLE.read_bytes().replace(b"<Faktura", pe + b"<Faktura", 1))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "ksef_async.cli", "validate", str(invoice)],
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("ksef-async validate hung on an external parameter entity to /dev/zero")
    assert done.returncode != 0
    assert "DOCTYPE" in done.stdout + done.stderr


@pytest.mark.parametrize(
    "data",
    [
        b"<!DOCTYPE a><a/>",
        b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE a SYSTEM "x.dtd"><a/>',
        b"\xef\xbb\xbf<!-- c --><?pi x?>\n\t<!DOCTYPE a [<!ENTITY x 'y'>]><a/>",
        b"<!-- <a> --><!DOCTYPE a><a/>",
        '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE a><a/>'.encode("utf-16"),
        "<!DOCTYPE a><a/>".encode("utf-16-le"),
        "<!DOCTYPE a><a/>".encode("utf-16-be"),
    ],
)
def test_doctype_in_prolog_finds_every_doctype(data: bytes) -> None:
    assert doctype_in_prolog(data)
    with pytest.raises(DoctypeRefusedError):
        parse_untrusted(data)


@pytest.mark.parametrize(
    "data",
    [
        b"<a/>",
        b'<?xml version="1.0"?><a><![CDATA[<!DOCTYPE a>]]></a>',
        b"<a><!-- <!DOCTYPE a> --></a>",
        b"<!-- unterminated",
        b"",
    ],
)
def test_doctype_in_prolog_ignores_text_after_the_prolog(data: bytes) -> None:
    assert not doctype_in_prolog(data)


def test_hardened_parser_refuses_an_external_dtd_even_with_dtd_loading_asked_for(tmp_path: Path) -> None:
    dtd = tmp_path / "x.dtd"
    dtd.write_text("<!ENTITY x 'leaked'>", encoding="ascii")
    data = f'<!DOCTYPE a SYSTEM "{dtd.as_uri()}"><a>&x;</a>'.encode()
    try:
        root = etree.fromstring(data, hardened_parser())
    except (ExternalResourceRefusedError, etree.XMLSyntaxError):
        return
    assert "leaked" not in etree.tostring(root).decode()
