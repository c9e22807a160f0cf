"""Byte-level invoice checks KSeF applies before schema validation: encoding, BOM, prolog, characters, size.

These rules come from the KSeF 2.x changelog (2.3.0: an XML prolog is optional but, if present, must declare
UTF-8; 2.4.0: UTF-8 without BOM, no processing instructions, none of the discouraged Unicode ranges) and the
size limits of ``faktury/weryfikacja-faktury.md`` (1,000,000 B, 3,000,000 B with attachments). Processing
instructions need the parsed tree for an exact answer, so `ksef_async.xml.validation` checks them.

"Discouraged" characters are those XML 1.0 (Fifth Edition) section 2.2 lists as discouraged, plus the
control characters the ``Char`` production excludes, so that each gets a precise reason before the parser's
generic one:

* C0 controls other than TAB, LF and CR: U+0000-U+0008, U+000B, U+000C, U+000E-U+001F;
* DEL and C1 controls: U+007F-U+0084 and U+0086-U+009F (U+0085 NEL is not in the spec's list);
* the noncharacters U+FDD0-U+FDEF;
* the two last code points of every plane, U+xFFFE and U+xFFFF for planes 0 to 16.

Surrogates cannot occur in valid UTF-8, which is checked first. The spec's vaguer advice against
"compatibility characters" is not enforced.
"""

from __future__ import annotations

import re

import attrs

from ksef_async.errors import InvoiceProblem

__all__ = [
    "MAX_INVOICE_SIZE",
    "MAX_INVOICE_SIZE_WITH_ATTACHMENT",
    "Preflight",
    "discouraged_characters",
    "preflight",
    "size_problem",
    "utf8_problem",
]

MAX_INVOICE_SIZE = 1_000_000
"""Largest invoice without attachments, in bytes (``faktury/weryfikacja-faktury.md``)."""
MAX_INVOICE_SIZE_WITH_ATTACHMENT = 3_000_000
"""Largest invoice with an attachment (FA(3) ``Zalacznik``), in bytes."""

_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_S = rb"[ \t\r\n]"
_QUOTED = rb"(?:\"[^\"]*\"|'[^']*')"
_XML_DECL = re.compile(
    rb"<\?xml" + _S + rb"+version" + _S + rb"*=" + _S + rb"*" + _QUOTED
    + rb"(?:" + _S + rb"+encoding" + _S + rb"*=" + _S + rb"*(?:\"([^\"]*)\"|'([^']*)'))?"
    + rb"(?:" + _S + rb"+standalone" + _S + rb"*=" + _S + rb"*" + _QUOTED + rb")?"
    + _S + rb"*\?>"
)  # fmt: skip
# The UTF-8 encodings of the discouraged code points listed in the module docstring. Four-byte noncharacters
# U+pFFFE/U+pFFFF have a second byte of 0x8F, 0x9F, 0xAF or 0xBF; the input is valid UTF-8 when this runs.
_DISCOURAGED = re.compile(
    rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
    rb"|\xc2[\x80-\x84\x86-\x9f]"
    rb"|\xef(?:\xb7[\x90-\xaf]|\xbf[\xbe\xbf])"
    rb"|[\xf0-\xf4][\x8f\x9f\xaf\xbf]\xbf[\xbe\xbf]"
)
# Every byte that can start a discouraged sequence; deleting all the others is a fast, allocation-light test
# (bytes.translate runs in C at ~1 GB/s, the regex above at ~30 MB/s), so the regex runs only on suspects.
_SUSPECT_BYTES = {*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F, 0xC2, *range(0xEF, 0xF5)}
_NOT_SUSPECT = bytes(b for b in range(256) if b not in _SUSPECT_BYTES)
_MAX_REPORTED_CHARACTERS = 5


@attrs.frozen
class Preflight:
    """The outcome of the byte-level checks.

    Attributes:
        problems: Problems found, in document order.
        parseable: Whether the bytes may be handed to the XML parser (valid UTF-8, no other encoding declared).
        body_start: Offset just after the XML declaration (0 without one): where processing instructions may
            start.
    """

    problems: tuple[InvoiceProblem, ...]
    parseable: bool
    body_start: int


