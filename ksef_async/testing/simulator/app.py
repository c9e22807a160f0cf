"""The simulator's aiohttp application and `KsefSimulator`, the in-process server object tests and the CLI use.

Every spec operation is routed under ``/v2`` through one pipeline, in this order: count the request, inject an
``api-error`` fault, check the bearer token (401), count it against the rate limits (429), check the operation's
required permissions (403), check the JSON body against the spec (strict mode: a mismatch is logged at ERROR and
recorded in ``sim.contract_violations``), refuse a request whose parameters or body break the spec (every mode: 400
21405 naming the field; see `ksef_async.testing.simulator.request_validation`; 51 parts stay 21161), run
the handler, inject a ``close-error`` fault, and check the answer against the spec (strict mode: a mismatch is
recorded, logged and raised as `ContractViolationError`, so the client gets a 500). Every operation of the bundled
spec has a handler (``tests/test_coverage.py`` checks it); an operation without one would answer 501 with an
``ExceptionResponse``, which strict mode does not count as a violation. ``sim.counters.operations`` counts requests
per operation id. A handler's unexpected exception (a simulator bug) is logged, recorded in ``sim.internal_errors``
and answered 400 in the documented shape, never as a 500.
Storage (part uploads, UPO downloads) lives under ``/storage`` outside the API: no token, no rate limit.
The status service (Latarnia) is served under ``/latarnia`` (``sim.status_url``), scripted through
``sim.status_service`` or ``POST /latarnia/control`` (see `ksef_async.testing.simulator.status_service`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import shutil
import tempfile
import warnings
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from ksef_async.core.baseurl import is_loopback_host
from ksef_async.core.codes import ExceptionCode
from ksef_async.core.ratelimit import WindowLimits
from ksef_async.errors import ConfigurationError
from ksef_async.operations import OPERATIONS, PUBLIC_GROUP, Operation, TokenKind
from ksef_async.testing.simulator import (
    auth,
    batch,
    certificates,
    collective,
    peppol,
    permissions,
    retrieval,
    sessions,
    storage,
    testdata,
    upo_documents,
)
from ksef_async.testing.simulator.bodylimits import body_limit, read_body
from ksef_async.testing.simulator.contract import (
    ContractChecker,
    ContractViolation,
    ContractViolationError,
    require_contract_extra,
)
from ksef_async.testing.simulator.faults import FaultInjector, FaultSpec
from ksef_async.testing.simulator.keys import MfKeyring
from ksef_async.testing.simulator.problems import ApiFailure, forbidden, render_failure, too_many_requests, unauthorized
from ksef_async.testing.simulator.ratelimits import RateLimiter
from ksef_async.testing.simulator.runtime import RAW_BODY, Counters, Principal, Runtime, SimConfig
from ksef_async.testing.simulator.spec_codes import (
    UNREADABLE_CONTENT,
    documented_400_codes,
    documented_400_description,
)
from ksef_async.testing.simulator.state import ALL_PERMISSIONS, SessionKind, SimClock, SimState
from ksef_async.testing.simulator.status_service import StatusServiceScript, add_status_routes
from ksef_async.testing.simulator.system_warnings import add_system_warning

__all__ = ["Handler", "KsefSimulator", "build_app", "exposure_warning"]

_log = logging.getLogger("ksef_async.testing.simulator")

Handler = Callable[[Runtime, web.Request, Principal | None, Any], Awaitable[web.StreamResponse]]

_HANDLERS: dict[str, Handler] = {
    "get_security_public_key_certificates": auth.public_key_certificates,
    "post_auth_challenge": auth.challenge,
    "post_auth_ksef_token": auth.ksef_token_login,
    "post_auth_xades_signature": auth.xades_login,
    "get_auth_by_reference_number": auth.get_auth_status,
    "post_auth_token_redeem": auth.redeem,
    "post_auth_token_refresh": auth.refresh,
    "get_auth_sessions": auth.list_auth_sessions,
    "delete_auth_sessions_current": auth.delete_current_session,
    "delete_auth_sessions_by_reference_number": auth.delete_auth_session,
    "post_tokens": auth.create_token,
    "get_rate_limits": auth.rate_limits,
    "get_limits_context": testdata.limits_context,
    "post_testdata_limits_context_session": testdata.session_limits,
    "delete_testdata_limits_context_session": testdata.session_limits_reset,
    "post_testdata_subject": testdata.subject,
    "post_testdata_subject_remove": testdata.subject,
    "post_testdata_person": testdata.person,
    "post_testdata_person_remove": testdata.person,
    "post_testdata_attachment": testdata.attachment,
    "post_testdata_attachment_revoke": testdata.attachment,
    "get_tokens": auth.list_tokens,
    "get_tokens_by_reference_number": auth.get_token,
    "delete_tokens_by_reference_number": auth.revoke_token,
    "post_testdata_rate_limits": auth.testdata_rate_limits,
    "delete_testdata_rate_limits": auth.testdata_rate_limits_delete,
    "post_testdata_rate_limits_production": auth.testdata_rate_limits_production,
    "post_testdata_context_block": auth.testdata_block,
    "post_testdata_context_unblock": auth.testdata_block,
    "post_testdata_permissions": auth.testdata_permissions,
    "post_testdata_permissions_revoke": auth.testdata_permissions,
    "post_sessions_online": sessions.open_online,
    "post_sessions_online_invoices": sessions.send_invoice,
    "post_sessions_online_close": sessions.close_online,
    "post_sessions_batch": batch.open_batch,
    "post_sessions_batch_close": batch.close_batch,
    "get_sessions": sessions.list_sessions,
    "get_sessions_by_reference_number": sessions.get_session,
    "get_sessions_invoices": sessions.list_invoices,
    "get_sessions_invoices_failed": sessions.list_failed_invoices,
    "get_sessions_invoices_by_invoice_reference_number": sessions.get_invoice_status,
    "get_sessions_upo_by_upo_reference_number": upo_documents.get_session_upo,
    "get_sessions_invoices_upo": upo_documents.get_invoice_upo,
    "get_sessions_invoices_ksef_upo": upo_documents.get_invoice_upo_by_ksef,
    **retrieval.HANDLERS,
    **permissions.HANDLERS,
    **certificates.HANDLERS,
    **peppol.HANDLERS,
    **collective.HANDLERS,
}
_CLOSE_OPERATIONS = frozenset({"post_sessions_online_close", "post_sessions_batch_close"})
_UNIMPLEMENTED_STATUS = 501


def register_handler(operation_id: str, handler: Handler) -> None:
    """Serve ``operation_id`` with ``handler`` in simulators built afterwards (how retrieval endpoints plug in)."""
    _HANDLERS[operation_id] = handler


def _specificity(op: Operation) -> tuple[bool, ...]:
    # Static segments before templated ones, left to right, as `ksef_async.operations.match` decides.
    return tuple(seg.startswith("{") for seg in op.path.strip("/").split("/"))


def _path_owners() -> tuple[tuple[tuple[str, ...], str, frozenset[str]], ...]:
    methods: dict[str, set[str]] = {}
    for op in OPERATIONS:
        methods.setdefault(op.path, set()).add(op.method)
    return tuple((tuple(path.strip("/").split("/")), path, frozenset(found)) for path, found in methods.items())


_PATH_OWNERS = _path_owners()


def path_item_of(api_path: str) -> tuple[str, frozenset[str]] | None:
    """The spec path (template) that owns ``api_path`` (relative to ``/v2``) and the methods it documents.

    OpenAPI 3.0 (Paths Object): "When matching URLs, concrete (non-templated) paths would be matched before their
    templated counterparts", so ``/auth/challenge`` belongs to the path item ``/auth/challenge`` (POST only), not
    to ``/auth/{referenceNumber}``: a GET there is an undocumented method, not an auth status query.
    """
    segments = tuple(api_path.strip("/").split("/"))
    best: tuple[tuple[bool, ...], str, frozenset[str]] | None = None
    for template, path, methods in _PATH_OWNERS:
        if len(template) != len(segments):
            continue
        score: list[bool] = []
        for pattern, actual in zip(template, segments, strict=True):
            templated = pattern.startswith("{")
            if not actual or (not templated and pattern != actual):
                break
            score.append(templated)
        else:
            if best is None or tuple(score) < best[0]:
                best = (tuple(score), path, methods)
    return None if best is None else (best[1], best[2])


def _method_not_allowed(request: web.Request, methods: frozenset[str]) -> web.HTTPMethodNotAllowed:
    return web.HTTPMethodNotAllowed(request.method, sorted(methods))


def _refuse_foreign_path(request: web.Request, op: Operation) -> None:
    """405 when ``op``'s templated route matched a concrete spec path that lacks the method (GET /auth/challenge)."""
    owner = path_item_of(request.rel_url.path_safe.removeprefix("/v2"))  # the path as aiohttp matched it
    if owner is not None and owner[0] != op.path:
        raise _method_not_allowed(request, owner[1])


