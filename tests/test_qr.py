"""KOD I / KOD II links (official vectors, signing, verification), QR images and the `ksef-async qr` command."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from ksef_async import qr_image
from ksef_async.cli import qr as cli_qr
from ksef_async.core import qr
from ksef_async.errors import ConfigurationError, CryptoError, InvoiceError

DATA = Path(__file__).parent / "data" / "samples"
QR_DIR = DATA / "qr"
FA3 = DATA / "invoices" / "fa3-invoice-sample.xml"
KOD_I = (QR_DIR / "kod-i-example.txt").read_text().strip()
KOD_II = (QR_DIR / "kod-ii-example.txt").read_text().strip()
OFFICIAL_CERT = (QR_DIR / "offline-cert-01F20A5D352AE590.pem").read_bytes()
FA3_KOD_I = "https://qr-test.ksef.mf.gov.pl/invoice/5265877635/31-10-2025/OmE5U9cjvIU6pc3yL3bxV0D96hteDTCwMdB0gaJ5KhM"
SELLER = "5265877635"


# --- helpers ---------------------------------------------------------------------------------------------------


def make_cert(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    *,
    non_repudiation: bool = True,
    digital_signature: bool = False,
    serial: int = 0x01F20A5D352AE591,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SELLER)])
    now = dt.datetime.now(dt.UTC)
    usage = x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=non_repudiation,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(usage, critical=True)
        .sign(key, hashes.SHA256())
    )


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def replace_segment(link: str, index: int, value: str) -> str:
    parts = link.split("/")
    parts[index] = value
    return "/".join(parts)


# --- KOD I -----------------------------------------------------------------------------------------------------


def test_kod_i_from_official_parts_equals_official_link() -> None:
    digest = "UtQp9Gpc51y-u3xApZjIjgkpZ01js-J8KflSPW8WzIE"
    assert qr.kod_i_link("1111111111", dt.date(2026, 2, 1), digest) == KOD_I
    # The same digest given as the spec's padded standard Base64, and as raw bytes.
    assert qr.kod_i_link("1111111111", dt.date(2026, 2, 1), "UtQp9Gpc51y+u3xApZjIjgkpZ01js+J8KflSPW8WzIE=") == KOD_I
    raw = base64.urlsafe_b64decode(digest + "=")
    assert qr.kod_i_link("1111111111", dt.date(2026, 2, 1), raw) == KOD_I


@pytest.mark.parametrize(
    ("xml", "expected_hash"),
    [
        (b"<root>test</root>", "qrs2gCLXnTUy6--AHwHuDxFuCj0BYUGRGtBuGnJwN-c"),
        (b"<data>special & chars /?</data>", "2bEg3cUOcJxR38JekXJxuJphnkn-NUdSP-uyOc0hB6I"),
    ],
)
def test_kod_i_official_client_unit_vectors(xml: bytes, expected_hash: str) -> None:
    link = qr.kod_i_link_for_bytes(xml, "1234567890", dt.date(2026, 1, 5))
    assert link == f"https://qr-test.ksef.mf.gov.pl/invoice/1234567890/05-01-2026/{expected_hash}"


def test_kod_i_of_fa3_sample_hashes_its_exact_bytes() -> None:
    data = FA3.read_bytes()
    assert qr_image.kod_i_link_for_invoice(data, FA3.name) == FA3_KOD_I
    assert FA3_KOD_I.endswith(b64url(hashlib.sha256(data).digest()))
    # Bytes that parse to the same document but differ (a trailing newline) give a different link.
    assert qr_image.kod_i_link_for_invoice(data + b"\n", FA3.name) != FA3_KOD_I


def test_kod_i_hosts_per_environment() -> None:
    day = dt.date(2026, 2, 1)
    digest = "UtQp9Gpc51y-u3xApZjIjgkpZ01js-J8KflSPW8WzIE"
    assert qr.kod_i_link("1111111111", day, digest, env="demo").startswith("https://qr-demo.ksef.mf.gov.pl/invoice/")
    assert qr.kod_i_link("1111111111", day, digest, env="PRD").startswith("https://qr.ksef.mf.gov.pl/invoice/")
    assert qr.kod_i_link("1111111111", day, digest, env="prod") == qr.kod_i_link("1111111111", day, digest, env="prd")
    with pytest.raises(ConfigurationError, match="env"):
        qr.qr_host("staging")


def test_kod_i_parse_round_trip_and_match() -> None:
    parsed = qr.parse_kod_i(FA3_KOD_I)
    assert (parsed.env, parsed.seller_nip, parsed.issue_date) == ("test", SELLER, dt.date(2025, 10, 31))
    assert parsed.url == FA3_KOD_I
    assert parsed.matches(FA3.read_bytes())
    assert not parsed.matches(FA3.read_bytes() + b" ")


@pytest.mark.parametrize(
    "link",
    [
        "https://example.com/invoice/1111111111/01-02-2026/UtQp9Gpc51y-u3xApZjIjgkpZ01js-J8KflSPW8WzIE",
        "https://qr-test.ksef.mf.gov.pl/invoice/111111111/01-02-2026/UtQp9Gpc51y-u3xApZjIjgkpZ01js-J8KflSPW8WzIE",
        "https://qr-test.ksef.mf.gov.pl/invoice/1111111111/2026-02-01/UtQp9Gpc51y-u3xApZjIjgkpZ01js-J8KflSPW8WzIE",
        "https://qr-test.ksef.mf.gov.pl/invoice/1111111111/01-02-2026/UtQp9Gpc51y-u3xApZjIjgkpZ01js-J8KflSPW8Wz",
        "https://qr-test.ksef.mf.gov.pl/invoice/1111111111/01-02-2026",
        "https://qr-test.ksef.mf.gov.pl/certificate/1111111111/01-02-2026/x",
    ],
)
def test_kod_i_parse_rejects_malformed_links(link: str) -> None:
    with pytest.raises(ConfigurationError):
        qr.parse_kod_i(link)


@pytest.mark.parametrize("bad", ["123456789", "12345678901", "ABCDEFGHIJ"])
def test_kod_i_rejects_a_malformed_nip(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="seller NIP"):
        qr.kod_i_link(bad, dt.date(2026, 1, 1), bytes(32))


@pytest.mark.parametrize("bad", [bytes(31), "AAAA", "not base64 !", b64url(bytes(33))])
def test_invoice_hash_must_be_a_sha256(bad: bytes | str) -> None:
    with pytest.raises(ConfigurationError, match="invoice hash"):
        qr.invoice_hash_b64url(bad)


def test_invoice_without_seller_fields_is_refused(tmp_path: Path) -> None:
    broken = FA3.read_bytes().replace(b"<P_1>2025-10-31</P_1>", b"<P_1>31.10.2025</P_1>")
    assert broken != FA3.read_bytes()
    with pytest.raises(InvoiceError):
        qr_image.kod_i_link_for_invoice(broken, "broken.xml")


# --- certificates ----------------------------------------------------------------------------------------------


def test_official_certificate_loads_with_its_identity_intact() -> None:
    cert = qr.load_certificate(OFFICIAL_CERT, name="offline-cert.pem")
    assert qr.certificate_serial_hex(cert) == "01F20A5D352AE590"
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == SELLER
    key = cert.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    assert key.key_size == 2048
    # The official example certificate carries digitalSignature only, i.e. the Authentication type.
    assert qr.certificate_type(cert) == "Authentication"
    # DER input works the same as PEM.
    der = base64.b64decode(b"".join(OFFICIAL_CERT.split(b"\n")[1:-2]))
    assert qr.load_certificate(der).serial_number == cert.serial_number


def test_ordinary_certificates_load_unchanged(rsa_key: rsa.RSAPrivateKey) -> None:
    cert = make_cert(rsa_key)
    loaded = qr.load_certificate(cert.public_bytes(serialization.Encoding.PEM))
    assert loaded == cert


@pytest.mark.parametrize("junk", [b"", b"hello", b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n"])
def test_unreadable_certificate_is_a_crypto_error(junk: bytes) -> None:
    with pytest.raises(CryptoError, match=r"junk\.pem"):
        qr.load_certificate(junk, name="junk.pem")


def test_certificate_serial_keeps_leading_zero_byte(ec_key: ec.EllipticCurvePrivateKey) -> None:
    assert qr.certificate_serial_hex(make_cert(ec_key, serial=0x01F20A5D352AE590)) == "01F20A5D352AE590"
    # A serial whose top bit is set gets the DER sign byte, as the INTEGER is written in the certificate.
    assert qr.certificate_serial_hex(make_cert(ec_key, serial=0x81F20A5D352AE590)) == "0081F20A5D352AE590"


# --- KOD II: official example ----------------------------------------------------------------------------------


def test_official_kod_ii_verifies_with_bundled_certificate() -> None:
    cert = qr.load_certificate(OFFICIAL_CERT)
    result = qr.verify_kod_ii(KOD_II, cert)
    assert result.link.context_type == "Nip"
    assert result.link.context_value == "1111111111"
    assert result.link.seller_nip == "1111111111"
    assert result.link.certificate_serial == "01F20A5D352AE590"
    assert result.link.invoice_hash == "UtQp9Gpc51y-u3xApZjIjgkpZ01js-J8KflSPW8WzIE"
    assert result.link.signed_data == KOD_II.removeprefix("https://").rsplit("/", 1)[0]
    assert not result.offline_certificate
    assert "signature=" not in repr(result.link)


def test_official_kod_ii_fails_after_a_one_byte_change_to_the_signature() -> None:
    cert = qr.load_certificate(OFFICIAL_CERT)
    head, signature = KOD_II.rsplit("/", 1)
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[100] ^= 0x01
    with pytest.raises(CryptoError, match="does not verify"):
        qr.verify_kod_ii(f"{head}/{b64url(bytes(raw))}", cert)


@pytest.mark.parametrize(
    ("index", "value"),
    [
        (5, "1111111112"),  # context value
        (6, "1111111112"),  # seller NIP
        (8, "VtQp9Gpc51y-u3xApZjIjgkpZ01js-J8KflSPW8WzIE"),  # hash, first character
        (2, "qr-demo.ksef.mf.gov.pl"),  # host is part of the signed data
    ],
)
def test_official_kod_ii_fails_after_a_one_character_change_to_the_signed_data(index: int, value: str) -> None:
    cert = qr.load_certificate(OFFICIAL_CERT)
    changed = replace_segment(KOD_II, index, value)
    assert changed != KOD_II
    with pytest.raises(CryptoError, match="does not verify"):
        qr.verify_kod_ii(changed, cert)


def test_non_canonical_base64url_is_refused() -> None:
    # "E" -> "F" in the last character only sets unused bits: same bytes, different text. Refused, not ignored.
    changed = replace_segment(KOD_II, 8, "UtQp9Gpc51y-u3xApZjIjgkpZ01js-J8KflSPW8WzIF")
    with pytest.raises(ConfigurationError, match="canonical"):
        qr.verify_kod_ii(changed, qr.load_certificate(OFFICIAL_CERT))
    with pytest.raises(ConfigurationError, match="canonical"):
        qr.parse_kod_i(KOD_I[:-1] + "F")


def test_kod_ii_serial_must_match_the_certificate(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(CryptoError, match="names certificate 01F20A5D352AE590"):
        qr.verify_kod_ii(KOD_II, make_cert(rsa_key))


def test_require_offline_refuses_the_authentication_type_official_certificate() -> None:
    with pytest.raises(CryptoError, match="not an Offline certificate"):
        qr.verify_kod_ii(KOD_II, qr.load_certificate(OFFICIAL_CERT), require_offline=True)


# --- KOD II: our own keys --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rsa", "ec"])
@pytest.mark.parametrize("context", [("Nip", SELLER), ("InternalId", "6824515772-12343"), ("PeppolId", "PPL123456")])
def test_kod_ii_signed_with_our_keys_verifies(
    kind: str, context: tuple[str, str], rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = rsa_key if kind == "rsa" else ec_key
    cert = make_cert(key)
    digest = hashlib.sha256(FA3.read_bytes()).digest()
    link = qr.kod_ii_link(context[0], context[1], SELLER, digest, certificate=cert, private_key=key)  # type: ignore[arg-type]
    assert link.startswith(f"https://qr-test.ksef.mf.gov.pl/certificate/{context[0]}/{context[1]}/{SELLER}/")
    result = qr.verify_kod_ii(link, cert, require_offline=True)
    assert result.offline_certificate
    assert result.link.invoice_hash == b64url(digest)
    assert result.link.certificate_serial == qr.certificate_serial_hex(cert)
    if kind == "ec":
        assert len(result.link.signature) == 64  # IEEE P1363 r||s
    else:
        assert len(result.link.signature) == 256
    tampered = replace_segment(link, 6, "1111111111")
    with pytest.raises(CryptoError, match="does not verify"):
        qr.verify_kod_ii(tampered, cert)


def test_kod_ii_with_der_ecdsa_signature_also_verifies(ec_key: ec.EllipticCurvePrivateKey) -> None:
    cert = make_cert(ec_key)
    signed = qr.kod_ii_signed_data("Nip", SELLER, SELLER, qr.certificate_serial_hex(cert), bytes(32))
    der = ec_key.sign(signed.encode(), ec.ECDSA(hashes.SHA256()))
    assert len(der) != 64
    result = qr.verify_kod_ii(f"https://{signed}/{b64url(der)}", cert)
    assert result.link.seller_nip == SELLER


def test_kod_ii_on_other_environments(ec_key: ec.EllipticCurvePrivateKey) -> None:
    cert = make_cert(ec_key)
    link = qr.kod_ii_link("Nip", SELLER, SELLER, bytes(32), certificate=cert, private_key=ec_key, env="prod")
    assert link.startswith("https://qr.ksef.mf.gov.pl/certificate/")
    assert qr.verify_kod_ii(link, cert).link.env == "prod"


def test_authentication_certificate_may_not_sign(rsa_key: rsa.RSAPrivateKey) -> None:
    cert = make_cert(rsa_key, non_repudiation=False, digital_signature=True)
    with pytest.raises(CryptoError, match="only a KSeF Offline certificate"):
        qr.kod_ii_link("Nip", SELLER, SELLER, bytes(32), certificate=cert, private_key=rsa_key)


def test_key_must_belong_to_the_certificate(rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(CryptoError, match="does not belong"):
        qr.kod_ii_link("Nip", SELLER, SELLER, bytes(32), certificate=make_cert(rsa_key), private_key=ec_key)


def test_weak_or_wrong_curve_keys_are_refused() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(CryptoError, match="at least 2048"):
        qr.kod_ii_link("Nip", SELLER, SELLER, bytes(32), certificate=make_cert(small), private_key=small)
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(CryptoError, match="P-256"):
        qr.kod_ii_link("Nip", SELLER, SELLER, bytes(32), certificate=make_cert(p384), private_key=p384)


@pytest.mark.parametrize(
    ("ctx_type", "ctx_value"),
    [("Pesel", "88102341294"), ("Nip", "12345"), ("NipVatUe", "5265877635/ATU1"), ("PeppolId", "")],
)
def test_kod_ii_rejects_bad_context(ctx_type: str, ctx_value: str, ec_key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(ConfigurationError, match="context"):
        qr.kod_ii_link(ctx_type, ctx_value, SELLER, bytes(32), certificate=make_cert(ec_key), private_key=ec_key)  # type: ignore[arg-type]


def test_kod_ii_parse_rejects_malformed_links() -> None:
    with pytest.raises(ConfigurationError, match="context type"):
        qr.parse_kod_ii(replace_segment(KOD_II, 4, "Pesel"))
    with pytest.raises(ConfigurationError, match="path segments"):
        qr.parse_kod_ii(KOD_II.rsplit("/", 1)[0])
    with pytest.raises(ConfigurationError, match="signature"):
        qr.parse_kod_ii(KOD_II + "+")
    with pytest.raises(ConfigurationError, match="not a KSeF QR host"):
        qr.parse_kod_ii(KOD_II.replace("qr-test.ksef.mf.gov.pl", "qr-test.example.com"))


# --- images ----------------------------------------------------------------------------------------------------


def read_png(data: bytes) -> tuple[int, int, list[list[bool]]]:
    """Decode our 1-bit greyscale PNG (checking signature and CRCs); return width, height and dark pixels."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos = 8
    chunks: dict[bytes, bytes] = {}
    while pos < len(data):
        (size,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + size]
        (crc,) = struct.unpack(">I", data[pos + 8 + size : pos + 12 + size])
        assert crc == zlib.crc32(kind + body)
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + size
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (1, 0)
    raw = zlib.decompress(chunks[b"IDAT"])
    stride = (width + 7) // 8 + 1
    rows = []
    for y in range(height):
        line = raw[y * stride : (y + 1) * stride]
        assert line[0] == 0
        rows.append([not (line[1 + x // 8] >> (7 - x % 8)) & 1 for x in range(width)])
    return width, height, rows


def test_png_pixels_are_the_qr_symbol() -> None:
    scale, border = 3, 4
    png = qr_image.qr_png(FA3_KOD_I, scale=scale, border=border)
    width, height, pixels = read_png(png)
    matrix = qr_image.qr_matrix(FA3_KOD_I)
    side = (len(matrix) + 2 * border) * scale
    assert (width, height) == (side, side)
    for y, row in enumerate(matrix):
        for x, dark in enumerate(row):
            assert pixels[(y + border) * scale + 1][(x + border) * scale + 1] == dark
    assert not any(pixels[0])  # quiet zone


def test_png_label_adds_rows_under_the_code() -> None:
    plain = read_png(qr_image.qr_png(FA3_KOD_I))
    labelled = read_png(qr_image.qr_png(FA3_KOD_I, label="5265877635-20250826-0100001AF629-AF"))
    assert labelled[1] > plain[1]
    assert labelled[0] >= plain[0]
    under = labelled[2][plain[1] :]
    assert any(any(row) for row in under)  # the label has ink
    offline = read_png(qr_image.qr_png(FA3_KOD_I, label=qr_image.LABEL_OFFLINE))
    assert offline[1] > plain[1]


def test_png_label_with_undrawable_characters_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="PNG labels cannot draw"):
        qr_image.qr_png(FA3_KOD_I, label="faktura #1 ż")


def test_svg_is_xml_with_the_code_and_its_label() -> None:
    svg = qr_image.qr_svg(KOD_II, label=qr_image.LABEL_CERTIFICATE)
    root = etree.fromstring(svg)
    ns = {"s": "http://www.w3.org/2000/svg"}
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.find("s:path", ns) is not None
    assert root.findtext("s:text", namespaces=ns) == "CERTYFIKAT"
    assert float(root.get("height", "0")) > float(root.get("width", "0"))
    assert root.find("s:text", ns) is not None
    unlabelled = etree.fromstring(qr_image.qr_svg(KOD_II))
    assert unlabelled.find("s:text", ns) is None
    assert unlabelled.get("height") == unlabelled.get("width")


def test_bad_image_sizes_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="scale"):
        qr_image.qr_png(KOD_I, scale=0)
    with pytest.raises(ConfigurationError, match="border"):
        qr_image.qr_svg(KOD_I, border=-1)


def test_missing_segno_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "segno", None)
    with pytest.raises(ConfigurationError, match=r"ksef-async\[qr\]"):
        qr_image.qr_png(KOD_I)


# --- CLI -------------------------------------------------------------------------------------------------------


def run_cli(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != cli_qr.KEY_PASSWORD_ENV} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "ksef_async.cli", "qr", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=environ,
    )


