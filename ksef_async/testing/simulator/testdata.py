"""The ``/testdata/*`` endpoints of the TEST environment: subjects, persons, attachments and session limits.

As on TEST: creating something that exists answers 400 30001; removing something unknown succeeds. What they change:

* a person (``/testdata/person``) owns its NIP: a XAdES login with a certificate carrying its PESEL gets every
  permission in that NIP's context; ``isDeceased`` makes such logins end with status 470; ``isBailiff`` adds
  ``EnforcementOperations`` (already included in "every permission");
* ``/testdata/attachment`` allows invoices with an FA(3) ``Zalacznik`` for a seller NIP (batch only); without it
  such invoices end with status 415;
* ``/testdata/limits/context/session`` overrides ``maxInvoices`` per session of the caller's context (what
  ``GET /limits/context`` reports and batch/online sessions enforce: 420 and 21155).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ksef_async.testing.simulator.problems import ApiFailure
from ksef_async.testing.simulator.request_fields import req
from ksef_async.testing.simulator.runtime import Principal, Runtime
from ksef_async.testing.simulator.state import TestPerson

__all__ = [
    "attachment",
    "limits_context",
    "person",
    "session_limits",
    "session_limits_reset",
    "subject",
]

_EXISTS = "Podmiot lub uprawnienie już istnieje."


def _exists(what: str) -> ApiFailure:
    return ApiFailure(400, 30001, _EXISTS, [what])


async def subject(rt: Runtime, request: web.Request, _principal: Principal | None, body: Any) -> web.Response:
    """``POST /testdata/subject`` and ``/testdata/subject/remove``."""
    nip = req(body, "subjectNip", str)
    if request.path.endswith("/remove"):
        rt.state.subjects.pop(nip, None)
        return web.Response(status=200)
    if nip in rt.state.subjects:
        raise _exists(f"subject {nip}")
    rt.state.subjects[nip] = req(body, "subjectType", str)
    return web.Response(status=200)


async def person(rt: Runtime, request: web.Request, _principal: Principal | None, body: Any) -> web.Response:
    """``POST /testdata/person`` and ``/testdata/person/remove``."""
    nip = req(body, "nip", str)
    if request.path.endswith("/remove"):
        for pesel in [p.pesel for p in rt.state.persons.values() if p.nip == nip]:
            del rt.state.persons[pesel]
        return web.Response(status=200)
    pesel = req(body, "pesel", str)
    if pesel in rt.state.persons:
        raise _exists(f"person {pesel}")
    rt.state.persons[pesel] = TestPerson(
        pesel=pesel,
        nip=nip,
        is_bailiff=req(body, "isBailiff", bool),
        is_deceased=bool(body.get("isDeceased") or False),
    )
    return web.Response(status=200)


async def attachment(rt: Runtime, request: web.Request, _principal: Principal | None, body: Any) -> web.Response:
    """``POST /testdata/attachment`` and ``/testdata/attachment/revoke``."""
    nip = req(body, "nip", str)
    if request.path.endswith("/revoke"):
        rt.state.attachments_allowed.discard(nip)
    else:
        rt.state.attachments_allowed.add(nip)
    return web.Response(status=200)


async def limits_context(rt: Runtime, _request: web.Request, principal: Principal | None, _body: Any) -> web.Response:
    """``GET /limits/context``."""
    assert principal is not None
    return web.json_response(rt.context_limits(principal.operation.context))


async def session_limits(rt: Runtime, _request: web.Request, principal: Principal | None, body: Any) -> web.Response:
    """``POST /testdata/limits/context/session``: override the caller's context limits."""
    assert principal is not None
    limits: dict[str, dict[str, int]] = {}
    for kind in ("onlineSession", "batchSession"):
        values = req(body, kind, dict)
        limits[kind] = {
            name: req(values, name, int)
            for name in ("maxInvoiceSizeInMB", "maxInvoiceWithAttachmentSizeInMB", "maxInvoices")
        }
        if any(v < 0 for v in limits[kind].values()):
            raise ApiFailure(400, 21405, "Błąd walidacji danych wejściowych.", [f"{kind}: limits must be >= 0"])
    collective = req(req(body, "collectiveIdentifier", dict), "maxInvoices", int)
    if not 2 <= collective <= 5000:  # noqa: PLR2004 - CollectiveIdentifierContextLimitsOverride's bounds
        raise ApiFailure(
            400, 21405, "Błąd walidacji danych wejściowych.", ["collectiveIdentifier.maxInvoices must be 2..5000"]
        )
    limits["collectiveIdentifier"] = {"maxInvoices": collective}
    rt.state.session_limits[principal.operation.context] = limits
    return web.Response(status=200)


async def session_limits_reset(
    rt: Runtime, _request: web.Request, principal: Principal | None, _body: Any
) -> web.Response:
    """``DELETE /testdata/limits/context/session``: back to the defaults."""
    assert principal is not None
    rt.state.session_limits.pop(principal.operation.context, None)
    return web.Response(status=200)