def _principal(rt: Runtime, request: web.Request, op: Operation) -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("Brak tokena uwierzytelniającego (nagłówek Authorization: Bearer).")
    payload = rt.verify_token(token.strip())
    if payload is None:
        raise unauthorized("Token jest nieprawidłowy lub wygasł.")
    kind = payload.get("kind")
    accepted = {kind.value for kind in op.tokens}
    if kind not in accepted:
        raise unauthorized(f"Ta operacja wymaga tokena typu {sorted(accepted)}.")
    operation = rt.state.auth_operations.get(payload.get("ref", ""))
    if operation is None:
        raise unauthorized("Token jest nieprawidłowy.")
    if kind == TokenKind.REFRESH.value and operation.revoked:
        raise unauthorized("Sesja uwierzytelnienia została unieważniona.")
    return Principal(str(kind), operation)


def _json_of(response: web.StreamResponse) -> tuple[str | None, Any]:
    if not isinstance(response, web.Response) or response.body is None:
        return None, None
    content_type = response.content_type
    body = response.body
    raw = body if isinstance(body, bytes) else getattr(body, "_value", b"")
    if not raw:
        return None, None
    if content_type.endswith("json"):
        return content_type, json.loads(raw)
    return content_type, None


def _make_route(rt: Runtime, op: Operation) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    handler = _HANDLERS.get(op.operation_id)

    async def route(request: web.Request) -> web.StreamResponse:
        _refuse_foreign_path(request, op)
        rt.counters.requests[op.rate_group] += 1
        rt.counters.operations[op.operation_id] += 1
        fault = False
        raw = b""
        try:
            if rt.faults.fires("api-error"):
                fault = True
                raise ApiFailure(503, 0, "Service Unavailable (injected fault)")  # noqa: TRY301
            if rt.status_service.outage and (rt.status_service.api_down or rt.faults.fires("outage-api-error")):
                fault = True
                raise ApiFailure(503, 0, "Service Unavailable (announced KSeF outage)")  # noqa: TRY301
            # Authentication first, then the body, read no further than the route's limit: an anonymous client
            # cannot make the simulator hold megabytes.
            principal = _principal(rt, request, op) if op.tokens else None
            raw = await read_body(request, body_limit(op.operation_id))
            rt.counters.bytes_received += len(raw)
            request[RAW_BODY] = raw
            subject = (
                f"{principal.operation.context[0]}:{principal.operation.context[1]}"
                if principal is not None and op.rate_group != PUBLIC_GROUP
                else f"ip:{request.remote}"
            )
            refusal = rt.limiter.admit_request(op, subject, rt.state.clock.now(), ip=request.remote)
            if refusal is not None:
                rt.counters.rate_limited += 1
                response: web.StreamResponse = too_many_requests(
                    request, rt.state.clock, refusal.group, rt.limiter.retry_after_seconds(refusal.wait)
                )
                return _checked(rt, request, op, response, fault=False)
            if op.required_permissions and principal is not None:
                present = principal.operation.permissions
                if not present.intersection(op.required_permissions):
                    raise forbidden(
                        "Brak wymaganych uprawnień.",
                        "missing-permissions",
                        {
                            "requiredAnyOfPermissions": list(op.required_permissions),
                            "presentPermissions": sorted(present),
                        },
                    )
            body = _parse_body(rt, request, op, raw)
            if handler is None:
                return render_failure(
                    ApiFailure(
                        _UNIMPLEMENTED_STATUS, 21405, f"{op.method} {op.path} is not implemented by the simulator"
                    ),
                    request,
                    rt.state.clock,
                )
            response = await handler(rt, request, principal, body)
            if op.operation_id in _CLOSE_OPERATIONS and response.status == 204 and rt.faults.fires("close-error"):  # noqa: PLR2004
                fault = True
                raise ApiFailure(500, 0, "Internal Server Error (injected fault after the close took effect)")  # noqa: TRY301
        except ApiFailure as failure:
            response = render_failure(
                _in_spec_words(op, failure), request, rt.state.clock, forbidden_timestamp=rt.config.forbidden_timestamp
            )
        return _checked(rt, request, op, response, fault=fault)

    return route


