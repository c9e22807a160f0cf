"""The simulator's invoice retrieval: single download, metadata queries, exports with encrypted parts, the HWM.

Rules this module implements (spec ``/invoices/*``, official docs ``pobieranie-faktur/*.md``), and the choices where
the spec leaves room:

* An invoice is *stored* once ``permanent_storage_date <= now``. Only stored invoices appear in metadata queries and
  exports (whatever the ``dateType``), because the record we serve carries a ``permanentStorageDate`` and KSeF
  cannot report one it does not have yet. ``GET /invoices/ksef/{n}`` answers 21165 ("processed, not yet
  available") for an invoice that has its KSeF number but is not stored yet, 21164 for an unknown number.
* High Water Mark: ``min(now, earliest permanent-storage date of every invoice not yet stored)``, rounded down
  to ``hwm_interval`` (the real HWM is a rolling mark updated from time to time; the rounding keeps it constant
  across the pages of one query). Every invoice inserted later gets a permanent-storage date after the moment it
  is inserted, so data below the HWM never changes.
* Date ranges: ``from`` and ``to`` are inclusive; a date-time without ``Z`` or an explicit offset is 400 21405
  (API 2.9.0); ``to`` defaults to now; ``to - from`` over 100 days (counted in UTC) is 400 21405;
  ``restrictToPermanentStorageHwmDate`` (PermanentStorage only) clamps ``to`` to the HWM, and ``from`` above
  the HWM is 400 21183 for a query and status 420 for an export.
* Queries: sorted by the date of ``dateType`` (then by KSeF number); at most ``query_cap`` (10,000) records per
  filter set: the page reaching the cap with more records matching has ``isTruncated`` true.
* Exports: at most ``max_concurrent_exports`` (10) in progress per context (21182); status 100 for
  ``export_delay`` seconds, then 200 with the package, or 415 when the wrapped key cannot be decrypted, or 420.
  Invoices go in ascending date order until ``max_package_invoices`` (10,000) or ``max_package_bytes`` (1 GB,
  counted on the compressed archive) would be exceeded; ``_metadata.json`` is the first member and does not
  count. The archive (Zip or TarGz) is cut binary-wise into parts of at most ``max_part_size`` plaintext bytes,
  each encrypted separately with the requester's key and IV, spooled to disk (never whole in memory), and served
  by pre-signed ``GET /storage/exports/{ref}/{n}`` with ``x-ms-meta-hash`` = SHA-256 of the encrypted part.

`seed_invoices` inserts received invoices directly (no session), for tests that need thousands of them.
"""

from __future__ import annotations

from typing import Any

from ksef_async.testing.simulator.retrieval_export import add_storage_routes, export_status, start_export
from ksef_async.testing.simulator.retrieval_query import get_invoice, invoice_metadata, query_metadata
from ksef_async.testing.simulator.retrieval_seed import seed_invoices
from ksef_async.testing.simulator.retrieval_store import ExportJob, RetrievalSettings, hwm, settings

__all__ = [
    "HANDLERS",
    "ExportJob",
    "RetrievalSettings",
    "add_storage_routes",
    "export_status",
    "get_invoice",
    "hwm",
    "invoice_metadata",
    "query_metadata",
    "seed_invoices",
    "settings",
    "start_export",
]

HANDLERS: dict[str, Any] = {
    "post_invoices_query_metadata": query_metadata,
    "post_invoices_exports": start_export,
    "get_invoices_exports_by_reference_number": export_status,
    "get_invoices_ksef_by_ksef_number": get_invoice,
}
"""Operation id -> handler, merged into the app's handler table."""
