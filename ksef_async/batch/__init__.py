"""The batch engine: prepare (validate, zip, split, encrypt, spool) and, on top of it, send and resume."""

from __future__ import annotations

from ksef_async.batch.inputs import DuplicateCheck, InvoiceInput, expand_paths, iter_inputs
from ksef_async.batch.prepare import (
    PLAN_FILE,
    PrepareStats,
    load_plan,
    prepare_batch,
    prepare_batch_sync,
    save_plan,
    spool_name,
)

__all__ = [
    "PLAN_FILE",
    "DuplicateCheck",
    "InvoiceInput",
    "PrepareStats",
    "expand_paths",
    "iter_inputs",
    "load_plan",
    "prepare_batch",
    "prepare_batch_sync",
    "save_plan",
    "spool_name",
]
