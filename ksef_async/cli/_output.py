"""What the global output options (``--quiet``) asked for, read by the progress displays."""

from __future__ import annotations

__all__ = ["OutputSettings"]


class OutputSettings:
    """Process-wide output settings of the command line, set before the command runs."""

    quiet: bool = False
    """Progress bars and informational lines are off; results, warnings and errors still print."""
