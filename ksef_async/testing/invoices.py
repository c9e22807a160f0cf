"""A fast generator of distinct, XSD-valid FA(3) invoices for tests and benchmarks.

Invoices are built from string templates with per-invoice substitutions (no object tree), so tens of thousands
are produced per second. Each invoice has its own line count, goods, quantities, prices and VAT rates, correct
totals, and an invoice number (``P_2``) ``FV/<run id>/<index>`` that is unique within a factory and, through a
random run id, across runs. With a ``seed`` the output is deterministic: ``make(i)`` returns the same bytes for the
same seed, index, sizes and issue date, whatever the order of calls.
"""

from __future__ import annotations

import datetime as dt
import random
import secrets
import string
from collections.abc import Iterator
from pathlib import Path
from xml.sax.saxutils import escape

import attrs

from ksef_async.core.identifiers import generate_nip, is_valid_nip
from ksef_async.errors import ConfigurationError
from ksef_async.xml.preflight import MAX_INVOICE_SIZE

__all__ = ["DEFAULT_SIZE_KB", "InvoiceFactory", "write_invoices"]

DEFAULT_SIZE_KB = 13
"""Default target size in kB (1 kB = 1000 B), like the official 13,215-byte FA(3) sample."""

_FA3_NS = "http://crd.gov.pl/wzor/2025/06/25/13775/"
_RUN_ID_ALPHABET = string.ascii_uppercase + string.digits
_MIN_SIZE_KB = 3  # header, parties and one line already take about 2.5 kB
_MAX_SIZE_KB = MAX_INVOICE_SIZE // 1000
_LIMIT_MARGIN = 2000

_COMPANIES = (
    "Elektrownia Północ S.A.",
    "Zakład Mechaniczny Wiśniewski Sp. z o.o.",
    "Hurtownia Spożywcza Żabka-Młyn Sp.j.",
    "Przedsiębiorstwo Handlowe Kowalczyk i Synowie",
    "Łódzkie Zakłady Tekstylne S.A.",
    "Biuro Rachunkowe Zając Sp. z o.o.",
    "Drukarnia Świętokrzyska Sp. z o.o.",
    "Fabryka Mebli Dąbrowski S.A.",
    "Przedsiębiorstwo Budowlane Gród Sp. z o.o.",
    "Spółdzielnia Mleczarska Łąka",
)
_CITIES = (
    ("00-950", "Warszawa"),
    ("30-001", "Kraków"),
    ("80-001", "Gdańsk"),
    ("90-001", "Łódź"),
    ("50-001", "Wrocław"),
    ("61-001", "Poznań"),
    ("20-001", "Lublin"),
    ("15-001", "Białystok"),
)
_STREETS = ("ul. Kwiatowa", "ul. Długa", "ul. Żeromskiego", "al. Jana Pawła II", "ul. Świętokrzyska", "ul. Łąkowa")
_GOODS = (
    "śruba", "nakrętka", "podkładka", "łożysko", "kabel", "przewód", "zawór", "uszczelka", "pompa", "filtr",
    "czujnik", "moduł", "obudowa", "zasilacz", "przekaźnik", "taśma", "farba", "klej", "papier", "toner",
    "krzesło", "biurko", "regał", "lampa", "monitor", "klawiatura", "usługa", "serwis", "montaż", "transport",
)  # fmt: skip
_ATTRIBUTES = (
    "stalowy", "ocynkowany", "mosiężny", "aluminiowy", "miedziany", "wzmocniony", "przemysłowy", "biurowy",
    "ciężki", "lekki", "odporny na korozję", "klasy A", "zgodny z normą PN-EN", "z atestem", "okresowy",
    "czarny", "biały", "szary", "żółty", "zielony", "M6", "M8", "M10", "DN25", "DN50", "230 V", "24 V",
)  # fmt: skip
_UNITS = ("szt.", "kg", "m", "opak.", "kpl.", "godz.", "l")
# VAT rate -> (net field, tax field) in the order the XSD's sequence requires them.
_RATES = (("23", "P_13_1", "P_14_1"), ("8", "P_13_2", "P_14_2"), ("5", "P_13_3", "P_14_3"))
_RATE_WEIGHTS = (8, 2, 1)  # 23 % on most lines, 8 % and 5 % on some
_BAND_BITS = 8
_LINES_PER_BAND = 1 << _BAND_BITS
_BANDS = ((1, 3), (3, 8), (8, 16), (16, 30))  # attribute words per description, per band


