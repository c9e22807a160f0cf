"""The simulator's KSeF status service ("Latarnia"): a scriptable state and announcements under ``/latarnia``.

Routes (no auth, as the real service): ``GET /latarnia/status`` -> ``{"status": ..., "messages": [...]}``
(``messages`` absent when ``AVAILABLE``), ``GET /latarnia/messages`` -> every published message, and
``POST /latarnia/control`` (a ``/testdata``-like control route) taking ``{"action": ...}`` with one of
``available``, ``announce_maintenance`` (``start``, ``end``: ISO date-times), ``start_maintenance``,
``start_failure`` (``total``: bool), ``end_failure``, ``fault`` (``mode``: ``none``/``5xx``/``timeout``/
``garbage``, ``delay``: seconds) and ``api_down`` (``enabled``: bool: every ``/v2`` call answers 503 while a
maintenance or failure is in progress). The same actions are methods of `StatusServiceScript`
(``sim.status_service``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any, Final

from aiohttp import web

from ksef_async.errors import ConfigurationError

__all__ = ["STATUS_PREFIX", "StatusServiceScript", "add_status_routes"]

STATUS_PREFIX: Final = "/latarnia"
"""Where the status service is served (``sim.status_url``)."""
_FAULT_MODES: Final = frozenset({"none", "5xx", "timeout", "garbage"})
_MAX_DELAY: Final = 120.0


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(dt.UTC).isoformat()


class StatusServiceScript:
    """The scripted state of the simulator's Latarnia.

    Args:
        now: The simulator's clock (aware UTC).
    """

    def __init__(self, now: Callable[[], dt.datetime]) -> None:
        self._now = now
        self.state = "AVAILABLE"
        self.messages: list[dict[str, Any]] = []
        self.fault = "none"
        self.fault_delay = 30.0
        self.api_down = False
        """While true, every API call answers 503 as long as a maintenance or failure is in progress."""
        self.requests = 0
        self._next_event = 1000
        self._serial = 0
        self._active: dict[str, Any] | None = None

    # -- scripting ------------------------------------------------------------------------------------------------

    def _message(
        self, *, event_id: int, category: str, kind: str, title: str, start: dt.datetime, end: dt.datetime | None
    ) -> dict[str, Any]:
        self._serial += 1
        code = "PLN" if category == "MAINTENANCE" else "AWR"
        message = {
            "id": f"K/{start.year}/{code}/{self._serial:02d}",
            "eventId": event_id,
            "category": category,
            "type": kind,
            "title": title,
            "text": f"{title} (symulator).",
            "start": _iso(start),
            "end": _iso(end),
            "version": 1,
            "published": _iso(self._now()),
        }
        self.messages.append(message)
        return message

    def _event(self) -> int:
        self._next_event += 1
        return self._next_event

    def available(self) -> None:
        """Full availability (ends nothing: use `end_failure` to publish a ``FAILURE_END``)."""
        self.state = "AVAILABLE"
        self._active = None

    def announce_maintenance(self, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
        """Publish a ``MAINTENANCE_ANNOUNCEMENT`` for ``start``..``end`` (the state does not change)."""
        if start.tzinfo is None or end.tzinfo is None or end <= start:
            raise ConfigurationError("maintenance: start and end must be aware and start < end")
        return self._message(
            event_id=self._event(), category="MAINTENANCE", kind="MAINTENANCE_ANNOUNCEMENT",
            title="Planowana niedostępność KSeF", start=start, end=end,
        )  # fmt: skip

    def start_maintenance(self) -> None:
        """The planned unavailability is in progress (state ``MAINTENANCE``)."""
        self.state = "MAINTENANCE"

    def start_failure(self, *, total: bool = False) -> int:
        """A failure starts now: state ``FAILURE`` (or ``TOTAL_FAILURE``) and a ``FAILURE_START``; its eventId."""
        category = "TOTAL_FAILURE" if total else "FAILURE"
        event = self._event()
        title = "Wystąpiła całkowita awaria" if total else "Wystąpiła awaria"
        self._active = self._message(
            event_id=event, category=category, kind="FAILURE_START", title=title, start=self._now(), end=None
        )
        self.state = category
        return event

    def end_failure(self) -> int | None:
        """The failure in progress ends now: a ``FAILURE_END`` with its eventId, state ``AVAILABLE``."""
        active = self._active
        self.state = "AVAILABLE"
        self._active = None
        if active is None:
            return None
        now = self._now()
        start = dt.datetime.fromisoformat(active["start"])
        self._message(
            event_id=active["eventId"], category=active["category"], kind="FAILURE_END",
            title="Zakończenie awarii", start=start, end=now,
        )  # fmt: skip
        return int(active["eventId"])

    def set_fault(self, mode: str, delay: float = 30.0) -> None:
        """Make the service itself fail: ``5xx`` (502), ``timeout`` (answer after ``delay`` s), ``garbage``."""
        if mode not in _FAULT_MODES or not 0 <= delay <= _MAX_DELAY:
            raise ConfigurationError(f"status fault: mode one of {sorted(_FAULT_MODES)}, delay within 0..120")
        self.fault = mode
        self.fault_delay = delay

    @property
    def outage(self) -> bool:
        """A maintenance or failure is in progress."""
        return self.state != "AVAILABLE"

    def api_unavailable(self) -> bool:
        """Whether API calls should answer 503 now (``api_down`` during an outage)."""
        return self.api_down and self.outage

    # -- serving --------------------------------------------------------------------------------------------------

    async def _faulted(self) -> web.StreamResponse | None:
        if self.fault == "5xx":
            return web.Response(status=502, text="Bad Gateway")
        if self.fault == "timeout":
            await asyncio.sleep(self.fault_delay)
        if self.fault == "garbage":
            return web.Response(status=200, text="<html>maintenance</html>", content_type="text/html")
        return None

    async def status_route(self, _request: web.Request) -> web.StreamResponse:
        """``GET /status``."""
        self.requests += 1
        faulted = await self._faulted()
        if faulted is not None:
            return faulted
        body: dict[str, Any] = {"status": self.state}
        if self.state != "AVAILABLE":
            body["messages"] = [m for m in self.messages if m["type"] != "FAILURE_END"][-10:]
        return web.json_response(body)

    async def messages_route(self, _request: web.Request) -> web.StreamResponse:
        """``GET /messages``."""
        self.requests += 1
        faulted = await self._faulted()
        if faulted is not None:
            return faulted
        return web.json_response(self.messages)

    async def control_route(self, request: web.Request) -> web.StreamResponse:
        """``POST /control``: apply one scripted action (see the module docstring)."""
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise TypeError  # noqa: TRY301
            action = body.get("action")
            result: Any = None
            if action == "available":
                self.available()
            elif action == "announce_maintenance":
                result = self.announce_maintenance(
                    dt.datetime.fromisoformat(str(body["start"])), dt.datetime.fromisoformat(str(body["end"]))
                )
            elif action == "start_maintenance":
                self.start_maintenance()
            elif action == "start_failure":
                result = self.start_failure(total=bool(body.get("total", False)))
            elif action == "end_failure":
                result = self.end_failure()
            elif action == "fault":
                self.set_fault(str(body.get("mode", "none")), float(body.get("delay", 30.0)))
            elif action == "api_down":
                self.api_down = bool(body.get("enabled", True))
            else:
                return web.json_response({"error": f"unknown action {action!r}"}, status=400)
        except (ValueError, TypeError, KeyError, ConfigurationError) as exc:
            return web.json_response({"error": f"bad control request: {exc}"}, status=400)
        return web.json_response({"status": self.state, "result": result})


def add_status_routes(app: web.Application, script: StatusServiceScript) -> None:
    """Serve ``script`` under `STATUS_PREFIX`."""
    app.router.add_get(f"{STATUS_PREFIX}/status", script.status_route)
    app.router.add_get(f"{STATUS_PREFIX}/messages", script.messages_route)
    app.router.add_post(f"{STATUS_PREFIX}/control", script.control_route)
