"""Per-simulator retrieval state: the settings tests tune, export jobs, the metadata cache and the High Water Mark."""

from __future__ import annotations

import asyncio
import datetime as dt
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from weakref import WeakKeyDictionary

from ksef_async.core.crypto import SessionKey
from ksef_async.testing.simulator.runtime import Runtime
from ksef_async.testing.simulator.state import ContextKey, StoredInvoice

__all__ = ["WARSAW", "ExportJob", "RetrievalSettings", "hwm", "settings"]


WARSAW = zoneinfo.ZoneInfo("Europe/Warsaw")
_DATE_TYPES = ("Issue", "Invoicing", "PermanentStorage")
_SUBJECT_TYPES = ("Subject1", "Subject2", "Subject3", "SubjectAuthorized")
_BAD = "Błąd walidacji danych wejściowych."
_CHUNK = 1 << 20


@dataclass
class RetrievalSettings:
    """Retrieval knobs of one simulator (``settings(sim)``); tests shrink them to reach the limits quickly."""

    query_cap: int = 10_000
    """Records per filter set before ``isTruncated``."""
    max_package_invoices: int = 10_000
    max_package_bytes: int = 1_000_000_000
    """Compressed package size limit (``POST /invoices/exports`` says 1GB; read in SI units)."""
    max_part_size: int = 50_000_000
    """Plaintext bytes per export part (the spec says 50 MB)."""
    max_concurrent_exports: int = 10
    export_delay: float = 0.2
    """Seconds (simulated) an export stays at status 100."""
    hwm_interval: float = 1.0
    """The HWM is rounded down to a multiple of this many seconds."""
    package_lifetime: float = 7 * 24 * 3600.0
    zip_level: int = 6


@dataclass(eq=False)
class ExportJob:
    """One ``POST /invoices/exports`` and, once built, its package."""

    reference_number: str
    context: ContextKey
    created: float
    ready_at: float
    key: SessionKey | None = field(repr=False)
    compression: str
    only_metadata: bool
    date_type: str
    selection: list[StoredInvoice] = field(default_factory=list, repr=False)
    more_after: bool = False
    hwm: dt.datetime | None = None
    failure: tuple[int, str, list[str] | None] | None = None
    package: dict[str, Any] | None = None
    part_paths: dict[int, tuple[Path, str]] = field(default_factory=dict, repr=False)
    """Ordinal -> (spooled encrypted part, its Base64 SHA-256)."""
    task: asyncio.Task[None] | None = field(default=None, repr=False)


@dataclass
class _Store:
    settings: RetrievalSettings = field(default_factory=RetrievalSettings)
    exports: dict[str, ExportJob] = field(default_factory=dict)
    metadata: WeakKeyDictionary[StoredInvoice, dict[str, Any]] = field(default_factory=WeakKeyDictionary)


_STORES: WeakKeyDictionary[Runtime, _Store] = WeakKeyDictionary()


class _HasRuntime(Protocol):
    @property
    def runtime(self) -> Runtime: ...


def _runtime(sim: Runtime | _HasRuntime) -> Runtime:
    return sim if isinstance(sim, Runtime) else sim.runtime


def _store(rt: Runtime) -> _Store:
    store = _STORES.get(rt)
    if store is None:
        store = _STORES[rt] = _Store()
    return store


def settings(sim: Runtime | _HasRuntime) -> RetrievalSettings:
    """The retrieval settings of a simulator (a started `KsefSimulator` or its `Runtime`); mutable."""
    return _store(_runtime(sim)).settings


# -- the High Water Mark ---------------------------------------------------------------------------------------------


def hwm(rt: Runtime) -> dt.datetime:
    """The permanent-storage High Water Mark now (see the module docstring)."""
    now = rt.state.clock.now_dt()
    pending = [inv.permanent_storage_date for inv in rt.state.invoices.values() if inv.permanent_storage_date > now]
    mark = min([now, *pending])
    step = _store(rt).settings.hwm_interval
    if step > 0:
        stamp = mark.timestamp()
        mark = dt.datetime.fromtimestamp(stamp - stamp % step, dt.UTC)
    return mark
