"""Deterministic fault injection for reliability tests: the ``--faults`` spec and the seeded dice that apply it.

Spec syntax: comma-separated ``KIND=VALUE[:COUNT]`` items.

* ``upload-error=P``: a part upload answers 500 or 503 with probability P, storing nothing;
* ``upload-reset=P``: the connection is dropped in the middle of an upload body with probability P;
* ``upload-delay=S``: each part upload is answered S seconds after its body was received;
* ``api-error=P``: an API operation answers 503 before taking effect, with probability P;
* ``close-error=P``: a session close takes effect, then answers 500, with probability P;
* ``session-unavailable=P``: an online invoice send answers 400 21184 ("Sesja tymczasowo niedostępna"), storing
  nothing, with probability P (the session stays usable: a retry may succeed);
* ``session-down=P``: an online session, when opened, is with probability P permanently unavailable: every invoice
  sent into it answers 21184 (only a fresh session helps).

For these two, a bare ``KIND`` or ``KIND:COUNT`` means ``KIND=1`` (every time, up to COUNT): ``session-unavailable:2``
makes the first two online sends answer 21184, ``session-down:1`` makes the first online session permanently
unavailable.
* ``outage-api-error=P``: while the simulator's status service reports a maintenance or failure in progress, an
  API operation answers 503 with probability P (``outage-api-error=1``: KSeF is down during an announced outage).

The optional ``:COUNT`` caps how many times a kind fires in the simulator's lifetime: ``close-error=1:1`` means
"the first close answers 500, later ones succeed". Each kind draws from its own generator seeded from ``seed``, so
adding one kind does not change when another fires.
"""

from __future__ import annotations

import math
import random

import attrs

from ksef_async.errors import ConfigurationError

__all__ = ["FAULT_KINDS", "FaultInjector", "FaultSpec"]

FAULT_KINDS: tuple[str, ...] = (
    "upload-error",
    "upload-reset",
    "upload-delay",
    "api-error",
    "close-error",
    "session-unavailable",
    "session-down",
    "outage-api-error",
)
_PROBABILITY_KINDS = frozenset(FAULT_KINDS) - {"upload-delay"}
# Kinds that may be written bare, ``KIND`` or ``KIND:COUNT``, meaning ``KIND=1[:COUNT]``.
_BARE_KINDS = frozenset({"session-unavailable", "session-down"})


@attrs.frozen
class FaultSpec:
    """Which faults to inject: probability (or delay in seconds) and optional cap per kind."""

    values: dict[str, float] = attrs.field(factory=dict)
    caps: dict[str, int] = attrs.field(factory=dict)

    @classmethod
    def parse(cls, text: str) -> FaultSpec:
        """Parse ``"upload-error=0.1,close-error=1:1"`` (or ``"session-down:1"``: a bare 21184 kind means ``=1``).

        Raises:
            ConfigurationError: an unknown kind, a value that is not a number, a probability outside [0, 1], a
                negative delay or a count below 1.
        """
        values: dict[str, float] = {}
        caps: dict[str, int] = {}
        for raw in text.split(","):
            item = raw.strip()
            if not item:
                continue
            kind, sep, rest = item.partition("=")
            kind = kind.strip()
            if not sep:  # "session-down" or "session-down:1": probability 1
                bare, _, count = kind.partition(":")
                if bare.strip() in _BARE_KINDS:
                    kind, sep, rest = bare.strip(), "=", "1" + (f":{count}" if count else "")
            if not sep or kind not in FAULT_KINDS:
                raise ConfigurationError(f"fault item {item!r}: expected KIND=VALUE with KIND one of {FAULT_KINDS}")
            value_text, _, cap_text = rest.partition(":")
            try:
                value = float(value_text)
                cap = int(cap_text) if cap_text else None
            except ValueError:
                raise ConfigurationError(f"fault item {item!r}: VALUE must be a number and COUNT an integer") from None
            if not math.isfinite(value) or value < 0 or (kind in _PROBABILITY_KINDS and value > 1):
                raise ConfigurationError(f"fault item {item!r}: a probability is within [0, 1], a delay >= 0")
            if cap is not None and cap < 1:
                raise ConfigurationError(f"fault item {item!r}: COUNT must be at least 1")
            values[kind] = value
            if cap is not None:
                caps[kind] = cap
        return cls(values, caps)


class FaultInjector:
    """Rolls the dice of a `FaultSpec`; every fault that fires is counted in ``injected``."""

    def __init__(self, spec: FaultSpec, seed: int | None) -> None:
        self.spec = spec
        self.injected: dict[str, int] = dict.fromkeys(FAULT_KINDS, 0)
        self._rngs = {
            kind: random.Random(None if seed is None else f"{seed}:{kind}")  # noqa: S311 - test dice
            for kind in FAULT_KINDS
        }

    def fires(self, kind: str) -> bool:
        """Whether a probabilistic fault of ``kind`` happens now (and count it when it does)."""
        probability = self.spec.values.get(kind, 0.0)
        if probability <= 0:
            return False
        cap = self.spec.caps.get(kind)
        if cap is not None and self.injected[kind] >= cap:
            return False
        if self._rngs[kind].random() < probability:
            self.injected[kind] += 1
            return True
        return False

    def choice(self, kind: str, options: tuple[int, ...]) -> int:
        """A deterministic pick among ``options`` from the generator of ``kind``."""
        return self._rngs[kind].choice(options)

    def upload_delay(self) -> float:
        """Seconds to hold each part upload's answer (0 when not configured)."""
        delay = self.spec.values.get("upload-delay", 0.0)
        if delay > 0:
            self.injected["upload-delay"] += 1
        return delay
