"""Online sending at KSeF's production limits: our limiter against a plain retry-on-429 client, side by side.

Run: ``python benchmarks/bench_online_rate.py [--duration 150] [--concurrency 8]`` (takes twice ``duration`` plus
start-up). The strategies run one after the other, each against its own fresh simulator (so neither eats the
other's windows) running as a child process (``ksef-async simulator``), as a remote server would: a server in the
client's process would add its own work (and GIL hold times) to the client's timing.

Both strategies log in, open one online session and then send invoices (encrypted as KSeF requires) for
``duration`` seconds with ``concurrency`` workers:

- ``ksef-async``: `KsefClient.online.send`; every request first waits on the shared sliding-window limiter
  (seeded from ``GET /rate-limits``).
- ``retry-on-429``: the same requests over a bare aiohttp session; on a 429 the worker sleeps ``Retry-After``
  and tries again (what other Python clients do).

Figures: invoices accepted for processing (202) within the duration, the most any client could get in that time
(a greedy sender against the exact invoiceSend windows of ``GET /rate-limits``: 10/s, 30/min, 180/h), the ratio,
and the 429 answers the client received. The onlineSession group (10/s, 30/min, 120/h) carries only the open and
the close here, so invoiceSend is the binding group.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any

import aiohttp

from ksef_async import ClientConfig, KsefClient, KsefTokenCredentials
from ksef_async.core.crypto import encrypt_cbc
from ksef_async.core.polling import Backoff
from ksef_async.models import FormCode, SendInvoiceRequest
from ksef_async.models.converter import unstructure
from ksef_async.operations import RATE_LIMIT_GROUPS
from ksef_async.resources.online import OnlineSession
from ksef_async.testing.invoices import InvoiceFactory

NIP = "5265877635"
TOKEN = "20250101-EC-0000000000-0000000000-00|nip-5265877635|" + "0" * 64
FA3 = FormCode(system_code="FA (3)", schema_version="1-0E", value="FA")
CONFIG = ClientConfig(auth_poll_backoff=Backoff(initial=0.05, maximum=0.2))


class SimulatorProcess:
    """``ksef-async simulator`` in a child process: a server that shares neither the loop nor the GIL."""

    def __init__(self, *, seed: int) -> None:
        self.seed = seed
        self.process: subprocess.Popen[str] | None = None

    def __enter__(self) -> str:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ksef_async.cli", "simulator", "--port", "0", "--nip", NIP, "--token", TOKEN,
             "--seed", str(self.seed)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )  # fmt: skip
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("http"):
                return line.strip()
        raise RuntimeError("the simulator did not print its base URL")

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(30)


def greedy_bound(duration: float, windows: list[tuple[float, int]]) -> int:
    """Most requests a perfect sender gets admitted in [0, duration] by exact sliding windows (t-w, t]."""
    admitted: list[float] = []
    t = 0.0
    while True:
        for length, limit in windows:
            if len(admitted) >= limit:
                t = max(t, admitted[-limit] + length + 1e-9)
        if t > duration:
            return len(admitted)
        admitted.append(t)


def _send_body(session: OnlineSession, invoice: bytes) -> dict[str, Any]:
    import hashlib  # noqa: PLC0415

    encrypted = encrypt_cbc(session.key, invoice)
    request = SendInvoiceRequest(
        invoice_hash=hashlib.sha256(invoice).digest(),
        invoice_size=len(invoice),
        encrypted_invoice_hash=hashlib.sha256(encrypted).digest(),
        encrypted_invoice_size=len(encrypted),
        encrypted_invoice_content=encrypted,
    )
    return unstructure(request)  # type: ignore[no-any-return]


async def run_ours(base_url: str, invoices: list[bytes], duration: float, concurrency: int) -> dict[str, Any]:
    refused = 0

    async def on_end(_session: Any, _ctx: Any, params: aiohttp.TraceRequestEndParams) -> None:
        nonlocal refused
        refused += params.response.status == 429

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_end)
    async with KsefClient(
        base_url, credentials=KsefTokenCredentials(TOKEN), context=NIP, config=CONFIG, trace_configs=[trace]
    ) as client:
        await client.login()
        session = await client.online.open(FA3)
        accepted: list[float] = []
        queue = iter(invoices)
        start = time.monotonic()

        async def worker() -> None:
            for invoice in queue:
                await client.online.send(session, invoice)
                accepted.append(time.monotonic() - start)

        try:
            async with asyncio.timeout(duration):
                await asyncio.gather(*(worker() for _ in range(concurrency)))
        except TimeoutError:
            pass
        await client.online.close(session.reference_number)
    return {"accepted": sum(1 for t in accepted if t <= duration), "rate_limited": refused}


async def run_baseline(base_url: str, invoices: list[bytes], duration: float, concurrency: int) -> dict[str, Any]:
    refused = 0
    async with KsefClient(base_url, credentials=KsefTokenCredentials(TOKEN), context=NIP, config=CONFIG) as client:
        await client.login()
        session = await client.online.open(FA3)
        token, _ = await client.authenticator.access_token()
        url = f"{base_url}/sessions/online/{session.reference_number}/invoices"
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        accepted: list[float] = []
        queue = iter(invoices)
        start = time.monotonic()
        async with aiohttp.ClientSession() as http:

            async def worker() -> None:
                nonlocal refused
                for invoice in queue:
                    body = json.dumps(_send_body(session, invoice))
                    while True:
                        async with http.post(url, data=body, headers=headers) as response:
                            await response.read()
                            if response.status != 429:
                                response.raise_for_status()
                                break
                            refused += 1
                            await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                    accepted.append(time.monotonic() - start)

            try:
                async with asyncio.timeout(duration):
                    await asyncio.gather(*(worker() for _ in range(concurrency)))
            except TimeoutError:
                pass
        await client.online.close(session.reference_number)
    return {"accepted": sum(1 for t in accepted if t <= duration), "rate_limited": refused}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=150.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    count = int(args.duration * 2) + 50  # more than either strategy can send
    ours_invoices = [data for _, data in InvoiceFactory(NIP, seed=1).iter(count)]
    base_invoices = [data for _, data in InvoiceFactory(NIP, seed=2).iter(count)]
    limits = RATE_LIMIT_GROUPS["invoiceSend"]
    bound = greedy_bound(args.duration, [(length, limit) for length, limit in limits.windows()])
    with SimulatorProcess(seed=1) as base_url:
        ours = await run_ours(base_url, ours_invoices, args.duration, args.concurrency)
    with SimulatorProcess(seed=2) as base_url:
        base = await run_baseline(base_url, base_invoices, args.duration, args.concurrency)
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, nproc={os.cpu_count()}, Python {platform.python_version()}, load {os.getloadavg()}")
    print(
        f"online sending for {args.duration:.0f} s, {args.concurrency} workers, invoiceSend limits "
        f"{limits.per_second}/s {limits.per_minute}/min {limits.per_hour}/h; best possible: {bound} invoices"
    )
    print(f"{'strategy':<16}{'accepted':>10}{'per min':>10}{'of best':>10}{'429s':>8}")
    for name, figures in (("ksef-async", ours), ("retry-on-429", base)):
        share = figures["accepted"] / bound if bound else 0.0
        per_min = figures["accepted"] / args.duration * 60
        print(f"{name:<16}{figures['accepted']:>10}{per_min:>10.1f}{share:>10.1%}{figures['rate_limited']:>8}")


if __name__ == "__main__":
    asyncio.run(main())
