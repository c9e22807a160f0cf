"""50 concurrent online invoices at KSeF's production limits: `OnlineSender` against per-request `send_online`.

Run: ``python benchmarks/bench_online_sender.py [--invoices 50] [--baseline-timeout 180]``. Each strategy runs
against its own fresh simulator in a child process (``ksef-async simulator``, production rate limits), as a web
backend would meet KSeF: ``--invoices`` requests arrive at once, each wants its own invoice's outcome.

- ``OnlineSender``: one `OnlineSender` shared by all requests; each request calls ``await sender.submit(xml)``.
- ``send_online`` (baseline): each request calls ``send_online(client, [invoice])``, which opens, sends, closes
  and waits for its own session; the onlineSession windows (10/s, 30/min, 120/h) then bind. Requests still running
  after ``--baseline-timeout`` seconds are counted as timed out.

Figures: latency from arrival to the invoice's final outcome (p50, p95, max), invoices accepted, sessions opened
and the 429 answers received (both counted from the client's own requests). Acceptance: OnlineSender p50 <= 5 s,
at most 2 sessions, no 429.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections import Counter
from typing import Any

import aiohttp
from _machine import describe
from bench_online_rate import CONFIG, NIP, TOKEN, SimulatorProcess

from ksef_async import KsefClient, KsefTokenCredentials, OnlineSender, send_online
from ksef_async.testing.invoices import InvoiceFactory


class Counting:
    """Counts the client's session opens and 429 answers."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.trace = aiohttp.TraceConfig()
        self.trace.on_request_end.append(self._on_end)

    async def _on_end(self, _session: Any, _ctx: Any, params: aiohttp.TraceRequestEndParams) -> None:
        if params.response.status == 429:
            self.counts["429"] += 1
        if params.method == "POST" and params.url.path.endswith("/sessions/online"):
            self.counts["opened"] += 1


def client(base_url: str, counting: Counting) -> KsefClient:
    return KsefClient(
        base_url,
        credentials=KsefTokenCredentials(TOKEN),
        context=NIP,
        config=CONFIG,
        trace_configs=[counting.trace],
    )


async def run_sender(base_url: str, invoices: list[bytes]) -> dict[str, Any]:
    counting = Counting()
    latencies: list[float] = []
    accepted = 0
    async with client(base_url, counting) as api:
        await api.login()
        async with OnlineSender(api) as sender:

            async def one(xml: bytes) -> None:
                nonlocal accepted
                start = time.monotonic()
                outcome = await sender.submit(xml)
                latencies.append(time.monotonic() - start)
                accepted += outcome.accepted

            await asyncio.gather(*(one(xml) for xml in invoices))
    return {"latencies": latencies, "accepted": accepted, "timed_out": 0, **counting.counts}


async def run_baseline(base_url: str, invoices: list[bytes], limit: float) -> dict[str, Any]:
    counting = Counting()
    latencies: list[float] = []
    accepted = 0
    timed_out = 0
    async with client(base_url, counting) as api:
        await api.login()

        async def one(index: int, xml: bytes) -> None:
            nonlocal accepted, timed_out
            start = time.monotonic()
            try:
                async with asyncio.timeout(limit):
                    result = await send_online(api, [(f"inv-{index}.xml", xml)], download_upo=False)
            except TimeoutError:
                timed_out += 1
                return
            latencies.append(time.monotonic() - start)
            accepted += result.all_accepted

        await asyncio.gather(*(one(i, xml) for i, xml in enumerate(invoices)))
    return {"latencies": latencies, "accepted": accepted, "timed_out": timed_out, **counting.counts}


def quantile(values: list[float], q: float, timed_out: int, timeout: float) -> str:
    """The q-quantile, counting timed-out requests as ``> timeout``."""
    everything = sorted(values) + [float("inf")] * timed_out
    if not everything:
        return "-"
    value = everything[min(len(everything) - 1, int(q * len(everything)))]
    return f">{timeout:.0f}" if value == float("inf") else f"{value:.1f}"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--invoices", type=int, default=50)
    parser.add_argument("--baseline-timeout", type=float, default=180.0)
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()
    ours_invoices = [data for _, data in InvoiceFactory(NIP, seed=1).iter(args.invoices)]
    base_invoices = [data for _, data in InvoiceFactory(NIP, seed=2).iter(args.invoices)]
    with SimulatorProcess(seed=1) as base_url:
        ours = await run_sender(base_url, ours_invoices)
    rows = [("OnlineSender.submit", ours)]
    if not args.skip_baseline:
        with SimulatorProcess(seed=2) as base_url:
            rows.append(("send_online per request", await run_baseline(base_url, base_invoices, args.baseline_timeout)))
    print(describe())
    print(f"{args.invoices} concurrent requests, one invoice each, simulator with production rate limits")
    header = (("p50 s", 8), ("p95 s", 8), ("max s", 8), ("accepted", 10), ("timed out", 11), ("sessions", 10))
    print(f"{'strategy':<26}" + "".join(f"{h:>{w}}" for h, w in header) + f"{'429s':>6}")
    for name, figures in rows:
        lat, out, limit = figures["latencies"], figures["timed_out"], args.baseline_timeout
        p50, p95, top = (quantile(lat, q, out, limit) for q in (0.5, 0.95, 1.0))
        print(
            f"{name:<26}{p50:>8}{p95:>8}{top:>8}{figures['accepted']:>10}{out:>11}"
            f"{figures.get('opened', 0):>10}{figures.get('429', 0):>6}"
        )
    p50 = statistics.median(ours["latencies"])
    ok = p50 <= 5.0 and ours.get("opened", 0) <= 2 and ours.get("429", 0) == 0
    print(f"acceptance (p50 <= 5 s, <= 2 sessions, 0 x 429): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    asyncio.run(main())
