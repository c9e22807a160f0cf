"""``X-System-Warning`` on simulator answers: TEST's echo of ``X-Test-System-Warning`` and a configured warning.

The spec (``SystemWarning``) documents the header on every 2xx answer and says that on TEST the value of the request
header ``X-Test-System-Warning`` comes back as ``X-System-Warning``, ASCII-folded. The simulator does that, and
in addition adds ``SimConfig.system_warning`` (``ksef-async simulator --system-warning``) to every API answer,
errors included, so that clients can be tested against warnings they did not ask for. When both apply the value is
``configured | echoed``, the spec's separator between warnings.
"""

from __future__ import annotations

import unicodedata

from aiohttp import web

from ksef_async.testing.simulator.runtime import Runtime

__all__ = ["add_system_warning", "ascii_fold", "system_warning_value"]

# Letters NFKD does not split into base + accent; everything else folds by dropping the combining marks.
_NOT_DECOMPOSABLE = str.maketrans({"ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "đ": "d", "Đ": "D", "ß": "ss"})
_MAX_CHARS = 4096


def ascii_fold(text: str) -> str:
    """Fold ``text`` to ASCII as KSeF does (``zażółć`` -> ``zazolc``); control characters are dropped."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_NOT_DECOMPOSABLE))
    folded = decomposed.encode("ascii", "ignore").decode("ascii")
    return "".join(ch for ch in folded if " " <= ch <= "~")[:_MAX_CHARS]


def system_warning_value(configured: str | None, echoed: str | None, status: int) -> str | None:
    """The ``X-System-Warning`` value of an answer with ``status``, or None for no header.

    Args:
        configured: The simulator's own warning, added to every answer.
        echoed: The request's ``X-Test-System-Warning``, echoed on 2xx answers only (as TEST does).
        status: The answer's HTTP status.
    """
    parts = [ascii_fold(configured)] if configured else []
    if echoed and 200 <= status < 300:  # noqa: PLR2004
        parts.append(ascii_fold(echoed))
    value = " | ".join(part for part in parts if part.strip())
    return value or None


def add_system_warning(rt: Runtime, request: web.Request, response: web.StreamResponse) -> None:
    """Set ``X-System-Warning`` on ``response`` when the configuration or the request asks for one."""
    value = system_warning_value(
        rt.config.system_warning, request.headers.get("X-Test-System-Warning"), response.status
    )
    if value is not None:
        response.headers["X-System-Warning"] = value
        rt.counters.system_warnings += 1