def _money(grosze: int) -> str:
    return f"{grosze // 100}.{grosze % 100:02d}"


def _check_nip(value: str, field: str) -> str:
    if not is_valid_nip(value):
        raise ConfigurationError(f"{field}: {value!r} is not a valid NIP (10 digits with a correct check digit)")
    return value


@attrs.frozen
class _LineTail:
    """A pre-rendered invoice line after its number and UU_ID, with what the totals need."""

    text: str
    net: int  # grosze
    rate: str
    extra_bytes: int  # UTF-8 bytes beyond one per character (Polish letters take two)


def _line_tail(rng: random.Random, low: int, high: int) -> _LineTail:
    words = " ".join([rng.choice(_GOODS), *rng.choices(_ATTRIBUTES, k=rng.randint(low, high))])[:256]
    description = words[0].upper() + words[1:]
    quantity = rng.randint(1, 20)
    price = rng.randint(100, 99_999)  # grosze
    net = quantity * price
    rate = rng.choices(_RATES, _RATE_WEIGHTS)[0][0]
    text = (
        f"            <P_7>{description}</P_7>\n"
        f"            <Indeks>IDX-{rng.randint(10000, 99999)}</Indeks>\n"
        f"            <P_8A>{rng.choice(_UNITS)}</P_8A>\n"
        f"            <P_8B>{quantity}</P_8B>\n"
        f"            <P_9A>{_money(price)}</P_9A>\n"
        f"            <P_11>{_money(net)}</P_11>\n"
        f"            <P_12>{rate}</P_12>\n"
        "        </FaWiersz>\n"
    )
    return _LineTail(text, net, rate, len(text.encode()) - len(text))


def _party(tag: str, nip: str, name: str, rng: random.Random, extra: str = "") -> str:
    postcode, city = rng.choice(_CITIES)
    street = rng.choice(_STREETS)
    return (
        f"    <{tag}>\n"
        "        <DaneIdentyfikacyjne>\n"
        f"            <NIP>{nip}</NIP>\n"
        f"            <Nazwa>{escape(name)}</Nazwa>\n"
        "        </DaneIdentyfikacyjne>\n"
        "        <Adres>\n"
        "            <KodKraju>PL</KodKraju>\n"
        f"            <AdresL1>{street} {rng.randint(1, 250)}</AdresL1>\n"
        f"            <AdresL2>{postcode} {city}</AdresL2>\n"
        "        </Adres>\n"
        "        <DaneKontaktowe>\n"
        f"            <Email>biuro{rng.randint(1, 999)}@example.com</Email>\n"
        f"            <Telefon>{rng.randint(10, 99)}-{rng.randint(100, 999)}-{rng.randint(10, 99)}-"
        f"{rng.randint(10, 99)}</Telefon>\n"
        "        </DaneKontaktowe>\n"
        f"{extra}"
        f"    </{tag}>\n"
    )


