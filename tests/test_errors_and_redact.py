import json

from ksef_async import errors
from ksef_async.core.redact import redact_text, redact_url


def test_default_exception_response_is_parsed() -> None:
    body = {
        "exception": {
            "exceptionDetailList": [
                {"exceptionCode": 21405, "exceptionDescription": "Błąd walidacji danych wejściowych.", "details": ["x"]}
            ],
            "referenceNumber": "20250625-SO-2C3E6C8000-B14B7FD3C1-2D",
            "serviceCode": "00-c02c2b4a1c6a4b36a2a2b2e0c3f7fc49-1ac1bd3b9b7b3a47-01",
            "timestamp": "2025-10-11T12:23:56.0154302",
        }
    }
    err = errors.api_error_from_response(400, json.dumps(body).encode(), operation="POST /sessions/online")
    assert isinstance(err, errors.BadRequestError)
    assert err.codes == [21405]
    assert err.has_code(21405)
    assert err.reference_number == "20250625-SO-2C3E6C8000-B14B7FD3C1-2D"
    assert "21405" in str(err)
    assert "POST /sessions/online" in str(err)


def test_problem_details_bodies_are_parsed() -> None:
    bad = {
        "title": "Bad Request",
        "status": 400,
        "errors": [{"code": 21157, "description": "Nieprawidłowy rozmiar części pliku.", "details": []}],
        "traceId": "abc",
    }
    err = errors.api_error_from_response(400, bad)
    assert err.codes == [21157]
    assert err.trace_id == "abc"
    forbidden = {
        "title": "Forbidden",
        "status": 403,
        "detail": "Brak uprawnień.",
        "reasonCode": "missing-permissions",
        "security": {"requiredAnyOfPermissions": ["InvoiceWrite"], "presentPermissions": []},
    }
    err403 = errors.api_error_from_response(403, forbidden)
    assert isinstance(err403, errors.ForbiddenError)
    assert err403.reason_code == "missing-permissions"
    assert err403.security["requiredAnyOfPermissions"] == ["InvoiceWrite"]
    assert isinstance(errors.api_error_from_response(401, {"title": "Unauthorized"}), errors.UnauthorizedError)
    assert isinstance(errors.api_error_from_response(503, b"<html>busy</html>"), errors.ServerError)


def test_429_carries_retry_after() -> None:
    body = {"status": {"code": 429, "description": "Too Many Requests", "details": ["Limit exceeded"]}}
    err = errors.api_error_from_response(429, body, retry_after="30")
    assert isinstance(err, errors.RateLimitedError)
    assert err.retry_after == 30
    assert errors.parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert errors.parse_retry_after("garbage") is None
    assert errors.parse_retry_after(None) is None


def test_invoice_error_names_files() -> None:
    err = errors.InvoiceError(
        [errors.InvoiceProblem("a.xml", "BOM found", 1, "bom"), errors.InvoiceProblem("b.xml", "too big", None, "size")]
    )
    assert "a.xml:1: BOM found" in str(err)
    assert "b.xml" in str(err)
    assert len(err.problems) == 2


def test_redaction() -> None:
    url = "https://host/batch-parts/1?sv=2024&se=2026-01-01&sp=w&sig=SECRETSIG%2B%3D"
    assert "SECRETSIG" not in redact_url(url)
    assert "se=2026-01-01" in redact_url(url)
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlX3ZhbHVl"
    text = f"Authorization: Bearer {jwt} url=https://x/y?sig=abc&a=1"
    cleaned = redact_text(text)
    assert jwt not in cleaned
    assert "sig=abc" not in cleaned
