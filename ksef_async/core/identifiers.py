"""KSeF identifiers: NIP, PESEL, InternalId and KSeF-number validation, reference numbers, and generators."""

from __future__ import annotations

import datetime as dt
import random
import re

__all__ = [
    "KSEF_NUMBER_RE",
    "REFERENCE_NUMBER_RE",
    "crc8",
    "generate_internal_id",
    "generate_ksef_number",
    "generate_nip",
    "generate_pesel",
    "generate_reference_number",
    "is_valid_internal_id",
    "is_valid_ksef_number",
    "is_valid_nip",
    "is_valid_pesel",
    "is_valid_reference_number",
    "nip_problem",
]

_NIP_RE = re.compile(r"[1-9]((\d[1-9])|([1-9]\d))\d{7}")
_NIP_WEIGHTS = (6, 5, 7, 2, 3, 4, 5, 6, 7)
_PESEL_RE = re.compile(r"\d{2}(?:0[1-9]|1[0-2]|2[1-9]|3[0-2]|4[1-9]|5[0-2]|6[1-9]|7[0-2]|8[1-9]|9[0-2])\d{7}")
_PESEL_WEIGHTS = (1, 3, 7, 9, 1, 3, 7, 9, 1, 3)
_INTERNAL_ID_RE = re.compile(r"([1-9]((\d[1-9])|([1-9]\d))\d{7})-(\d{5})")
# The spec's KsefNumber pattern: 35 chars (KSeF 2.0) or 36 chars with a dash inside the technical part (KSeF 1.0).
KSEF_NUMBER_RE = re.compile(
    r"([1-9](\d[1-9]|[1-9]\d)\d{7})-(20[2-9][0-9]|2[1-9]\d{2}|[3-9]\d{3})(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])"
    r"-([0-9A-F]{6})-?([0-9A-F]{6})-([0-9A-F]{2})"
)
# Reference numbers: YYYYMMDD-TT-HHHHHHHHHH-HHHHHHHHHH-CC (UPO XSD TNumerReferencyjny); treated as opaque otherwise.
REFERENCE_NUMBER_RE = re.compile(r"\d{8}-[A-Z]{2}-[0-9A-F]{10}-[0-9A-F]{10}-[0-9A-F]{2}")


def crc8(data: bytes, poly: int = 0x07, init: int = 0x00) -> int:
    """CRC-8 (no reflection, no final XOR); with the defaults this is CRC-8/SMBUS, KSeF's check digits."""
    crc = init
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ poly) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _nip_check(digits9: str) -> int:
    return sum(int(d) * w for d, w in zip(digits9, _NIP_WEIGHTS, strict=True)) % 11


def nip_problem(value: str) -> str | None:
    """Return why ``value`` is not a valid NIP (format or check digit), or ``None`` when it is one."""
    if not _NIP_RE.fullmatch(value):
        return f"{value!r} is not a NIP (10 digits)"
    check = _nip_check(value[:9])
    if check == 10:  # noqa: PLR2004
        return f"{value!r} is not a valid NIP: no check digit exists for its first nine digits"
    if check != int(value[9]):
        return f"{value!r} is not a valid NIP: the check digit is {value[9]}, the checksum gives {check}"
    return None


def is_valid_nip(value: str) -> bool:
    """Tell whether ``value`` is a 10-digit NIP with a correct check digit (remainder 10 is never valid)."""
    if not _NIP_RE.fullmatch(value):
        return False
    check = _nip_check(value[:9])
    return check != 10 and check == int(value[9])  # noqa: PLR2004


def is_valid_pesel(value: str) -> bool:
    """Tell whether ``value`` is an 11-digit PESEL with a valid month field and check digit."""
    if not _PESEL_RE.fullmatch(value):
        return False
    total = sum(int(d) * w for d, w in zip(value[:10], _PESEL_WEIGHTS, strict=True))
    return (10 - total % 10) % 10 == int(value[10])


