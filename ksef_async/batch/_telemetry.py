"""Batch events turned into OpenTelemetry metrics and session spans (no-ops without the ``otel`` extra)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ksef_async import _telemetry as telemetry
from ksef_async.batch import events
from ksef_async.batch.events import BatchEvent

__all__ = ["BatchTelemetry"]


class BatchTelemetry:
    """Turns one batch send's events (`ksef_async.batch.events`) into session spans and metrics.

    One instance per `ksef_async.batch.engine.BatchSender`; call it with every event.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._references: dict[int, str] = {}
        self._part_started: dict[tuple[int, int], float] = {}

    def __call__(self, event: BatchEvent) -> None:
        """Handle one event."""
        if not telemetry.ENABLED:
            return
        if isinstance(event, events.PartProgress):
            self._part_started.setdefault((event.session, event.ordinal), self._clock())
        elif isinstance(event, events.PartUploaded):
            started = self._part_started.pop((event.session, event.ordinal), None)
            elapsed = self._clock() - started if started is not None else None
            telemetry.part_uploaded(event.size, elapsed)
        elif isinstance(event, events.SessionStatusChanged):
            self._session(event)
        elif isinstance(event, events.InvoicesValidated):
            telemetry.invoices("batch", sent=event.invoices)
        elif isinstance(event, events.ResultsFetched):
            telemetry.invoices("batch", accepted=event.accepted + event.duplicates, rejected=event.rejected)
        elif isinstance(event, events.UpoSaved):
            reference = self._references.get(event.session)
            if reference is not None:
                telemetry.upo_received("batch", reference, clock=self._clock)

    def _session(self, event: Any) -> None:
        reference = event.reference_number
        if reference is None:
            return
        self._references[event.session] = reference
        telemetry.session_started("batch", reference, clock=self._clock, index=event.session)
        if event.state == "closed":
            telemetry.session_closed("batch", reference, clock=self._clock)
        elif event.state in {"done", "failed"}:
            telemetry.session_ended("batch", reference, event.code, clock=self._clock)