def _in_spec_words(op: Operation, failure: ApiFailure) -> ApiFailure:
    """A 400 with the ``ExceptionDescription`` that the operation's 400 table gives its code.

    The spec fixes the description per code and operation (``ExceptionCode | ExceptionDescription | Details``), so
    a handler's own wording, when it differs, moves to the front of ``details`` instead of being lost.
    """
    if failure.status != 400:  # noqa: PLR2004
        return failure
    expected = documented_400_description(op.method, op.path, failure.code)
    if expected is None and failure.code == ExceptionCode.VALIDATION_ERROR:
        expected = ExceptionCode.VALIDATION_ERROR.description
    if expected is None or failure.description == expected:
        return failure
    details = list(failure.details or [])
    if failure.description and failure.description not in details:
        details.insert(0, failure.description)
    return ApiFailure(400, failure.code, expected, details)


def _parse_body(rt: Runtime, request: web.Request, op: Operation, raw: bytes) -> Any:
    content_type = request.content_type if raw else None
    body: Any = None
    if not raw and rt.request_validator is not None and rt.request_validator.absent_body_is_empty(op):
        content_type, body = "application/json", {}  # the optional body left out: no filter, no reason...
    elif raw and content_type is not None and content_type.endswith("json"):
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            if UNREADABLE_CONTENT in documented_400_codes(op.method, op.path):  # 2.9.0: 21001 on 37 operations
                raise ApiFailure(400, UNREADABLE_CONTENT, "Nieczytelna treść.", ["body is not valid JSON"]) from None
            raise ApiFailure(400, 21405, "Błąd walidacji danych wejściowych.", ["body is not valid JSON"]) from None
    if rt.contract is not None and (raw or op.request_schema is not None):
        # Recorded and logged (the pytest plugin fails the test), but the handler still answers: KSeF's own checks
        # give documented codes (21157, 21161...) for some out-of-contract bodies, and those must stay testable.
        rt.contract.check_request(op, request.method, request.path, content_type or "", body)
    if rt.request_validator is not None:
        problems = rt.request_validator.problems(op, request, content_type, body)
        if problems:
            raise ApiFailure(400, 21405, "Błąd walidacji danych wejściowych.", problems)
    return body


