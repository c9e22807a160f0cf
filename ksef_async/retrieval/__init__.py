"""Invoice retrieval: metadata queries, exports, incremental High-Water-Mark sync and single downloads."""

from __future__ import annotations

from ksef_async.retrieval.download import download_invoice
from ksef_async.retrieval.export import ExportedInvoice, ExportPackage, download_package, export_invoices
from ksef_async.retrieval.query import iter_metadata, split_windows
from ksef_async.retrieval.sync import (
    CheckpointStore,
    InvoiceDirectory,
    JsonCheckpointStore,
    SubjectReport,
    SyncReport,
    sync_invoices,
)

__all__ = [
    "CheckpointStore",
    "ExportPackage",
    "ExportedInvoice",
    "InvoiceDirectory",
    "JsonCheckpointStore",
    "SubjectReport",
    "SyncReport",
    "download_invoice",
    "download_package",
    "export_invoices",
    "iter_metadata",
    "split_windows",
    "sync_invoices",
]
