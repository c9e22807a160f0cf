"""`ksef-async status` without a reference: print the KSeF status service's state and upcoming maintenance."""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Any

from ksef_async.cli._connection import EXIT_USAGE, run_async
from ksef_async.cli._exit_codes import STATE_EXIT_CODES
from ksef_async.core.status_service import (
    Message,
    OutageWindow,
    ServiceState,
    ServiceStatus,
    current_outage,
    outage_deadline,
    upcoming_maintenance,
)
from ksef_async.errors import ConfigurationError
from ksef_async.status_service import StatusServiceClient

__all__ = ["STATE_EXIT_CODES", "service_status"]


def service_status(environment: str | None, status_url: str | None, *, as_json: bool, timeout: float) -> int:
    """Ask the status service and print its answer; return the state's exit code."""
    try:
        client = StatusServiceClient(status_url, environment=environment, timeout=timeout, cache_ttl=0)
    except ConfigurationError as exc:
        print(f"ksef-async: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return run_async(lambda: _ask(client), lambda result: _print(client.base_url, *result, as_json=as_json))


async def _ask(client: StatusServiceClient) -> tuple[ServiceStatus, tuple[Message, ...] | None]:
    async with client:
        current = await client.status()
        messages = await client.messages() if current.state is not ServiceState.UNKNOWN else None
    return current, messages


def _window(window: OutageWindow) -> str:
    start = window.start.isoformat() if window.start else "?"
    end = window.end.isoformat() if window.end else "not announced"
    return f"{window.category} (event {window.event_id}) from {start} to {end}"


def _print(url: str, current: ServiceStatus, messages: tuple[Message, ...] | None, *, as_json: bool) -> int:
    now = dt.datetime.now(dt.UTC)
    known = tuple(messages or ()) + current.messages
    outage = current_outage(known, now) if current.outage else None
    upcoming = upcoming_maintenance(known, now)
    if as_json:
        out: dict[str, Any] = {
            "statusUrl": url,
            **current.to_json(),
            "currentOutage": None if outage is None else outage.to_json(),
            "upcomingMaintenance": [w.to_json() for w in upcoming],
            "exitCode": STATE_EXIT_CODES[current.state],
        }
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return STATE_EXIT_CODES[current.state]
    line = f"KSeF status ({url}): {current.state.value}"
    if current.reason:
        line += f" ({current.reason})"
    print(line)
    if current.state is ServiceState.UNKNOWN:
        print("the status service could not be read: this says nothing about KSeF itself")
    if outage is not None:
        print(f"current outage: {_window(outage)}")
        deadline = outage_deadline(outage)
        if deadline is not None:
            print(f"offline invoices issued during it: send by {deadline.isoformat()}")
    for message in current.messages:
        print(f"  [{message.id} v{message.version}] {message.type}: {message.title or ''}")
    if upcoming:
        for window in upcoming:
            print(f"upcoming maintenance: {_window(window)}")
    elif current.state is not ServiceState.UNKNOWN:
        print("no maintenance announced")
    return STATE_EXIT_CODES[current.state]
