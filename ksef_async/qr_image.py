"""QR code images (PNG, SVG) of KSeF verification links with their label, and links straight from invoice files.

Images need the ``qr`` extra (segno), imported on first use. Error correction level M (15 %): KOD II links are
about 450 characters, and M keeps them at a size a phone reads from print, while segno raises the level for free
whenever that does not make the symbol larger. segno encodes per ISO/IEC 18004, as the docs require.

Labels (docs ``kody-qr.md``): KOD I carries the KSeF number once known, otherwise ``OFFLINE``; KOD II carries
``CERTYFIKAT``. SVG labels are ``<text>``; PNG labels are drawn with a built-in 5x7 pixel font (digits, Latin
capitals and ``- . / :``), so no imaging library is needed.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import TYPE_CHECKING, Any

from lxml import etree

from ksef_async.core.extras import require_extra
from ksef_async.core.qr import ContextType, kod_i_link, kod_ii_link
from ksef_async.errors import ConfigurationError, InvoiceError, InvoiceProblem
from ksef_async.xml._resolver import hardened_parser
from ksef_async.xml.validation import ValidatedInvoice, validate_invoice

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

__all__ = [
    "ERROR_CORRECTION",
    "LABEL_CERTIFICATE",
    "LABEL_OFFLINE",
    "kod_i_link_for_invoice",
    "kod_ii_link_for_invoice",
    "qr_matrix",
    "qr_png",
    "qr_svg",
]

ERROR_CORRECTION = "M"
LABEL_OFFLINE = "OFFLINE"
LABEL_CERTIFICATE = "CERTYFIKAT"

_SVG_NS = "http://www.w3.org/2000/svg"

# 5x7 glyphs, one string per row, "#" = ink.
_FONT: dict[str, tuple[str, ...]] = {
    "0": (".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."),
    "1": ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "2": (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    "3": ("####.", "....#", "....#", ".###.", "....#", "....#", "####."),
    "4": ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    "5": ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    "6": (".###.", "#....", "#....", "####.", "#...#", "#...#", ".###."),
    "7": ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    "8": (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    "9": (".###.", "#...#", "#...#", ".####", "....#", "....#", ".###."),
    "A": (".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "B": ("####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."),
    "C": (".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."),
    "D": ("####.", "#...#", "#...#", "#...#", "#...#", "#...#", "####."),
    "E": ("#####", "#....", "#....", "####.", "#....", "#....", "#####"),
    "F": ("#####", "#....", "#....", "####.", "#....", "#....", "#...."),
    "G": (".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"),
    "H": ("#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "I": (".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "J": ("..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."),
    "K": ("#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"),
    "L": ("#....", "#....", "#....", "#....", "#....", "#....", "#####"),
    "M": ("#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"),
    "N": ("#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"),
    "O": (".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "P": ("####.", "#...#", "#...#", "####.", "#....", "#....", "#...."),
    "Q": (".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"),
    "R": ("####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"),
    "S": (".####", "#....", "#....", ".###.", "....#", "....#", "####."),
    "T": ("#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."),
    "U": ("#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "V": ("#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."),
    "W": ("#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."),
    "X": ("#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"),
    "Y": ("#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."),
    "Z": ("#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"),
    "-": (".....", ".....", ".....", "#####", ".....", ".....", "....."),
    ".": (".....", ".....", ".....", ".....", ".....", ".##..", ".##.."),
    "/": (".....", "....#", "...#.", "..#..", ".#...", "#....", "....."),
    ":": (".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."),
    " ": (".....", ".....", ".....", ".....", ".....", ".....", "....."),
}
_GLYPH_W, _GLYPH_H, _GLYPH_GAP = 5, 7, 1


def _segno() -> Any:
    return require_extra("segno", extra="qr")  # the qr extra is optional


def _check_size(scale: int, border: int) -> None:
    if scale < 1 or border < 0:
        msg = f"QR image: scale must be >= 1 and border >= 0 (got scale={scale}, border={border})"
        raise ConfigurationError(msg)


def qr_matrix(link: str) -> list[list[bool]]:
    """The QR symbol of ``link`` as rows of modules (``True`` = dark), without the quiet zone."""
    symbol = _segno().make(link, error=ERROR_CORRECTION.lower(), micro=False)
    return [[bool(v) for v in row] for row in symbol.matrix]


def _label_rows(label: str) -> list[list[bool]]:
    text = label.upper()
    unknown = sorted({ch for ch in text if ch not in _FONT})
    if unknown:
        msg = f"QR image label: PNG labels cannot draw {''.join(unknown)!r}; use SVG for free text"
        raise ConfigurationError(msg)
    rows: list[list[bool]] = []
    for y in range(_GLYPH_H):
        row: list[bool] = []
        for i, ch in enumerate(text):
            if i:
                row.extend([False] * _GLYPH_GAP)
            row.extend(cell == "#" for cell in _FONT[ch][y])
        rows.append(row)
    return rows


def _png(rows: list[list[bool]]) -> bytes:
    """Encode rows of pixels (``True`` = black) as a 1-bit greyscale PNG."""
    height, width = len(rows), len(rows[0])
    raw = bytearray()
    for row in rows:
        raw.append(0)  # filter: none
        packed = bytearray((width + 7) // 8)
        for x, dark in enumerate(row):
            if not dark:  # greyscale 1 = white
                packed[x >> 3] |= 0x80 >> (x & 7)
        raw += packed

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(raw), 9))
        + chunk(b"IEND", b"")
    )


def _scaled(rows: list[list[bool]], factor: int) -> list[list[bool]]:
    out: list[list[bool]] = []
    for row in rows:
        wide = [v for v in row for _ in range(factor)]
        out.extend(list(wide) for _ in range(factor))
    return out


def _pad(rows: list[list[bool]], width: int) -> list[list[bool]]:
    out = []
    for row in rows:
        left = (width - len(row)) // 2
        out.append([False] * left + row + [False] * (width - len(row) - left))
    return out


def qr_png(link: str, *, label: str | None = None, scale: int = 5, border: int = 4) -> bytes:
    """Render ``link`` as a PNG QR code, optionally with a label under it.

    Args:
        link: The verification link.
        label: Text under the code: the KSeF number, `LABEL_OFFLINE` or `LABEL_CERTIFICATE`.
        scale: Pixels per module.
        border: Quiet zone in modules (4 is the standard's minimum).

    Raises:
        ConfigurationError: segno is missing, bad sizes, or the label has characters the PNG font lacks.
    """
    _check_size(scale, border)
    matrix = qr_matrix(link)
    size = len(matrix)
    modules = [[False] * (size + 2 * border) for _ in range(border)]
    modules += [[False] * border + row + [False] * border for row in matrix]
    modules += [[False] * (size + 2 * border) for _ in range(border)]
    rows = _scaled(modules, scale)
    if label:
        text = _scaled(_label_rows(label), max(1, scale // 2))
        width = max(len(rows[0]), len(text[0]) + 2 * scale)
        gap = [[False] * width for _ in range(max(scale, 2))]
        rows = [*_pad(rows, width), *_pad(text, width), *gap]
    return _png(rows)


def qr_svg(link: str, *, label: str | None = None, scale: int = 5, border: int = 4) -> bytes:
    """Render ``link`` as an SVG QR code (UTF-8 bytes) on a white background, optionally with a ``<text>`` label.

    Args:
        link: The verification link.
        label: Text under the code: the KSeF number, `LABEL_OFFLINE` or `LABEL_CERTIFICATE`.
        scale: User units per module.
        border: Quiet zone in modules (4 is the standard's minimum).

    Raises:
        ConfigurationError: segno is missing or bad sizes.
    """
    _check_size(scale, border)
    symbol = _segno().make(link, error=ERROR_CORRECTION.lower(), micro=False)
    buf = io.BytesIO()
    symbol.save(buf, kind="svg", scale=scale, border=border, xmldecl=False, svgclass=None, lineclass=None)
    root = etree.fromstring(buf.getvalue(), hardened_parser())
    width = height = (symbol.symbol_size(scale=1, border=border)[0]) * scale
    font = max(10, 2 * scale + 2)
    total = height + (font * 2 if label else 0)
    background = etree.Element(f"{{{_SVG_NS}}}rect", width="100%", height="100%", fill="#fff")
    root.insert(0, background)
    if label:
        text = etree.SubElement(root, f"{{{_SVG_NS}}}text")
        text.set("x", str(width / 2))
        text.set("y", str(height + font))
        text.set("font-family", "monospace")
        text.set("font-size", str(font))
        text.set("text-anchor", "middle")
        text.text = label
    root.set("width", str(width))
    root.set("height", str(total))
    root.set("viewBox", f"0 0 {width} {total}")
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def _invoice(data: bytes, name: str, *, xsd: bool) -> ValidatedInvoice:
    invoice = validate_invoice(data, name, xsd=xsd)
    if invoice.seller_nip is None or invoice.issue_date is None:
        missing = "seller NIP" if invoice.seller_nip is None else "issue date"
        raise InvoiceError([InvoiceProblem(name, f"no {missing}: cannot build a QR link", None, "qr")])
    return invoice


def kod_i_link_for_invoice(data: bytes, name: str, *, env: str = "test", xsd: bool = True) -> str:
    """KOD I of an invoice file: seller NIP and issue date read from the XML, SHA-256 of the exact bytes.

    Args:
        data: The invoice file's exact bytes.
        name: The file name used in errors.
        env: ``"test"``, ``"demo"`` or ``"prod"``.
        xsd: Validate against the bundled XSD first (see `ksef_async.xml.validation.validate_invoice`).

    Raises:
        InvoiceError: The invoice is invalid or lacks the seller NIP or issue date.
    """
    invoice = _invoice(data, name, xsd=xsd)
    assert invoice.seller_nip is not None  # checked by _invoice
    assert invoice.issue_date is not None
    # ``sha256`` is the digest of the exact bytes given, computed by validate_invoice.
    return kod_i_link(invoice.seller_nip, invoice.issue_date, invoice.sha256, env=env)


def kod_ii_link_for_invoice(
    data: bytes,
    name: str,
    *,
    context_type: ContextType,
    context_value: str,
    certificate: x509.Certificate,
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    env: str = "test",
    xsd: bool = True,
) -> str:
    """KOD II of an invoice file, signed with a KSeF ``Offline`` certificate (see `ksef_async.core.qr.kod_ii_link`).

    Raises:
        InvoiceError: The invoice is invalid or lacks the seller NIP.
        CryptoError: The certificate is not an ``Offline`` one or the key does not fit it.
    """
    invoice = _invoice(data, name, xsd=xsd)
    assert invoice.seller_nip is not None  # checked by _invoice
    return kod_ii_link(
        context_type,
        context_value,
        invoice.seller_nip,
        invoice.sha256,
        certificate=certificate,
        private_key=private_key,
        env=env,
    )
