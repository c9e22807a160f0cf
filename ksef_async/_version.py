"""The package version, in a module of its own so that reading it imports nothing else (hatch reads it too)."""

__all__ = ["__version__"]

__version__ = "0.1.0"
