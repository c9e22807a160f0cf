"""Rate-limit arithmetic without I/O: KSeF's three sliding windows (1 s, 1 min, 1 h) per limit group."""

from __future__ import annotations

import attrs

__all__ = ["WindowLimits"]


@attrs.frozen
class WindowLimits:
    """The limits of one KSeF rate-limit group: requests allowed in any sliding 1 s, 60 s and 3600 s window.

    ``None`` means the window is not limited (public operations carry only ``perSecond``).
    """

    per_second: int | None
    per_minute: int | None = None
    per_hour: int | None = None

    def windows(self) -> tuple[tuple[float, int], ...]:
        """Return ``(window_seconds, limit)`` pairs for the limited windows, shortest first."""
        pairs = ((1.0, self.per_second), (60.0, self.per_minute), (3600.0, self.per_hour))
        return tuple((length, limit) for length, limit in pairs if limit is not None)
