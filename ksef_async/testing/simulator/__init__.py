"""A faithful KSeF 2.x server double (aiohttp.web) for tests, demos and users' CI: ``async with KsefSimulator()``."""

from __future__ import annotations

from ksef_async.testing.simulator.app import KsefSimulator, build_app, register_handler
from ksef_async.testing.simulator.contract import ContractViolation, ContractViolationError
from ksef_async.testing.simulator.faults import FaultSpec
from ksef_async.testing.simulator.runtime import Counters, SimConfig
from ksef_async.testing.simulator.state import ALL_PERMISSIONS, SimClock, SimState
from ksef_async.testing.simulator.threaded import serve_in_thread

__all__ = [
    "ALL_PERMISSIONS",
    "ContractViolation",
    "ContractViolationError",
    "Counters",
    "FaultSpec",
    "KsefSimulator",
    "SimClock",
    "SimConfig",
    "SimState",
    "build_app",
    "register_handler",
    "serve_in_thread",
]
