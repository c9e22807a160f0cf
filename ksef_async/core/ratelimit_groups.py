"""KSeF rate-limit groups without I/O: which groups a request counts in, ``GET /rate-limits``, a 429's group.

Facts from the 2.9.0 spec:

* every operation counts in one group: the one named in the last column of its 429 description's table, or,
  for the 16 operations whose table names none (the unauthenticated ones, 60/s), ``anonymous``
  (``EffectiveApiRateLimits.anonymous``: "Limity dla anonimowych operacji API (nieuwierzytelnionych)");
* every operation also counts in ``global`` ("Limity globalne dla wszystkich operacji API (per adres IP)"),
  75/-1/-1 in the example of ``GET /rate-limits``;
* ``global`` is counted per IP address, and so is ``anonymous`` (its operations have no context); every other
  group is counted per (context, IP address);
* ``EffectiveApiRateLimitValues`` carries ``perSecond``, ``perMinute`` and ``perHour`` (int32); ``-1`` means
  the window is not limited;
* a 429 body (``TooManyRequestsResponse.status.details`` or ``TooManyRequestsProblemDetails.detail``) is free
  text; the spec's examples do not name the group, so a group is taken from it only when the text names
  exactly one known group as a whole word (the simulator writes ``... dla grupy global. ...``).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import attrs

from ksef_async.core.ratelimit import WindowLimits

__all__ = [
    "ANONYMOUS_GROUP",
    "GLOBAL_GROUP",
    "GLOBAL_LIMITS",
    "PER_IP_GROUPS",
    "RateLimitsReport",
    "group_named_in",
    "parse_rate_limits",
    "rate_limited_group",
    "request_groups",
]

ANONYMOUS_GROUP = "anonymous"
"""The group of the unauthenticated operations (their 429 tables name no group), counted per IP address."""
GLOBAL_GROUP = "global"
"""The group every operation counts in besides its own, counted per IP address."""
GLOBAL_LIMITS = WindowLimits(75)
"""``global`` in the spec's example of ``GET /rate-limits``: 75 per second, minute and hour not limited."""
PER_IP_GROUPS: frozenset[str] = frozenset({ANONYMOUS_GROUP, GLOBAL_GROUP})
"""Groups counted per IP address, i.e. shared by every context a process logs in to."""

_WINDOWS = ("perSecond", "perMinute", "perHour")
_INT32_MAX = 2**31 - 1
_UNLIMITED = -1
# Group names are identifiers (camelCase in the spec); anything else from the wire is not taken as a name.
_GROUP_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
# A report with more groups than this is not a KSeF answer (2.9.0 has 17); the rest is ignored, bounded.
_MAX_GROUPS = 256


def request_groups(group: str) -> tuple[str, ...]:
    """Return the groups one request of an operation in ``group`` must be admitted by, in acquisition order.

    The operation's own group comes first and ``global`` second: a request waiting (perhaps hours) for its group
    holds no ``global`` admission meanwhile.
    """
    return (group,) if group == GLOBAL_GROUP else (group, GLOBAL_GROUP)


@attrs.frozen
class RateLimitsReport:
    """``GET /rate-limits`` read tolerantly.

    Attributes:
        limits: Every well-formed group of the body, by the name the server gave it (groups this client does not
            know are kept; groups the server did not report are absent, so they keep the limiter's values).
        problems: One ``"$.group: reason"`` per entry that was skipped (its group keeps the limiter's value).
    """

    limits: dict[str, WindowLimits]
    problems: tuple[str, ...] = ()


def _window(value: Any) -> int | None:
    """One window of ``EffectiveApiRateLimitValues``: ``-1`` is not limited; raises ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("expected an integer")  # noqa: TRY004 - caught and reported by the caller
    if value == _UNLIMITED:
        return None
    if not 1 <= value <= _INT32_MAX:
        raise ValueError("expected -1 or an int32 >= 1")
    return value


def parse_rate_limits(body: Any) -> RateLimitsReport:
    """Read the JSON body of ``GET /rate-limits`` (``EffectiveApiRateLimits``) group by group.

    An older server (before 2.8) reports 12 groups and a newer one may add groups: neither is an error. A group
    whose entry is malformed (not an object, a window missing, not ``-1`` or a positive int32) is skipped and
    named in `RateLimitsReport.problems`, never guessed.

    Args:
        body: The decoded JSON body.

    Raises:
        ValueError: The body is not a JSON object (the message names its JSON type, never its content).
    """
    if not isinstance(body, Mapping):
        raise ValueError(f"GET /rate-limits: expected an object, got {type(body).__name__}")  # noqa: TRY004
    limits: dict[str, WindowLimits] = {}
    problems: list[str] = []
    for count, (name, entry) in enumerate(body.items()):
        if count >= _MAX_GROUPS:
            problems.append(f"$: more than {_MAX_GROUPS} groups, the rest ignored")
            break
        if not isinstance(name, str) or not _GROUP_NAME.fullmatch(name):
            problems.append("$: a group name that is not an identifier was skipped")
            continue
        if not isinstance(entry, Mapping):
            problems.append(f"$.{name}: expected an object")
            continue
        try:
            windows = [_window(entry[key]) for key in _WINDOWS]
        except KeyError as exc:
            problems.append(f"$.{name}.{exc.args[0]}: required field missing")
            continue
        except ValueError as exc:
            problems.append(f"$.{name}: {exc}")
            continue
        limits[name] = WindowLimits(*windows)
    return RateLimitsReport(limits, tuple(problems))


def group_named_in(texts: Iterable[str], known: Collection[str]) -> str | None:
    """Return the one known group that ``texts`` (a 429's description and details) name as a whole word.

    Returns:
        The group, or None when the texts name no known group or more than one.
    """
    named: set[str] = set()
    for text in texts:
        named.update(word for word in re.findall(r"[A-Za-z][A-Za-z0-9_]*", text) if word in known)
    return named.pop() if len(named) == 1 else None


def rate_limited_group(operation_group: str, texts: Iterable[str], known: Collection[str]) -> str:
    """Return the group a 429 of an operation in ``operation_group`` should pause.

    The group the body names when it names exactly one that the limiter knows (``global`` when the per-IP limit
    refused, which pauses every request), else the operation's own group.
    """
    return group_named_in(texts, known) or operation_group
