"""`ksef-async collective create|query|invoices|find`: collective identifiers (identyfikatory zbiorcze)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

from cyclopts import App, Parameter

from ksef_async.cli._app import app
from ksef_async.cli._connection import EXIT_OK, Connection, run_async
from ksef_async.errors import ConfigurationError
from ksef_async.models import (
    CollectiveIdentifierInvoice,
    CollectiveIdentifierInvoicesQueryResponseItem,
    CollectiveIdentifiersByKsefNumberQueryResponseItem,
    CollectiveIdentifiersQueryResponseItem,
)
from ksef_async.resources.collective import payment

__all__ = ["collective_app"]

collective_app = App(name="collective", help="Generate and list collective identifiers (identyfikatory zbiorcze).")
app.command(collective_app)

_JSON = Parameter(name="--json", negative="")


def _aware(text: str, option: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigurationError(f"{option}: not an ISO 8601 date-time ({text!r})") from None
    if moment.tzinfo is None:
        raise ConfigurationError(f"{option}: give an offset, e.g. {text}+02:00 or {text}Z")
    return moment


def _dump(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2))


@collective_app.command(name="create")
def create(
    ksef_numbers: Annotated[tuple[str, ...], Parameter(name="KSEF_NUMBER")],
    /,
    *,
    amount: str | None = None,
    currency: str = "PLN",
    description: str | None = None,
    as_json: Annotated[bool, _JSON] = False,
    connection: Connection = Connection(),  # noqa: B008 - an immutable dataclass of options
) -> int:
    """Generate a collective identifier for two or more invoices of one seller.

    Parameters
    ----------
    ksef_numbers
        KSeF numbers of the invoices (at least two, each once).
    amount
        Payment amount recorded with every invoice (``payment.amount``).
    currency
        Payment currency (``payment.currency``, ISO 4217), used with --amount.
    description
        Description recorded with every invoice (at most 512 characters).
    as_json
        Print JSON instead of text.
    connection
        Where and how to log in.
    """

    async def main() -> str:
        paid = None if amount is None else payment(amount, currency.upper())
        items = [
            CollectiveIdentifierInvoice(ksef_number=n, payment=paid, description=description) for n in ksef_numbers
        ]
        async with connection.client() as client:
            return await client.collective_identifiers.create(items)

    def show(number: str) -> int:
        if as_json:
            _dump({"collectiveIdentifierNumber": number, "invoices": list(ksef_numbers)})
        else:
            print(number)
        return EXIT_OK

    return run_async(main, show)


@collective_app.command(name="query")
def query(
    *,
    date_from: Annotated[str, Parameter(name="--from")],
    date_to: Annotated[str, Parameter(name="--to")],
    number: str | None = None,
    min_invoices: int | None = None,
    max_invoices: int | None = None,
    created_here: bool | None = None,
    as_json: Annotated[bool, _JSON] = False,
    connection: Connection = Connection(),  # noqa: B008 - an immutable dataclass of options
) -> int:
    """List the context's collective identifiers created in a window of at most 100 days, newest first.

    Parameters
    ----------
    date_from
        ``dateCreatedFrom``: ISO 8601 with an offset, e.g. 2026-07-01T00:00:00+02:00.
    date_to
        ``dateCreatedTo``: ISO 8601 with an offset.
    number
        Only this collective identifier.
    min_invoices
        ``invoiceCountFrom``.
    max_invoices
        ``invoiceCountTo``.
    created_here
        ``createdInCurrentContext``: only those generated (--created-here) or not (--no-created-here) here.
    as_json
        Print JSON instead of text.
    connection
        Where and how to log in.
    """

    async def main() -> list[CollectiveIdentifiersQueryResponseItem]:
        start, end = _aware(date_from, "--from"), _aware(date_to, "--to")
        async with connection.client() as client:
            return [
                item
                async for item in client.collective_identifiers.query(
                    start,
                    end,
                    number=number,
                    invoice_count_from=min_invoices,
                    invoice_count_to=max_invoices,
                    created_in_current_context=created_here,
                    page_size=200,
                )
            ]

    def show(items: list[CollectiveIdentifiersQueryResponseItem]) -> int:
        rows = [
            {
                "collectiveIdentifierNumber": i.collective_identifier_number,
                "dateCreated": i.date_created.isoformat(),
                "invoiceCount": i.invoice_count,
                "createdInCurrentContext": i.created_in_current_context,
            }
            for i in items
        ]
        if as_json:
            _dump(rows)
        else:
            for i in items:
                here = "here" if i.created_in_current_context else "elsewhere"
                print(f"{i.collective_identifier_number}  {i.date_created.isoformat()}  {i.invoice_count:>4}  {here}")
        return EXIT_OK

    return run_async(main, show)


@collective_app.command(name="invoices")
def invoices(
    numbers: Annotated[tuple[str, ...], Parameter(name="CI_NUMBER")],
    /,
    *,
    as_json: Annotated[bool, _JSON] = False,
    connection: Connection = Connection(),  # noqa: B008 - an immutable dataclass of options
) -> int:
    """List the invoices of 1 to 10 collective identifiers (details only for the creator or a party).

    Parameters
    ----------
    numbers
        Collective identifier numbers.
    as_json
        Print JSON instead of text.
    connection
        Where and how to log in.
    """

    async def main() -> list[CollectiveIdentifierInvoicesQueryResponseItem]:
        async with connection.client() as client:
            return [i async for i in client.collective_identifiers.invoices(numbers, page_size=500)]

    def show(items: list[CollectiveIdentifierInvoicesQueryResponseItem]) -> int:
        rows = [
            {
                "collectiveIdentifierNumber": i.collective_identifier_number,
                "ksefNumber": i.ksef_number,
                "payment": None
                if i.payment is None
                else {"amount": str(i.payment.amount), "currency": i.payment.currency},
                "description": i.description,
                "detailsHidden": i.details_hidden,
            }
            for i in items
        ]
        if as_json:
            _dump(rows)
        else:
            for i in items:
                money = (
                    "hidden" if i.details_hidden else (f"{i.payment.amount} {i.payment.currency}" if i.payment else "-")
                )
                print(f"{i.collective_identifier_number}  {i.ksef_number}  {money}  {i.description or ''}")
        return EXIT_OK

    return run_async(main, show)


@collective_app.command(name="find")
def find(
    ksef_number: Annotated[str, Parameter(name="KSEF_NUMBER")],
    /,
    *,
    as_json: Annotated[bool, _JSON] = False,
    connection: Connection = Connection(),  # noqa: B008 - an immutable dataclass of options
) -> int:
    """List the collective identifiers an invoice belongs to, newest first.

    Parameters
    ----------
    ksef_number
        The invoice's KSeF number.
    as_json
        Print JSON instead of text.
    connection
        Where and how to log in.
    """

    async def main() -> list[CollectiveIdentifiersByKsefNumberQueryResponseItem]:
        async with connection.client() as client:
            return [i async for i in client.collective_identifiers.by_ksef_number(ksef_number, page_size=200)]

    def show(items: list[CollectiveIdentifiersByKsefNumberQueryResponseItem]) -> int:
        rows = [
            {
                "collectiveIdentifierNumber": i.collective_identifier_number,
                "dateCreated": i.date_created.isoformat(),
                "createdInCurrentContext": i.created_in_current_context,
            }
            for i in items
        ]
        if as_json:
            _dump(rows)
        else:
            for row in rows:
                print(f"{row['collectiveIdentifierNumber']}  {row['dateCreated']}")
        return EXIT_OK

    return run_async(main, show)
