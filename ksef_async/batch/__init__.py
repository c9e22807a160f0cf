"""The batch engine: prepare (validate, zip, split, encrypt, spool) and, on top of it, send and resume.

Names are imported on first use (PEP 562): a process-pool worker that imports `ksef_async.batch._worker` pays for
what describing an invoice needs, not for the engine.
"""

import typing

from ksef_async import _lazy

if typing.TYPE_CHECKING:
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

_EXPORTS = {
    "DuplicateCheck": "ksef_async.batch.inputs",
    "InvoiceInput": "ksef_async.batch.inputs",
    "expand_paths": "ksef_async.batch.inputs",
    "iter_inputs": "ksef_async.batch.inputs",
    "PLAN_FILE": "ksef_async.batch.prepare",
    "PrepareStats": "ksef_async.batch.prepare",
    "load_plan": "ksef_async.batch.prepare",
    "prepare_batch": "ksef_async.batch.prepare",
    "prepare_batch_sync": "ksef_async.batch.prepare",
    "save_plan": "ksef_async.batch.prepare",
    "spool_name": "ksef_async.batch.prepare",
}

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

if not typing.TYPE_CHECKING:  # type checkers see the imports above; a typo stays an error for them
    __getattr__, __dir__ = _lazy.lazy_exports(__name__, globals(), _EXPORTS)