class InvoiceFactory:
    """Generates distinct, XSD-valid FA(3) invoices for one seller.

    Args:
        seller_nip: The seller's NIP (``Podmiot1``); usually the NIP of the test context.
        buyer_nip: One buyer NIP for every invoice; by default each invoice picks one of 20 generated NIPs.
        seed: Makes the output deterministic (including the run id) when given.
        size_kb: Target size in kB (1 kB = 1000 B); lines are whole, so each invoice lands within about half a
            line (a few hundred bytes) of it. Capped at 998 kB to stay under KSeF's 1,000,000 B limit.
        run_id: The run id inside every invoice number; by default random (or derived from ``seed``).
        issue_date: ``P_1`` of every invoice (default: today, UTC); KSeF rejects issue dates in the future.

    Raises:
        ConfigurationError: A NIP is invalid or ``size_kb`` is outside 3 to 1000.
    """

    def __init__(
        self,
        seller_nip: str,
        *,
        buyer_nip: str | None = None,
        seed: int | None = None,
        size_kb: float = DEFAULT_SIZE_KB,
        run_id: str | None = None,
        issue_date: dt.date | None = None,
    ) -> None:
        self.seller_nip = _check_nip(seller_nip, "seller_nip")
        if not _MIN_SIZE_KB <= size_kb <= _MAX_SIZE_KB:
            raise ConfigurationError(f"size_kb: {size_kb} is outside {_MIN_SIZE_KB} to {_MAX_SIZE_KB}")
        self.size_kb = size_kb
        # Lines are whole, so a size lands within half a line of the target; keep clear of the KSeF limit.
        self._target = min(int(size_kb * 1000), MAX_INVOICE_SIZE - _LIMIT_MARGIN)
        # Every invoice draws from its own Random(f"{base}:{i}"), so make(i) does not depend on call order.
        self._base = f"seed-{seed}" if seed is not None else secrets.token_hex(16)
        setup = random.Random(f"{self._base}:setup")  # noqa: S311 - test data, not secrets
        self.run_id = run_id or "".join(setup.choices(_RUN_ID_ALPHABET, k=8))
        if buyer_nip is not None:
            self._buyers: tuple[str, ...] = (_check_nip(buyer_nip, "buyer_nip"),)
        else:
            self._buyers = tuple(generate_nip(setup) for _ in range(20))
        self._seller_name = setup.choice(_COMPANIES)
        self._bands = tuple(tuple(_line_tail(setup, low, high) for _ in range(_LINES_PER_BAND)) for low, high in _BANDS)
        self._seller_party = _party("Podmiot1", self.seller_nip, self._seller_name, setup)
        self.issue_date = issue_date or dt.datetime.now(dt.UTC).date()

    def invoice_number(self, index: int) -> str:
        """Return ``P_2`` of invoice ``index``."""
        return f"FV/{self.run_id}/{index:07d}"

    def file_name(self, index: int) -> str:
        """Return the file name of invoice ``index``."""
        return f"invoice-{self.run_id}-{index:07d}.xml"

    def _lines(self, rng: random.Random, budget: int) -> tuple[list[str], dict[str, int]]:
        # Each invoice draws its lines from one band of pre-rendered lines (short to long descriptions), so line
        # counts vary between invoices of one size; only the line number and UU_ID are rendered per line.
        band = self._bands[rng.randrange(len(self._bands))]
        getrandbits = rng.getrandbits
        lines: list[str] = []
        net_by_rate: dict[str, int] = {}
        used = 0
        number = 0
        # Stop when the next line (as long as the average so far) would overshoot by more than half of itself.
        while number == 0 or used + used // number // 2 <= budget:
            number += 1
            tail = band[getrandbits(_BAND_BITS)]
            net_by_rate[tail.rate] = net_by_rate.get(tail.rate, 0) + tail.net
            line = (
                f"        <FaWiersz>\n            <NrWierszaFa>{number}</NrWierszaFa>\n"
                f"            <UU_ID>{getrandbits(64):016x}</UU_ID>\n{tail.text}"
            )
            lines.append(line)
            used += len(line) + tail.extra_bytes
        return lines, net_by_rate

    def make(self, index: int) -> tuple[str, bytes]:
        """Build invoice ``index``; return ``(file name, UTF-8 bytes)``."""
        rng = random.Random(f"{self._base}:{index}")  # noqa: S311 - test data, not secrets
        buyer = rng.choice(self._buyers)
        issue = self.issue_date
        sale = issue - dt.timedelta(days=rng.randint(0, 14))
        postcode_city = rng.choice(_CITIES)[1]
        head = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<Faktura xmlns="{_FA3_NS}">\n'
            "    <Naglowek>\n"
            '        <KodFormularza kodSystemowy="FA (3)" wersjaSchemy="1-0E">FA</KodFormularza>\n'
            "        <WariantFormularza>3</WariantFormularza>\n"
            f"        <DataWytworzeniaFa>{issue.isoformat()}T08:{rng.randint(0, 59):02d}:00Z</DataWytworzeniaFa>\n"
            "        <SystemInfo>ksef-async InvoiceFactory</SystemInfo>\n"
            "    </Naglowek>\n"
            + self._seller_party
            + _party(
                "Podmiot2",
                buyer,
                rng.choice(_COMPANIES),
                rng,
                f"        <NrKlienta>KL-{rng.randint(1000, 9999)}</NrKlienta>\n"
                "        <JST>2</JST>\n"
                "        <GV>2</GV>\n",
            )
        )
        tail_payment = (
            "        <Platnosc>\n"
            "            <Zaplacono>1</Zaplacono>\n"
            f"            <DataZaplaty>{issue.isoformat()}</DataZaplaty>\n"
            f"            <FormaPlatnosci>{rng.choice((1, 6, 7))}</FormaPlatnosci>\n"
            "        </Platnosc>\n"
            "    </Fa>\n"
            "</Faktura>\n"
        )
        fixed = len(head.encode()) + len(tail_payment) + 900  # 900: the Fa header and totals below
        lines, net_by_rate = self._lines(rng, self._target - fixed)
        totals: list[str] = []
        gross = 0
        for rate, net_field, tax_field in _RATES:
            net = net_by_rate.get(rate)
            if net is None:
                continue
            tax = (net * int(rate) + 50) // 100  # rounded half up to the grosz
            gross += net + tax
            totals.append(f"        <{net_field}>{_money(net)}</{net_field}>\n")
            totals.append(f"        <{tax_field}>{_money(tax)}</{tax_field}>\n")
        fa_head = (
            "    <Fa>\n"
            "        <KodWaluty>PLN</KodWaluty>\n"
            f"        <P_1>{issue.isoformat()}</P_1>\n"
            f"        <P_1M>{postcode_city}</P_1M>\n"
            f"        <P_2>{self.invoice_number(index)}</P_2>\n"
            f"        <P_6>{sale.isoformat()}</P_6>\n" + "".join(totals) + f"        <P_15>{_money(gross)}</P_15>\n"
            "        <Adnotacje>\n"
            "            <P_16>2</P_16>\n"
            "            <P_17>2</P_17>\n"
            "            <P_18>2</P_18>\n"
            "            <P_18A>2</P_18A>\n"
            "            <Zwolnienie>\n"
            "                <P_19N>1</P_19N>\n"
            "            </Zwolnienie>\n"
            "            <NoweSrodkiTransportu>\n"
            "                <P_22N>1</P_22N>\n"
            "            </NoweSrodkiTransportu>\n"
            "            <P_23>2</P_23>\n"
            "            <PMarzy>\n"
            "                <P_PMarzyN>1</P_PMarzyN>\n"
            "            </PMarzy>\n"
            "        </Adnotacje>\n"
            "        <RodzajFaktury>VAT</RodzajFaktury>\n"
        )
        text = head + fa_head + "".join(lines) + tail_payment
        return self.file_name(index), text.encode()

    def iter(self, count: int, start: int = 0) -> Iterator[tuple[str, bytes]]:
        """Yield ``count`` invoices with indexes ``start``, ``start + 1``, ..."""
        for index in range(start, start + count):
            yield self.make(index)


def write_invoices(
    outdir: Path,
    count: int,
    seller_nip: str,
    size_kb: float = DEFAULT_SIZE_KB,
    *,
    seed: int | None = None,
    buyer_nip: str | None = None,
) -> list[Path]:
    """Write ``count`` generated invoices into ``outdir`` (created if missing); return their paths."""
    factory = InvoiceFactory(seller_nip, buyer_nip=buyer_nip, seed=seed, size_kb=size_kb)
    outdir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for name, data in factory.iter(count):
        path = outdir / name
        path.write_bytes(data)
        paths.append(path)
    return paths
