"""The cyclopts application every command module registers on."""

from __future__ import annotations

from cyclopts import App

from ksef_async import __version__

app = App(
    name="ksef-async",
    version=__version__,
    help="Asyncio client for KSeF 2.x: batch and online sending, retrieval, and a local KSeF simulator.",
)
