"""The cyclopts application every command module registers on."""

from __future__ import annotations

from cyclopts import App

from ksef_async._schemas import API_VERSION
from ksef_async._version import __version__

app = App(
    name="ksef-async",
    version=f"{__version__} (KSeF API {API_VERSION})",
    help="Asyncio client for KSeF API 2.9.0: batch and online sending, retrieval, and a local KSeF simulator.",
)
