import datetime as dt
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ksef_async.core import identifiers as ids

# Golden vectors: KSeF numbers printed in the official docs, the spec's examples and the bundled UPO samples.
KSEF_NUMBERS = [
    "5265877635-20250826-0100001AF629-AF",
    "5265877635-20250626-010080DD2B5E-26",
    "5265877635-20250916-010040741B3E-46",
    "5265877635-20250916-0200A0D6723E-C2",
    "5555555555-20250828-010080615740-E4",
    "5265877635-20250925-010020A0A242-0A",
    "5265877635-20250729-01004014E040-00",
]


@pytest.mark.parametrize("number", KSEF_NUMBERS)
def test_official_ksef_numbers_have_valid_crc(number: str) -> None:
    assert ids.is_valid_ksef_number(number)


@pytest.mark.parametrize("number", KSEF_NUMBERS)
def test_one_changed_character_breaks_the_crc(number: str) -> None:
    changed = number[:25] + ("0" if number[25] != "0" else "1") + number[26:]
    assert not ids.is_valid_ksef_number(changed)


def test_ksef_1_0_numbers_accepted_by_format() -> None:
    assert ids.is_valid_ksef_number("5265877635-20250826-0100001-AF629-AF".replace("0100001-AF629", "010000-1AF629"))
    assert not ids.is_valid_ksef_number("5265877635-20251301-0100001AF629-AF")  # month 13
    assert not ids.is_valid_ksef_number("5265877635-20250230-0100001AF629-AF")  # 30 February
    assert not ids.is_valid_ksef_number("0265877635-20250826-0100001AF629-AF")


@pytest.mark.parametrize("nip", ["1234563218", "5265877635", "1111111111", "7352765225", "3755747347", "7762811692"])
def test_valid_nips(nip: str) -> None:
    assert ids.is_valid_nip(nip)


@pytest.mark.parametrize("nip", ["1234563219", "1234567890", "123456321", "0234563218", "12345632189"])
def test_invalid_nips(nip: str) -> None:
    assert not ids.is_valid_nip(nip)


@pytest.mark.parametrize("pesel", ["88102341294", "30112206276", "15062788702", "38092277125"])
def test_valid_pesels(pesel: str) -> None:
    assert ids.is_valid_pesel(pesel)


def test_invalid_pesel() -> None:
    assert not ids.is_valid_pesel("88102341295")
    assert not ids.is_valid_pesel("88132341294")  # month 13


def test_internal_ids() -> None:
    assert ids.is_valid_internal_id("6824515772-12343")
    # the docs/spec examples are illustrative only and fail the checksum
    assert not ids.is_valid_internal_id("5265877635-12345")
    assert not ids.is_valid_internal_id("5555555555-12345")


def test_reference_number_format() -> None:
    assert ids.is_valid_reference_number("20250625-SO-2C3E6C8000-B14B7FD3C1-2D")
    assert not ids.is_valid_reference_number("20250625-SO-2C3E6C8000-B14B7FD3C1")


@given(st.integers(min_value=0, max_value=2**32), st.dates(dt.date(2024, 1, 1), dt.date(2099, 12, 31)))
def test_generators_produce_valid_identifiers(seed: int, day: dt.date) -> None:
    rng = random.Random(seed)
    nip = ids.generate_nip(rng)
    assert ids.is_valid_nip(nip)
    assert ids.is_valid_ksef_number(ids.generate_ksef_number(nip, day, rng))
    assert ids.is_valid_internal_id(ids.generate_internal_id(nip, rng))
    assert ids.is_valid_pesel(ids.generate_pesel(rng))
    ref = ids.generate_reference_number("SB", day, rng)
    assert ids.is_valid_reference_number(ref)
    assert ref.startswith(f"{day:%Y%m%d}-SB-")


def test_crc8_is_smbus() -> None:
    # the CRC-8/SMBUS check value over "123456789"
    assert ids.crc8(b"123456789") == 0xF4
