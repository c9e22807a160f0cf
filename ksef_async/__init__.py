"""Asyncio client for Poland's KSeF 2.x e-invoicing API."""

__version__ = "0.1.0"

__all__ = ["__version__"]
