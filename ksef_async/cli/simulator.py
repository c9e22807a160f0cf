"""`ksef-async simulator`: run the KSeF 2.x simulator on a socket until interrupted."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import Literal

from ksef_async.cli._app import app
from ksef_async.core.identifiers import nip_problem
from ksef_async.errors import ConfigurationError

__all__ = ["simulator"]


@app.command(name="simulator")
def simulator(
    *,
    host: str = "127.0.0.1",
    port: int = 8090,
    public_url: str | None = None,
    nip: list[str] | None = None,
    token: list[str] | None = None,
    rate_limits: str = "production",
    processing_delay: float = 0.0,
    storage_delay: float = 0.0,
    faults: str | None = None,
    seed: int | None = None,
    key_bits: int = 2048,
    system_warning: str | None = None,
    status_state: Literal["available", "maintenance", "failure", "total-failure"] = "available",
) -> int:
    """Serve the KSeF API under /v2 on HOST:PORT; print the base URL; run until interrupted (Ctrl+C).

    Parameters
    ----------
    host
        Interface to bind.
    port
        Port to bind (0: any free port).
    public_url
        Scheme, host and port put into the upload and download URLs it hands out (default: the bound address).
    nip
        Seed a context with this NIP (repeat for more); its KSeF token has every permission.
    token
        The KSeF token of the matching --nip (by position); generated and printed when missing.
    rate_limits
        "production" (the spec's limits) or "off".
    processing_delay
        Seconds invoices and sessions stay in processing.
    storage_delay
        Seconds permanentStorageDate lags behind invoicingDate.
    faults
        Fault injection, e.g. "upload-error=0.1,close-error=1:1" (see the simulator docs). Error 21184 on
        online send: "session-unavailable:2" (the first two sends), "session-down:1" (the first online session
        stays unavailable, so only a fresh session helps).
    seed
        Make identifiers and faults reproducible.
    key_bits
        Size of the generated MF RSA keys (KSeF uses 4096).
    system_warning
        Add this X-System-Warning to every API answer, e.g. "[W1]: planned maintenance" (the echo of a request's
        X-Test-System-Warning on 2xx answers, as on TEST, is always on).
    status_state
        Initial state of the status service served under /latarnia (script it further with
        POST /latarnia/control); with --faults outage-api-error=1 the API answers 503 while it is not available.
    """
    from ksef_async.testing.simulator import KsefSimulator, SimConfig  # noqa: PLC0415 - only this command needs aiohttp.web

    nips = list(nip or [])
    tokens = list(token or [])
    if (usage := _usage_problem(nips, tokens)) is not None:
        print(f"ksef-async simulator: {usage}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def serve() -> None:
        sim = KsefSimulator(
            rate_limits=rate_limits,
            processing_delay=processing_delay,
            storage_delay=storage_delay,
            faults=faults,
            seed=seed,
            public_url=public_url,
            host=host,
            port=port,
            key_bits=key_bits,
            config=SimConfig(system_warning=system_warning),
        )
        async with sim:
            print(sim.base_url, flush=True)
            for index, value in enumerate(nips):
                given = tokens[index] if index < len(tokens) else None
                created = sim.add_context(value, given)
                if given is None:
                    # Generated test credentials must be shown, or nobody could log in with them.
                    print(f"context Nip {value}: KSeF token {created}", flush=True)
                else:
                    print(f"context Nip {value}: KSeF token as given", flush=True)
            if status_state == "maintenance":
                sim.status_service.start_maintenance()
            elif status_state in {"failure", "total-failure"}:
                sim.status_service.start_failure(total=status_state == "total-failure")
            print(f"status service: {sim.status_url} ({sim.status_service.state})", flush=True)
            await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except ConfigurationError as exc:
        print(f"ksef-async simulator: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        with contextlib.suppress(BrokenPipeError):
            print("simulator stopped", file=sys.stderr)
    return 0


def _usage_problem(nips: list[str], tokens: list[str]) -> str | None:
    """Say what is wrong with the seeded contexts, before anything starts."""
    for value in nips:
        if (problem := nip_problem(value)) is not None:
            return f"--nip: {problem}"
    if len(tokens) > len(nips):
        return "every --token needs a --nip before it"
    return None
