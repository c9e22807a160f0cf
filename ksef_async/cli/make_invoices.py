"""`ksef-async make-invoices`: write N distinct, XSD-valid FA(3) test invoices into a directory."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ksef_async.cli._app import app
from ksef_async.errors import ConfigurationError
from ksef_async.testing.invoices import DEFAULT_SIZE_KB, InvoiceFactory

__all__ = ["make_invoices"]


@app.command(name="make-invoices")
def make_invoices(
    outdir: Path,
    /,
    *,
    count: int,
    seller_nip: str,
    buyer_nip: str | None = None,
    size_kb: float = DEFAULT_SIZE_KB,
    seed: int | None = None,
) -> int:
    """Write COUNT generated FA(3) invoices for SELLER_NIP into OUTDIR (created if missing).

    Invoice numbers carry a random run id, so two runs never collide unless given the same --seed.

    Parameters
    ----------
    outdir
        Directory to write ``invoice-<run id>-<index>.xml`` files into.
    count
        Number of invoices.
    seller_nip
        The seller's NIP (Podmiot1), usually the NIP of the KSeF test context.
    buyer_nip
        One buyer NIP for all invoices (default: a pool of generated NIPs).
    size_kb
        Target size of each invoice in kB (1 kB = 1000 B).
    seed
        Make the output deterministic (same seed, same day: same files).
    """
    if count < 0:
        print("--count must not be negative", file=sys.stderr)
        return 2
    try:
        factory = InvoiceFactory(seller_nip, buyer_nip=buyer_nip, seed=seed, size_kb=size_kb)
    except ConfigurationError as exc:
        print(f"ksef-async make-invoices: {exc}", file=sys.stderr)
        return 2
    outdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    total = 0
    for name, data in factory.iter(count):
        (outdir / name).write_bytes(data)
        total += len(data)
    elapsed = time.perf_counter() - started
    print(
        f"wrote {count} invoices ({total:,} bytes, run id {factory.run_id}) to {outdir} in {elapsed:.2f} s",
        file=sys.stderr,
    )
    return 0
