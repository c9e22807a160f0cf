"""The machine line every benchmark prints, and pinning the process to one CPU for single-core figures.

Imported by the ``bench_*.py`` scripts as ``from _machine import ...``: they run as ``python benchmarks/bench_x.py``,
which puts this directory first on ``sys.path``.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

__all__ = ["cpu_model", "describe", "pin_to_one_core", "unpin"]


def cpu_model() -> str:
    """The first ``model name`` in ``/proc/cpuinfo``, else the architecture (``platform.machine()``)."""
    try:
        with Path("/proc/cpuinfo").open(encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass  # not Linux: fall back to the architecture
    return platform.machine() or "unknown CPU"


def describe(*extra: str) -> str:
    """``"<CPU model>, nproc N, Python X.Y.Z"``, then ``extra`` (library versions, platform...), comma-separated."""
    return ", ".join([cpu_model(), f"nproc {os.cpu_count()}", f"Python {platform.python_version()}", *extra])


def pin_to_one_core() -> set[int]:
    """Pin this process to the lowest CPU it may run on; return the CPUs it could use before (empty: no such API)."""
    if not hasattr(os, "sched_setaffinity"):
        return set()
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})
    return allowed


def unpin(cpus: set[int]) -> None:
    """Let this process run on ``cpus`` again (what `pin_to_one_core` returned; empty does nothing)."""
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)
