"""The library's one-call batch entry points: `send_batch` and `resume_batch` over an open `KsefClient`.

::

    async with KsefClient(Environment.TEST, credentials=KsefTokenCredentials(token), context=nip) as client:
        report = await send_batch(client, ["invoices/"], state_dir="state/run-1")
        for entry in report.entries:
            print(entry.file, entry.outcome, entry.ksef_number)

After a crash or cancellation, ``await resume_batch(client, "state/run-1")`` finishes the same work without
sending any invoice twice (see `ksef_async.batch.engine`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ksef_async.batch.engine import BatchSender, SendConfig
from ksef_async.batch.resume import default_state_dir

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ksef_async.batch.events import EventSink
    from ksef_async.batch.inputs import Inputs
    from ksef_async.batch.reconcile import BatchReport
    from ksef_async.client import KsefClient

__all__ = ["resume_batch", "send_batch"]


async def send_batch(
    client: KsefClient,
    invoices: Inputs,
    *,
    state_dir: str | Path | None = None,
    config: SendConfig | None = None,
    on_event: EventSink | None = None,
    features: Iterable[str] | None = None,
) -> BatchReport:
    """Validate, prepare and send ``invoices`` by batch session(s); return the per-invoice report.

    Args:
        client: An open, authenticated client (its storage pool should match ``config.concurrency``).
        invoices: Paths (files, directories, globs), ``(name, bytes)`` pairs, or a sync or async iterable of them.
        state_dir: New or empty directory for the plan, the encrypted parts and the resume records; default: a
            new directory under the user's cache directory (`ksef_async.batch.resume.default_state_dir`).
        config: Concurrency, part size, validation policy and the rest (`SendConfig`).
        on_event: Receives every progress event (`ksef_async.batch.events`).
        features: ``X-KSeF-Feature`` values for the sessions (e.g. ``subject-identifier-validation``), added to
            the client's ``ClientConfig.features``.

    Raises:
        InvoiceError: An invoice is invalid and the policy is to stop (nothing was sent).
        ConfigurationError: Bad options or an unusable state directory.
    """
    directory = Path(state_dir) if state_dir is not None else default_state_dir()
    sender = BatchSender(client, directory, config, on_event=on_event, features=features)
    return await sender.send(invoices)


async def resume_batch(
    client: KsefClient,
    state_dir: str | Path,
    *,
    config: SendConfig | None = None,
    on_event: EventSink | None = None,
    features: Iterable[str] | None = None,
) -> BatchReport:
    """Finish the batch send recorded in ``state_dir`` (after a crash, kill or cancellation); return the report.

    Raises:
        ConfigurationError: The directory holds no plan (preparation never finished: nothing was sent).

    ``features``: ``X-KSeF-Feature`` values for sessions still to be opened, added to ``ClientConfig.features``.
    """
    sender = BatchSender(client, state_dir, config, on_event=on_event, features=features)
    return await sender.resume()
