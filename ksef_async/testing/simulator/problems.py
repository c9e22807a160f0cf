"""KSeF error bodies (``ExceptionResponse``, problem+json for 400/401/403/410/429) and the exception behind them."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from ksef_async.testing.simulator.state import SimClock, iso

__all__ = [
    "PROBLEM_JSON",
    "ApiFailure",
    "forbidden",
    "gone",
    "render_failure",
    "too_many_requests",
    "unauthorized",
]

PROBLEM_JSON = "application/problem+json"
_SERVICE_CODE = "KSeF-simulator"


class ApiFailure(Exception):  # noqa: N818 - it is a response, not a programming error
    """An API answer other than success: raise it from a handler; the app renders it per the client's format.

    Args:
        status: HTTP status.
        code: KSeF exception code (400 bodies); ignored for 401/403/410.
        description: The code's description.
        details: Extra lines (``details``).
        title: Problem title (401/403/410).
        reason_code: ``reasonCode`` for 403.
        security: ``security`` for 403.
    """

    def __init__(
        self,
        status: int,
        code: int = 21405,
        description: str = "Błąd walidacji danych wejściowych.",
        details: list[str] | None = None,
        *,
        title: str | None = None,
        reason_code: str | None = None,
        security: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} [{code}] {description}")
        self.status = status
        self.code = code
        self.description = description
        self.details = details
        self.title = title
        self.reason_code = reason_code
        self.security = security


def _trace() -> str:
    return uuid.uuid4().hex


def unauthorized(detail: str) -> ApiFailure:
    """A 401 (always problem+json, ``UnauthorizedProblemDetails``)."""
    return ApiFailure(401, 0, detail, title="Unauthorized")


def forbidden(detail: str, reason_code: str, security: dict[str, Any] | None) -> ApiFailure:
    """A 403 (always problem+json, ``ForbiddenProblemDetails``)."""
    return ApiFailure(403, 0, detail, title="Forbidden", reason_code=reason_code, security=security)


def gone(detail: str) -> ApiFailure:
    """A 410 (``GoneProblemDetails``)."""
    return ApiFailure(410, 0, detail, title="Gone")


def render_failure(
    failure: ApiFailure, request: web.Request, clock: SimClock, *, forbidden_timestamp: bool = True
) -> web.Response:
    """Render ``failure`` as KSeF does.

    401, 403 and 410 are always problem+json; 400 is problem+json when the client sent
    ``X-Error-Format: problem-details``, else ``ExceptionResponse``.
    """
    now = iso(clock.now_dt())
    problem = request.headers.get("X-Error-Format", "").lower() == "problem-details"
    instance = request.path
    if failure.status == 401:  # noqa: PLR2004
        body: dict[str, Any] = {
            "title": failure.title or "Unauthorized",
            "status": 401,
            "detail": failure.description,
            "instance": instance,
            "traceId": _trace(),
            "timestamp": now,
        }
        return web.json_response(body, status=401, content_type=PROBLEM_JSON)
    if failure.status == 403:  # noqa: PLR2004
        body = {
            "title": failure.title or "Forbidden",
            "status": 403,
            "detail": failure.description,
            "instance": instance,
            "reasonCode": failure.reason_code or "insufficient-resource-access",
            "security": failure.security,
            "traceId": _trace(),
            "timestamp": now,
        }
        if not forbidden_timestamp:
            del body["timestamp"]  # optional since 2.9.0
        return web.json_response(body, status=403, content_type=PROBLEM_JSON)
    if failure.status == 410:  # noqa: PLR2004
        body = {
            "title": failure.title or "Gone",
            "status": 410,
            "instance": instance,
            "detail": failure.description,
            "timestamp": now,
            "traceId": _trace(),
        }
        return web.json_response(body, status=410, content_type=PROBLEM_JSON)
    if problem:
        body = {
            "title": "Bad Request",
            "status": failure.status,
            "instance": instance,
            "detail": failure.description,
            "errors": [{"code": failure.code, "description": failure.description, "details": failure.details}],
            "timestamp": now,
            "traceId": _trace(),
        }
        return web.json_response(body, status=failure.status, content_type=PROBLEM_JSON)
    body = {
        "exception": {
            "exceptionDetailList": [
                {"exceptionCode": failure.code, "exceptionDescription": failure.description, "details": failure.details}
            ],
            "referenceNumber": None,
            "serviceCode": _SERVICE_CODE,
            "serviceCtx": "srvSIM",
            "serviceName": "ksef-simulator",
            "timestamp": now,
        }
    }
    return web.json_response(body, status=failure.status)


def too_many_requests(request: web.Request, clock: SimClock, group: str, retry_after: int) -> web.Response:
    """A 429 with ``Retry-After`` and ``TooManyRequestsResponse`` (or the problem+json form on request)."""
    detail = f"Przekroczono limit żądań dla grupy {group}. Spróbuj ponownie za {retry_after} s."
    headers = {"Retry-After": str(retry_after)}
    if request.headers.get("X-Error-Format", "").lower() == "problem-details":
        body: dict[str, Any] = {
            "title": "Too Many Requests",
            "status": 429,
            "instance": request.path,
            "detail": detail,
            "timestamp": iso(clock.now_dt()),
            "traceId": _trace(),
        }
        return web.json_response(body, status=429, headers=headers, content_type=PROBLEM_JSON)
    body = {"status": {"code": 429, "description": "Too Many Requests", "details": [detail]}}
    return web.json_response(body, status=429, headers=headers)
