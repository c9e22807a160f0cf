"""Guards for server-driven loops: continuation tokens that repeat, ``hasMore`` that never ends (no I/O)."""

from __future__ import annotations

from typing import Final

from ksef_async.errors import ProtocolError

__all__ = ["MAX_PAGES", "PageGuard"]

MAX_PAGES: Final = 10_000
"""Pages of one listing followed at most (KSeF's lists end far sooner: 10,000 records at 10 or more per page)."""


class PageGuard:
    """Counts the pages of one listing and remembers its continuation tokens; raises when the server loops.

    Args:
        what: Names the listing in the error (an operation id).
        max_pages: Pages allowed before the listing is declared endless.
    """

    def __init__(self, what: str, *, max_pages: int = MAX_PAGES) -> None:
        self.what = what
        self.max_pages = max_pages
        self.pages = 0
        self._tokens: set[str] = set()

    def __repr__(self) -> str:
        return f"PageGuard({self.what!r}, pages={self.pages})"

    def page(self, *, items: int | None = None, has_more: bool = True) -> None:
        """Account for one more page received.

        Args:
            items: Items on the page, when known: an empty page that says ``hasMore`` is a loop.
            has_more: Whether the page says another follows.

        Raises:
            ProtocolError: More than ``max_pages`` pages, or an empty page claiming more.
        """
        self.pages += 1
        if has_more and items == 0:
            raise ProtocolError(f"{self.what}: an empty page says hasMore: the listing would never end")
        if has_more and self.pages >= self.max_pages:
            raise ProtocolError(f"{self.what}: still hasMore after {self.pages} pages: giving up (endless listing?)")

    def token(self, token: str) -> str:
        """Check a ``continuationToken`` before following it.

        Raises:
            ProtocolError: The server sent this token before (following it would page for ever).
        """
        # Only a digest-free membership test: tokens are opaque and may be long; never shown in the message.
        if token in self._tokens:
            raise ProtocolError(
                f"{self.what}: the server repeated a continuationToken after {self.pages} pages: the listing would "
                "never end"
            )
        self._tokens.add(token)
        return token
