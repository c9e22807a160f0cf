"""The FA(3) invoice factory: distinct numbers, XSD validity, sizes, determinism and `ksef-async make-invoices`."""

from __future__ import annotations

import datetime as dt
import random
import re
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from ksef_async.cli._commands import app
from ksef_async.core.identifiers import is_valid_nip
from ksef_async.errors import ConfigurationError
from ksef_async.testing.invoices import InvoiceFactory, write_invoices
from ksef_async.xml import validate_invoice
from ksef_async.xml.forms import FA3
from ksef_async.xml.preflight import MAX_INVOICE_SIZE

SELLER = "5265877635"
BUYER = "6808208874"
DAY = dt.date(2026, 3, 2)
NS = {"f": FA3.namespace}


def test_numbers_are_distinct_within_and_across_factories() -> None:
    first, second = InvoiceFactory(SELLER), InvoiceFactory(SELLER)
    assert first.run_id != second.run_id
    numbers = [validate_invoice(data, name).invoice_number for name, data in first.iter(30)]
    numbers += [validate_invoice(data, name).invoice_number for name, data in second.iter(30)]
    assert len(set(numbers)) == 60
    names = {name for name, _ in first.iter(30)} | {name for name, _ in second.iter(30)}
    assert len(names) == 60


def test_sampled_invoices_are_xsd_valid_with_the_expected_fields() -> None:
    factory = InvoiceFactory(SELLER, issue_date=DAY)
    for index in random.Random(7).sample(range(2000), 60):
        name, data = factory.make(index)
        invoice = validate_invoice(data, name)
        assert invoice.form is FA3
        assert invoice.seller_nip == SELLER
        assert invoice.invoice_number == factory.invoice_number(index)
        assert invoice.issue_date == DAY
        assert invoice.invoice_type == "VAT"


def test_buyers_have_valid_nips_and_a_fixed_buyer_is_used() -> None:
    pool = {
        etree.fromstring(d).findtext("f:Podmiot2/f:DaneIdentyfikacyjne/f:NIP", namespaces=NS)
        for _, d in InvoiceFactory(SELLER).iter(60)
    }
    assert len(pool) > 5
    assert all(nip is not None and is_valid_nip(nip) for nip in pool)
    fixed = InvoiceFactory(SELLER, buyer_nip=BUYER)
    assert {
        etree.fromstring(d).findtext("f:Podmiot2/f:DaneIdentyfikacyjne/f:NIP", namespaces=NS) for _, d in fixed.iter(10)
    } == {BUYER}


@pytest.mark.parametrize("size_kb", [13, 4, 60])
def test_sizes_are_near_the_target(size_kb: int) -> None:
    factory = InvoiceFactory(SELLER, size_kb=size_kb, seed=1)
    sizes = [len(data) for _, data in factory.iter(40)]
    target = size_kb * 1000
    # Lines are whole: each invoice lands within about half a line (a few hundred bytes) of the target.
    assert all(abs(s - target) <= max(0.05 * target, 400) for s in sizes), (min(sizes), max(sizes))
    assert abs(sum(sizes) / len(sizes) - target) <= max(0.02 * target, 150)


def test_largest_size_stays_under_the_ksef_limit() -> None:
    name, data = InvoiceFactory(SELLER, size_kb=1000, seed=3).make(0)
    assert MAX_INVOICE_SIZE - 5000 < len(data) <= MAX_INVOICE_SIZE
    assert validate_invoice(data, name).size == len(data)


def test_content_and_line_counts_vary() -> None:
    factory = InvoiceFactory(SELLER, seed=5)
    invoices = [data for _, data in factory.iter(40)]
    line_counts = {data.count(b"<FaWiersz>") for data in invoices}
    assert len(line_counts) >= 4
    bodies = {re.sub(rb"<P_2>[^<]*</P_2>", b"", data) for data in invoices}
    assert len(bodies) == 40


def test_totals_add_up() -> None:
    for _, data in InvoiceFactory(SELLER, seed=11).iter(20):
        fa = etree.fromstring(data).find("f:Fa", NS)
        assert fa is not None
        net_by_rate: dict[str, Decimal] = {}
        for line in fa.iterfind("f:FaWiersz", NS):
            rate = line.findtext("f:P_12", namespaces=NS)
            assert rate is not None
            quantity = Decimal(line.findtext("f:P_8B", namespaces=NS) or "")
            price = Decimal(line.findtext("f:P_9A", namespaces=NS) or "")
            net = Decimal(line.findtext("f:P_11", namespaces=NS) or "")
            assert quantity * price == net
            net_by_rate[rate] = net_by_rate.get(rate, Decimal(0)) + net
        gross = Decimal(0)
        for rate, net_field, tax_field in (
            ("23", "P_13_1", "P_14_1"),
            ("8", "P_13_2", "P_14_2"),
            ("5", "P_13_3", "P_14_3"),
        ):
            net_text = fa.findtext(f"f:{net_field}", namespaces=NS)
            if rate not in net_by_rate:
                assert net_text is None
                continue
            assert Decimal(net_text or "") == net_by_rate[rate]
            tax = Decimal(fa.findtext(f"f:{tax_field}", namespaces=NS) or "")
            assert abs(tax - net_by_rate[rate] * Decimal(rate) / 100) <= Decimal("0.005")
            gross += net_by_rate[rate] + tax
        assert Decimal(fa.findtext("f:P_15", namespaces=NS) or "") == gross


def test_seeded_factories_are_deterministic_and_order_independent() -> None:
    a = InvoiceFactory(SELLER, seed=42, issue_date=DAY)
    b = InvoiceFactory(SELLER, seed=42, issue_date=DAY)
    assert [a.make(i) for i in range(5)] == [b.make(i) for i in reversed(range(5))][::-1]
    c = InvoiceFactory(SELLER, seed=43, issue_date=DAY)
    assert a.make(0)[1] != c.make(0)[1]
    assert a.run_id != c.run_id


def test_bad_arguments_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="seller_nip"):
        InvoiceFactory("5265877636")
    with pytest.raises(ConfigurationError, match="buyer_nip"):
        InvoiceFactory(SELLER, buyer_nip="123")
    with pytest.raises(ConfigurationError, match="size_kb"):
        InvoiceFactory(SELLER, size_kb=2000)


def test_write_invoices(tmp_path: Path) -> None:
    paths = write_invoices(tmp_path / "out", 7, SELLER, size_kb=5, seed=1)
    assert sorted(paths) == sorted((tmp_path / "out").iterdir())
    assert len(paths) == 7
    for path in paths:
        assert validate_invoice(path.read_bytes(), path.name).seller_nip == SELLER


def test_cli_make_invoices_writes_n_valid_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outdir = tmp_path / "invoices"
    code = app(
        ["make-invoices", str(outdir), "--count", "25", "--seller-nip", SELLER, "--size-kb", "8", "--seed", "9"],
        result_action="return_value",
    )
    assert code == 0
    files = sorted(outdir.glob("*.xml"))
    assert len(files) == 25
    assert "wrote 25 invoices" in capsys.readouterr().err
    assert app(["validate", str(outdir)], result_action="return_value") == 0
    assert app(["make-invoices", str(outdir), "--count", "1", "--seller-nip", "1"], result_action="return_value") == 2