def _line_at(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def discouraged_characters(data: bytes) -> list[tuple[int, int]]:
    """Return ``(offset, code point)`` of every discouraged character in valid UTF-8 ``data``."""
    if not data.translate(None, _NOT_SUSPECT):
        return []
    return [(m.start(), ord(m.group().decode("utf-8"))) for m in _DISCOURAGED.finditer(data)]


def utf8_problem(data: bytes, name: str) -> InvoiceProblem | None:
    """Return the problem of bytes that are not valid UTF-8, naming the first bad byte, or ``None``."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        reason = f"not valid UTF-8: byte 0x{data[exc.start]:02X} at offset {exc.start} ({exc.reason})"
        return InvoiceProblem(name, reason, _line_at(data, exc.start), "encoding")
    return None


def size_problem(name: str, size: int, *, has_attachment: bool) -> InvoiceProblem | None:
    """Return the size problem of an invoice of ``size`` bytes, or ``None`` when it is within the limit."""
    limit = MAX_INVOICE_SIZE_WITH_ATTACHMENT if has_attachment else MAX_INVOICE_SIZE
    if size <= limit:
        return None
    kind = "with an attachment" if has_attachment else "without an attachment (Zalacznik)"
    return InvoiceProblem(name, f"invoice is {size:,} bytes; the limit {kind} is {limit:,} bytes", None, "size")


def preflight(data: bytes, name: str) -> Preflight:
    """Check encoding, byte order mark, XML declaration and characters of an invoice's exact bytes.

    Args:
        data: The invoice's bytes, exactly as they will be sent.
        name: The file name used in problems.

    Returns:
        The problems found and whether parsing can go ahead.
    """
    problems: list[InvoiceProblem] = []
    parseable = True
    start = 0
    if data.startswith(_UTF8_BOM):
        problems.append(
            InvoiceProblem(
                name, "starts with a UTF-8 byte order mark (EF BB BF); KSeF requires UTF-8 without BOM", 1, "bom"
            )
        )
        start = len(_UTF8_BOM)
    elif data.startswith(_UTF16_BOMS):
        problems.append(
            InvoiceProblem(name, "starts with a UTF-16 byte order mark; KSeF requires UTF-8", 1, "encoding")
        )
        return Preflight(tuple(problems), parseable=False, body_start=0)

    body_start = start
    decl = _XML_DECL.match(data, start)
    if decl is not None:
        body_start = decl.end()
        raw = decl.group(1) if decl.group(1) is not None else decl.group(2)
        if raw is None:
            problems.append(
                InvoiceProblem(name, 'XML declaration has no encoding; KSeF requires encoding="UTF-8"', 1, "prolog")
            )
        elif raw.lower() != b"utf-8":
            shown = raw.decode("ascii", "backslashreplace")
            problems.append(
                InvoiceProblem(name, f'XML declaration declares encoding "{shown}"; KSeF requires UTF-8', 1, "prolog")
            )
            parseable = False  # the parser would decode the bytes with the declared encoding

    if parseable and data.translate(None, _NOT_SUSPECT):
        # Only now is full UTF-8 validity needed (the regex assumes it); otherwise libxml2 checks it while
        # parsing and `utf8_problem` explains a failure.
        bad = utf8_problem(data, name)
        if bad is not None:
            return Preflight((*problems, bad), parseable=False, body_start=body_start)
        found = discouraged_characters(data)
        for offset, code_point in found[:_MAX_REPORTED_CHARACTERS]:
            reason = f"discouraged Unicode character U+{code_point:04X} (XML 1.0 section 2.2)"
            problems.append(InvoiceProblem(name, reason, _line_at(data, offset), "unicode"))
        if len(found) > _MAX_REPORTED_CHARACTERS:
            more = len(found) - _MAX_REPORTED_CHARACTERS
            problems.append(InvoiceProblem(name, f"{more} more discouraged Unicode characters", None, "unicode"))
    return Preflight(tuple(problems), parseable=parseable, body_start=body_start)