def test_cli_writes_kod_i_png_and_prints_the_link(tmp_path: Path) -> None:
    out = tmp_path / "invoice.png"
    done = run_cli(FA3, "--out", out, "--ksef-number", "5265877635-20250826-0100001AF629-AF")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [FA3_KOD_I]
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_cli_writes_kod_i_and_kod_ii_svgs_for_an_offline_invoice(
    tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    cert = make_cert(ec_key)
    cert_pem, key_pem = tmp_path / "offline.pem", tmp_path / "offline.key"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        ec_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    out = tmp_path / "invoice.svg"
    done = run_cli(FA3, "--out", out, "--offline-cert", cert_pem, "--offline-key", key_pem, "--env", "demo")
    assert done.returncode == 0, done.stderr
    kod_i, kod_ii = done.stdout.split()
    assert kod_i == FA3_KOD_I.replace("qr-test", "qr-demo")
    verified = qr.verify_kod_ii(kod_ii, cert, require_offline=True)
    assert (verified.link.context_type, verified.link.context_value) == ("Nip", SELLER)
    assert etree.fromstring(out.read_bytes()).findtext("{http://www.w3.org/2000/svg}text") == "OFFLINE"
    second = tmp_path / "invoice-certificate.svg"
    assert etree.fromstring(second.read_bytes()).findtext("{http://www.w3.org/2000/svg}text") == "CERTYFIKAT"


def test_cli_refuses_conflicting_or_bad_options(tmp_path: Path) -> None:
    out = tmp_path / "x.png"
    done = run_cli(FA3, "--out", out, "--ksef-number", "5265877635-20250826-0100001AF629-AA")
    assert done.returncode == 2
    assert "--ksef-number" in done.stderr
    done = run_cli(FA3, "--out", tmp_path / "x.gif")
    assert done.returncode == 2
    assert ".png or .svg" in done.stderr
    done = run_cli(FA3, "--out", out, "--offline-cert", QR_DIR / "offline-cert-01F20A5D352AE590.pem")
    assert done.returncode == 2
    assert "go together" in done.stderr
    assert not out.exists()


def test_cli_reads_an_encrypted_key_with_the_password_from_the_environment(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    cert = make_cert(rsa_key)
    cert_pem, key_pem = tmp_path / "offline.pem", tmp_path / "offline.key"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    password = "s3cret-pass"
    key_pem.write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password.encode()),
        )
    )
    out = tmp_path / "invoice.png"
    args: list[str | Path] = [FA3, "--out", out, "--offline-cert", cert_pem, "--offline-key", key_pem]
    args += ["--context-type", "InternalId", "--context-value", "5265877635-12345"]
    done = run_cli(*args, env={cli_qr.KEY_PASSWORD_ENV: password})
    assert done.returncode == 0, done.stderr
    verified = qr.verify_kod_ii(done.stdout.split()[1], cert, require_offline=True)
    assert (verified.link.context_type, verified.link.context_value) == ("InternalId", "5265877635-12345")
    assert (tmp_path / "invoice-certificate.png").read_bytes().startswith(b"\x89PNG")

    out.unlink()
    wrong = run_cli(*args, env={cli_qr.KEY_PASSWORD_ENV: "wrong-pass"})
    assert wrong.returncode == 2
    assert "--offline-key" in wrong.stderr
    assert "wrong-pass" not in wrong.stderr
    assert not out.exists()  # nothing written when the key cannot be used