def _checked(
    rt: Runtime, request: web.Request, op: Operation, response: web.StreamResponse, *, fault: bool
) -> web.StreamResponse:
    add_system_warning(rt, request, response)
    if rt.contract is None or fault or response.status == _UNIMPLEMENTED_STATUS:
        return response
    content_type, body = _json_of(response)
    problems = rt.contract.check_response(
        op,
        request.method,
        request.path,
        status=response.status,
        content_type=content_type,
        body=body,
        headers=response.headers,
    )
    if problems:
        raise ContractViolationError(f"{request.method} {request.path} -> {response.status}: {'; '.join(problems)}")
    return response


def _error_recorder(rt: Runtime) -> Any:
    @web.middleware
    async def record_internal_errors(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPMethodNotAllowed:
            # aiohttp's Allow is the union over every route matching the path; the spec's is the owning path item's.
            path = request.rel_url.path_safe
            owner = path_item_of(path.removeprefix("/v2")) if path.startswith("/v2/") else None
            if owner is None:
                raise
            raise _method_not_allowed(request, owner[1]) from None
        except (web.HTTPException, ContractViolationError):
            raise
        except ConnectionError:
            # The client went away mid-request (e.g. an upload it aborted): nothing to answer, not a bug.
            _log.info("%s %s: client disconnected", request.method, request.path)
            return web.Response(status=400)  # never delivered; returning keeps aiohttp from logging an error
        except Exception as exc:  # noqa: BLE001 - the last-resort guard
            # The last-resort guard: a simulator bug must not reach the client as an undocumented 500. It is
            # logged and recorded (the pytest plugin fails the test) and answered in the documented 400 shape.
            rt.internal_errors.append(f"{request.method} {request.path}: {exc!r}")
            _log.exception("simulator bug: %s %s failed", request.method, request.path)
            failure = ApiFailure(
                400, 21405, "Błąd walidacji danych wejściowych.", [f"the simulator failed: {type(exc).__name__}"]
            )
            return render_failure(failure, request, rt.state.clock)

    return record_internal_errors


def exposure_warning(host: str) -> str | None:
    """The warning for a simulator bound to ``host``, or None for a loopback address."""
    if is_loopback_host(host):
        return None
    return (
        f"the KSeF simulator listens on {host}, not on loopback: anyone who can reach it can log in with the seeded "
        "tokens and read every invoice it holds; bind it to 127.0.0.1 unless that is what you want"
    )


def build_app(rt: Runtime) -> web.Application:
    """The aiohttp application serving ``/v2/...`` and ``/storage/...`` for ``rt``."""
    app = web.Application(client_max_size=16 * 1024 * 1024, middlewares=[_error_recorder(rt)])
    for op in sorted(OPERATIONS, key=_specificity):
        app.router.add_route(op.method, "/v2" + op.path, _make_route(rt, op))

    async def upload(request: web.Request) -> web.StreamResponse:
        return await storage.upload_part(rt, request)

    async def download(request: web.Request) -> web.StreamResponse:
        rt.counters.requests["storage"] += 1
        return await upo_documents.download_upo(rt, request)

    app.router.add_put("/storage/batch-parts/{session}/{part}", upload)
    app.router.add_get("/storage/upo/{session}/invoices/{invoice}", download)
    app.router.add_get("/storage/upo/{session}/{upo}", download)
    retrieval.add_storage_routes(app, rt)
    add_status_routes(app, rt.status_service)
    return app


class KsefSimulator:
    """A KSeF 2.x server on a loopback socket: ``async with KsefSimulator(contexts=[(nip, token)]) as sim:``.

    Args:
        contexts: ``(nip, token)`` pairs; each seeds a ``Nip`` context whose KSeF token has every permission.
        rate_limits: ``"production"`` (the spec's limits) or ``"off"``.
        rate_limit_overrides: Group -> `WindowLimits` of this environment where it differs from the spec (any of
            the 17 groups of ``GET /rate-limits``, e.g. ``{"global": WindowLimits(5)}``); kept by the production
            profile (see `ksef_async.testing.simulator.ratelimits.RateLimiter`).
        processing_delay: Seconds invoices and sessions stay in processing (simulated clock); authentication
            operations stay at status 100 for ``config.auth_delay`` seconds (default 0).
        storage_delay: Seconds ``permanentStorageDate`` lags ``invoicingDate``.
        faults: A `FaultSpec` or its text form (see `ksef_async.testing.simulator.faults`).
        seed: Makes identifiers and faults reproducible.
        public_url: Scheme, host and port used in the URLs handed out (default: the bound address).
        strict_contract: Validate every JSON body received and sent against the bundled spec.
        host: Interface to bind.
        port: Port to bind (0: a free port).
        key_bits: Size of the generated MF RSA keys (KSeF uses 4096; 2048 starts faster).
        config: Further settings (token lifetimes, upload window...); the delays above override its fields.
    """

    def __init__(
        self,
        contexts: Iterable[tuple[str, str]] = (),
        *,
        rate_limits: str = "production",
        rate_limit_overrides: Mapping[str, WindowLimits] | None = None,
        processing_delay: float = 0.0,
        storage_delay: float = 0.0,
        faults: FaultSpec | str | None = None,
        seed: int | None = None,
        public_url: str | None = None,
        strict_contract: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        key_bits: int = 2048,
        config: SimConfig | None = None,
    ) -> None:
        if processing_delay < 0 or storage_delay < 0:
            raise ConfigurationError("processing_delay and storage_delay must be >= 0")
        spec = FaultSpec.parse(faults) if isinstance(faults, str) else (faults or FaultSpec())
        self.config = config or SimConfig()
        self.config.processing_delay = processing_delay
        self.config.storage_delay = storage_delay
        self._contexts: list[tuple[str, str]] = list(contexts)
        self._rate_limits = rate_limits
        self._spec = spec
        self._seed = seed
        self._public_url = public_url.rstrip("/") if public_url else None
        self._strict = strict_contract
        if strict_contract:  # one clear error now, before keys, spool and socket, when the test extra is missing
            require_contract_extra()
        self._host = host
        self._port = port
        self._key_bits = key_bits
        self._runner: web.AppRunner | None = None
        self._spool: Path | None = None
        self._rt: Runtime | None = None
        self._limiter = RateLimiter(rate_limits, overrides=rate_limit_overrides)
        self._state = SimState(seed=seed, processing_delay=processing_delay, storage_delay=storage_delay)
        self._status_service = StatusServiceScript(self._state.clock.now_dt)

    # -- lifecycle -----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Generate the keys, bind the socket and start serving."""
        loop = asyncio.get_running_loop()
        keys = await loop.run_in_executor(None, lambda: MfKeyring(bits=self._key_bits, now=self._state.clock.now_dt()))
        self._spool = Path(tempfile.mkdtemp(prefix="ksef-sim-", dir=self.config.spool_dir))
        rt = Runtime(
            config=self.config,
            state=self._state,
            keys=keys,
            limiter=self._limiter,
            faults=FaultInjector(self._spec, self._seed),
            contract=ContractChecker() if self._strict else None,
            spool_dir=self._spool,
            status_service=self._status_service,
        )
        self._rt = rt
        for nip, token in self._contexts:
            self.add_context(nip, token)
        self._runner = web.AppRunner(build_app(rt), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = site._server  # noqa: SLF001 - aiohttp exposes the bound port only here
        assert server is not None
        sockets: Sequence[Any] = getattr(server, "sockets", ())
        host, port = sockets[0].getsockname()[:2]
        self._bound = (host, port)
        shown_host = f"[{host}]" if ":" in host else host
        rt.public_url = self._public_url or f"http://{shown_host}:{port}"
        _log.info("KSeF simulator listening on %s", self.base_url)
        exposure = exposure_warning(str(host))
        if exposure is not None:
            _log.warning("%s", exposure)
            warnings.warn(exposure, UserWarning, stacklevel=2)

    async def stop(self) -> None:
        """Stop serving, wait for batch processing to finish and remove the spool directory."""
        if self._rt is not None and self._rt.background:
            await asyncio.gather(*self._rt.background, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._spool is not None:
            shutil.rmtree(self._spool, ignore_errors=True)
            self._spool = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- what tests read and change -------------------------------------------------------------------------------

    @property
    def runtime(self) -> Runtime:
        """Everything the handlers share (state, keys, limiter...)."""
        if self._rt is None:
            raise ConfigurationError("the simulator is not started")
        return self._rt

    @property
    def base_url(self) -> str:
        """The API base, e.g. ``http://127.0.0.1:8090/v2``."""
        return f"{self.runtime.public_url}/v2"

    @property
    def status_url(self) -> str:
        """The status service's (Latarnia's) base, e.g. ``http://127.0.0.1:8090/latarnia``."""
        return f"{self.runtime.public_url}/latarnia"

    @property
    def status_service(self) -> StatusServiceScript:
        """The scripted status service: ``start_failure()``, ``end_failure()``, ``set_fault("5xx")``..."""
        return self._status_service

    @property
    def public_url(self) -> str:
        """Scheme, host and port used in handed-out URLs."""
        return self.runtime.public_url

    @property
    def counters(self) -> Counters:
        """Requests per group, 429s sent, bytes received and faults injected."""
        return self.runtime.counters

    @property
    def contract_violations(self) -> list[ContractViolation]:
        """Spec mismatches seen in strict mode (empty when strict mode is off)."""
        return self.runtime.contract.violations if self.runtime.contract is not None else []

    @property
    def internal_errors(self) -> list[str]:
        """Unexpected exceptions inside the simulator (its own bugs); empty in a healthy run."""
        return self.runtime.internal_errors

    @property
    def clock(self) -> SimClock:
        """The simulated clock; ``sim.clock.advance(seconds)`` moves every time-based rule forward."""
        return self._state.clock

    @property
    def state(self) -> SimState:
        """The simulator's state (contexts, sessions, invoices)."""
        return self._state

    @property
    def rate_limiter(self) -> RateLimiter:
        """The limiter; ``set_limits`` / ``production`` / ``enabled`` change it at run time."""
        return self._limiter

    def add_context(
        self,
        nip: str,
        token: str | None = None,
        *,
        permissions: Iterable[str] = ALL_PERMISSIONS,
        context_type: str = "Nip",
    ) -> str:
        """Seed a context with a KSeF token (generated when ``token`` is None) holding ``permissions``.

        Returns:
            The KSeF token.
        """
        return auth.add_token(self.runtime, (context_type, nip), token, frozenset(permissions), "seeded token")

    def set_session_unavailable(self, reference_number: str, unavailable: bool = True) -> None:
        """Make online session ``reference_number`` answer every invoice send with 21184 (or stop doing so).

        Raises:
            ConfigurationError: There is no online session with that reference number.
        """
        session = self._state.sessions.get(reference_number)
        if session is None or session.kind is not SessionKind.ONLINE:
            raise ConfigurationError(f"no online session {reference_number!r}")
        session.unavailable = unavailable

    def add_peppol_provider(self, provider_id: str, name: str, date_created: dt.datetime | None = None) -> None:
        """Register a Peppol provider for ``GET /peppol/query`` (``provider_id`` like ``PPL123456``)."""
        peppol.add_provider(self._state, provider_id, name, date_created)

    async def wait_idle(self) -> None:
        """Wait until background batch processing has finished."""
        while self.runtime.background:
            await asyncio.gather(*self.runtime.background, return_exceptions=True)