def is_valid_internal_id(value: str) -> bool:
    """Tell whether ``value`` is an InternalId ``NIP-NNNNN`` whose 15 digits pass the weights 1,3,1,3... check."""
    if not _INTERNAL_ID_RE.fullmatch(value):
        return False
    digits = value.replace("-", "")
    total = sum(int(d) * (1 if i % 2 == 0 else 3) for i, d in enumerate(digits[:14]))
    return total % 10 == int(digits[14])


def is_valid_ksef_number(value: str) -> bool:
    """Tell whether ``value`` is a KSeF number.

    A 35-character KSeF 2.0 number must carry the right CRC-8 (poly 0x07, init 0) of its first 32 characters.
    A 36-character KSeF 1.0 number is accepted by format alone: its checksum rule is not documented.
    """
    match = KSEF_NUMBER_RE.fullmatch(value)
    if not match:
        return False
    try:
        dt.date(int(value[11:15]), int(value[15:17]), int(value[17:19]))
    except ValueError:
        return False
    if len(value) == 36:  # noqa: PLR2004
        return True
    return f"{crc8(value[:32].encode('ascii')):02X}" == value[33:]


def is_valid_reference_number(value: str) -> bool:
    """Tell whether ``value`` has the reference-number form ``YYYYMMDD-TT-HHHHHHHHHH-HHHHHHHHHH-CC``."""
    return bool(REFERENCE_NUMBER_RE.fullmatch(value))


def generate_nip(rng: random.Random) -> str:
    """Return a random valid NIP."""
    while True:
        head = str(rng.randint(1, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(8))
        check = _nip_check(head)
        candidate = head + str(check)
        if check != 10 and _NIP_RE.fullmatch(candidate):  # noqa: PLR2004
            return candidate


def generate_pesel(rng: random.Random, birth_date: dt.date | None = None) -> str:
    """Return a random valid PESEL (for a birth date in 1900-2099)."""
    born = birth_date or dt.date(rng.randint(1940, 2005), rng.randint(1, 12), rng.randint(1, 28))
    month = born.month + (20 if born.year >= 2000 else 0)  # noqa: PLR2004
    head = f"{born.year % 100:02d}{month:02d}{born.day:02d}" + "".join(str(rng.randint(0, 9)) for _ in range(4))
    total = sum(int(d) * w for d, w in zip(head, _PESEL_WEIGHTS, strict=True))
    return head + str((10 - total % 10) % 10)


def generate_internal_id(nip: str, rng: random.Random) -> str:
    """Return a valid InternalId for ``nip``."""
    four = "".join(str(rng.randint(0, 9)) for _ in range(4))
    digits = nip + four
    total = sum(int(d) * (1 if i % 2 == 0 else 3) for i, d in enumerate(digits))
    return f"{nip}-{four}{total % 10}"


def generate_ksef_number(seller_nip: str, day: dt.date, rng: random.Random) -> str:
    """Return a valid 35-character KSeF number for ``seller_nip`` accepted on ``day``."""
    technical = f"{rng.getrandbits(48):012X}"
    head = f"{seller_nip}-{day:%Y%m%d}-{technical}"
    return f"{head}-{crc8(head.encode('ascii')):02X}"


def generate_reference_number(kind: str, day: dt.date, rng: random.Random) -> str:
    """Return a reference number of type ``kind`` (e.g. ``SO``, ``SB``, ``EE``, ``AU``, ``CR``).

    The two check characters are CRC-8 of the first 33 characters, the pattern most official examples follow.
    """
    if not re.fullmatch(r"[A-Z]{2}", kind):
        msg = f"reference-number type must be two capital letters, got {kind!r}"
        raise ValueError(msg)
    head = f"{day:%Y%m%d}-{kind}-{rng.getrandbits(40):010X}-{rng.getrandbits(40):010X}"
    return f"{head}-{crc8(head.encode('ascii')):02X}"
