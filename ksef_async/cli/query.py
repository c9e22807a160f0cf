"""`ksef-async query`: list invoice metadata matching filters (all pages, every window, each record once)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Annotated, Any, Literal

from cyclopts import Parameter

from ksef_async.cli._app import app
from ksef_async.cli._connection import EXIT_OK, EXIT_USAGE, Connection, run_async
from ksef_async.core.identifiers import nip_problem
from ksef_async.errors import ConfigurationError
from ksef_async.models import InvoiceQueryDateRange, InvoiceQueryFilters, InvoiceQuerySubjectType
from ksef_async.models.converter import unstructure
from ksef_async.resources.retrieval import WARSAW
from ksef_async.retrieval.query import iter_metadata

__all__ = ["parse_moment", "parse_subjects", "query"]


def parse_moment(text: str, option: str) -> dt.datetime:
    """Read ``2025-01-31`` or an ISO 8601 date-time into an aware datetime with an explicit UTC offset.

    A value without an offset is Europe/Warsaw local time on the command line (a date alone is its midnight);
    it is fixed to the offset Warsaw has at that moment (``+01:00`` or ``+02:00``; for the repeated autumn hour,
    the first) so the request always carries an explicit offset: API 2.9.0 no longer reads offset-less values.

    Raises:
        ConfigurationError: Not a date or date-time.
    """
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigurationError(f"{option}: {text!r} is not an ISO 8601 date or date-time") from None
    if moment.tzinfo is not None:
        return moment
    local = moment.replace(tzinfo=WARSAW)
    offset = local.utcoffset()
    assert offset is not None  # a ZoneInfo always gives one
    return local.astimezone(dt.timezone(offset))


def parse_subjects(text: str) -> list[InvoiceQuerySubjectType]:
    """Read a comma-separated list of subject types (``Subject1,Subject2``).

    Raises:
        ConfigurationError: An unknown subject type.
    """
    known = {s.value.lower(): s for s in InvoiceQuerySubjectType}
    out: list[InvoiceQuerySubjectType] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        subject = known.get(item.lower())
        if subject is None:
            raise ConfigurationError(f"--subject: {item!r} is not one of {', '.join(s.value for s in known.values())}")
        if subject not in out:
            out.append(subject)
    if not out:
        raise ConfigurationError("--subject: give at least one subject type")
    return out


@app.command(name="query")
def query(
    *,
    subject: str = "Subject2",
    date_from: Annotated[str, Parameter(name="--from")],
    date_to: Annotated[str | None, Parameter(name="--to")] = None,
    date_type: Literal["Issue", "Invoicing", "PermanentStorage"] = "PermanentStorage",
    seller_nip: str | None = None,
    ksef_number: str | None = None,
    invoice_number: str | None = None,
    sort: Literal["Asc", "Desc"] = "Asc",
    limit: int | None = None,
    connection: Connection = Connection(),  # noqa: B008 - an immutable dataclass of options
    as_json: Annotated[bool, Parameter(name="--json", negative="")] = False,
) -> int:
    """Print the metadata of matching invoices; ranges longer than 100 days (in UTC) are split automatically.

    Every page costs one of KSeF's 20 metadata queries per hour (250 records each).

    Parameters
    ----------
    subject
        Subject type: Subject1 (issued), Subject2 (received), Subject3 or SubjectAuthorized.
    date_from
        Range start (date or date-time; without an offset: Europe/Warsaw local time, sent with its offset).
    date_to
        Range end (default: now; same reading as --from).
    date_type
        Which date the range applies to.
    seller_nip
        Only invoices of this seller.
    ksef_number
        Only this KSeF number.
    invoice_number
        Only this invoice number (P_2).
    sort
        Asc or Desc.
    limit
        Stop after this many records.
    connection
        Where and how to log in.
    as_json
        One JSON object (InvoiceMetadata) per line.
    """
    if seller_nip is not None and (problem := nip_problem(seller_nip)) is not None:
        print(f"ksef-async: --seller-nip: {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        subjects = parse_subjects(subject)
        filters = InvoiceQueryFilters(
            subject_type=subjects[0],
            date_range=InvoiceQueryDateRange(
                date_type=date_type,
                from_=parse_moment(date_from, "--from"),
                to=parse_moment(date_to, "--to") if date_to is not None else None,
            ),
            seller_nip=seller_nip,
            ksef_number=ksef_number,
            invoice_number=invoice_number,
        )
    except ConfigurationError as exc:
        print(f"ksef-async: {exc}", file=sys.stderr)
        return EXIT_USAGE

    async def main() -> int:
        count = 0
        async with connection.client() as client:
            async for record in iter_metadata(client.retrieval, filters, sort_order=sort):
                _print(unstructure(record), as_json=as_json)
                count += 1
                if limit is not None and count >= limit:
                    break
        return count

    def finish(count: int) -> int:
        print(f"{count} invoice(s)", file=sys.stderr)
        return EXIT_OK

    return run_async(main, finish)


def _print(meta: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(meta, ensure_ascii=False, separators=(",", ":")), flush=True)
        return
    seller = meta.get("seller", {}).get("nip", "")
    print(
        f"{meta['ksefNumber']}  {meta['invoiceNumber']:<24}  issued {meta['issueDate']}  seller {seller}  "
        f"gross {meta['grossAmount']} {meta['currency']}  stored {meta['permanentStorageDate']}",
        flush=True,
    )
