"""Seeding received invoices straight into the store (no session), for tests that need thousands of them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from lxml import etree

from ksef_async.core.crypto import sha256_b64
from ksef_async.core.identifiers import generate_nip
from ksef_async.testing.invoices import InvoiceFactory
from ksef_async.testing.simulator.retrieval_query import _text
from ksef_async.testing.simulator.retrieval_store import WARSAW, _HasRuntime, _runtime
from ksef_async.testing.simulator.runtime import Runtime
from ksef_async.testing.simulator.state import StoredInvoice
from ksef_async.xml.auth_request import safe_xml_parser

__all__ = ["seed_invoices"]


# -- seeding ---------------------------------------------------------------------------------------------------------


def seed_invoices(
    sim: Runtime | _HasRuntime,
    nip: str,
    count: int,
    start: dt.datetime,
    end: dt.datetime,
    *,
    role: str = "buyer",
    sellers: Sequence[str] | None = None,
    size_kb: float = 3.0,
    seed: int = 0,
) -> list[str]:
    """Insert ``count`` accepted invoices with ``invoicingDate`` spread evenly over ``[start, end]``, no session.

    Each gets ``acquisitionDate`` one second after ``invoicingDate`` and ``permanentStorageDate`` =
    ``invoicingDate`` + the simulator's ``storage_delay``. Keep the HWM promise (data below it never changes):
    seed history before the first query, and later arrivals with ``start`` at or after the simulated now.

    Args:
        sim: A started `KsefSimulator` (or its `Runtime`).
        nip: The context's NIP: the buyer (``role="buyer"``, what ``Subject2`` finds) or the seller (``Subject1``).
        count: How many invoices.
        start: Invoicing date of the first (aware).
        end: Invoicing date of the last (aware).
        role: ``"buyer"`` or ``"seller"``.
        sellers: Seller NIPs cycled over (buyer role; default five generated NIPs).
        size_kb: Approximate XML size (InvoiceFactory, at least 3).
        seed: Makes contents and numbers reproducible; use different seeds for separate batches.

    Returns:
        The KSeF numbers, in invoicing-date order.
    """
    rt = _runtime(sim)
    if count <= 0:
        return []
    if start.tzinfo is None or end.tzinfo is None or end < start:
        msg = "seed_invoices: start and end must be aware datetimes with start <= end"
        raise ValueError(msg)
    import random  # noqa: PLC0415

    rng = random.Random(f"seed-invoices:{seed}")  # noqa: S311 - test data
    if role == "buyer":
        seller_nips = list(sellers or [generate_nip(rng) for _ in range(5)])
    elif role == "seller":
        seller_nips = [nip]
    else:
        msg = f"seed_invoices: role must be 'buyer' or 'seller', got {role!r}"
        raise ValueError(msg)
    step = (end - start) / max(1, count - 1)
    # One factory per seller (building one costs ~0.1 s); each invoice is the seller's invoice ``index`` with its
    # dates moved to its invoicing day, so P_2 stays distinct and P_1 agrees with the metadata's issueDate.
    factories: dict[str, InvoiceFactory] = {}
    numbers: list[str] = []
    state = rt.state
    for index in range(count):
        invoicing = (start + step * index).astimezone(dt.UTC)
        seller = seller_nips[index % len(seller_nips)]
        day = invoicing.astimezone(WARSAW).date()
        factory = factories.get(seller)
        if factory is None:
            factory = InvoiceFactory(
                seller,
                buyer_nip=nip if role == "buyer" else None,
                seed=seed * 1_000_003 + len(factories),
                size_kb=size_kb,
                issue_date=day,
            )
            factories[seller] = factory
        _, content = factory.make(index)
        content = _redate(content, factory.issue_date, day)
        number = rt.ksef_number(seller, invoicing.date())
        buyer = _buyer_of(content) if role == "seller" else ("Nip", nip)
        stored = StoredInvoice(
            ksef_number=number,
            content=content,
            invoice_hash=sha256_b64(content),
            size=len(content),
            seller_nip=seller,
            buyer_identifier=buyer,
            invoice_number=factory.invoice_number(index),
            invoice_type="VAT",
            form={"systemCode": "FA (3)", "schemaVersion": "1-0E", "value": "FA"},
            issue_date=day,
            invoicing_date=invoicing,
            acquisition_date=invoicing + dt.timedelta(seconds=1),
            permanent_storage_date=invoicing + dt.timedelta(seconds=state.storage_delay),
            invoicing_mode="Online",
            has_attachment=False,
            session_reference="seeded",
            context=("Nip", seller),
        )
        state.invoices[number] = stored
        state.duplicates[(seller, "VAT", stored.invoice_number)] = ("seeded", number)
        numbers.append(number)
    return numbers


def _redate(content: bytes, old: dt.date, new: dt.date) -> bytes:
    if old == new:
        return content
    before, after = old.isoformat().encode(), new.isoformat().encode()
    # P_1, DataWytworzeniaFa and DataZaplaty carry the issue day; P_6 (sale date) may stay earlier or later.
    for tag in (b"<P_1>", b"<DataWytworzeniaFa>", b"<DataZaplaty>"):
        content = content.replace(tag + before, tag + after, 1)
    return content


def _buyer_of(content: bytes) -> tuple[str, str] | None:
    root = etree.fromstring(content, safe_xml_parser())
    value = _text(root, "{*}Podmiot2/{*}DaneIdentyfikacyjne/{*}NIP")
    return ("Nip", value) if value else None
