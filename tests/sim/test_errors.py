"""Acceptance: each documented rejection gets its documented status and code."""

from __future__ import annotations

from typing import Any

import pytest

from ksef_async.core.crypto import SessionKey, sha256_b64
from ksef_async.testing.simulator import KsefSimulator

from .conftest import NIP, TOKEN, Api, batch_request, invoice, split_encrypt, zip_of

pytestmark = pytest.mark.anyio


def _code(body: object) -> int:
    assert isinstance(body, dict), body
    return int(body["exception"]["exceptionDetailList"][0]["exceptionCode"])


async def _batch(api: Api, key: SessionKey, parts: int = 2) -> tuple[str, list[dict[str, Any]], list[bytes]]:
    archive = zip_of({f"{i}.xml": invoice(f"FA/ERR/{i}") for i in range(3)})
    encrypted = split_encrypt(key, archive, parts)
    status, opened, _ = await api.call(
        "POST", "/sessions/batch", json=batch_request(await api.encryption(key), archive, encrypted)
    )
    assert status == 201, opened
    return opened["referenceNumber"], opened["partUploadRequests"], encrypted


async def test_online_wrong_hash_is_21403(api: Api) -> None:
    await api.login()
    key = SessionKey.generate()
    session = await api.open_online(key)
    status, body = await api.send(session, key, invoice("FA/H/1"), invoiceHash=sha256_b64(b"other"))
    assert (status, _code(body)) == (400, 21403)
    status, body = await api.send(session, key, invoice("FA/H/2"), encryptedInvoiceHash=sha256_b64(b"other"))
    assert (status, _code(body)) == (400, 21403)


async def test_online_wrong_size_is_21402(api: Api) -> None:
    await api.login()
    key = SessionKey.generate()
    session = await api.open_online(key)
    xml = invoice("FA/S/1")
    status, body = await api.send(session, key, xml, invoiceSize=len(xml) + 1)
    assert (status, _code(body)) == (400, 21402)
    status, body = await api.send(session, key, xml, encryptedInvoiceSize=len(xml) + 100)
    assert (status, _code(body)) == (400, 21402)


async def test_upload_with_wrong_hash_or_size_is_400_and_stores_nothing(api: Api) -> None:
    await api.login()
    key = SessionKey.generate()
    ref, uploads, parts = await _batch(api, key)
    bad_hash = bytearray(parts[0])
    bad_hash[0] ^= 1
    for body in (bytes(bad_hash), parts[0] + b"0" * 16):
        async with api.http.put(uploads[0]["url"], data=body, headers=uploads[0]["headers"]) as resp:
            assert resp.status == 400
            assert "InvalidBlobContent" in await resp.text()
    async with api.http.put(uploads[1]["url"], data=parts[1], headers=uploads[1]["headers"]) as resp:
        assert resp.status == 201
    status, body, _ = await api.call("POST", f"/sessions/batch/{ref}/close")
    assert (status, _code(body)) == (400, 21205)  # part 1 was never stored


async def test_close_with_a_missing_part_is_21205(api: Api) -> None:
    await api.login()
    key = SessionKey.generate()
    ref, uploads, parts = await _batch(api, key, parts=3)
    for upload, data in list(zip(uploads, parts, strict=True))[:2]:
        async with api.http.put(upload["url"], data=data, headers=upload["headers"]) as resp:
            assert resp.status == 201
    status, body, _ = await api.call("POST", f"/sessions/batch/{ref}/close")
    assert (status, _code(body)) == (400, 21205)
    # The wording of POST /sessions/batch/{referenceNumber}/close's 400 table: description and details.
    assert body["exception"]["exceptionDetailList"][0]["exceptionDescription"] == "Pakiet nie może być pusty."
    assert body["exception"]["exceptionDetailList"][0]["details"] == ["Nie przesłano zadeklarowanej '3' części pliku."]


async def test_chunked_upload_is_411(api: Api) -> None:
    await api.login()
    key = SessionKey.generate()
    _, uploads, parts = await _batch(api, key)

    async def chunks() -> object:
        yield parts[0][:100]
        yield parts[0][100:]

    async with api.http.put(uploads[0]["url"], data=chunks(), headers=uploads[0]["headers"]) as resp:
        assert resp.request_info.headers.get("Transfer-Encoding") == "chunked"
        assert resp.status == 411
        assert "MissingContentLengthHeader" in await resp.text()


async def test_upload_with_authorization_header_is_400(api: Api) -> None:
    await api.login()
    key = SessionKey.generate()
    _, uploads, parts = await _batch(api, key)
    headers = uploads[0]["headers"] | {"Authorization": f"Bearer {api.token}"}
    async with api.http.put(uploads[0]["url"], data=parts[0], headers=headers) as resp:
        assert resp.status == 400
        assert "InvalidAuthenticationInfo" in await resp.text()


async def test_upload_without_blob_type_or_with_a_forged_signature_is_refused(api: Api) -> None:
    await api.login()
    key = SessionKey.generate()
    _, uploads, parts = await _batch(api, key)
    async with api.http.put(uploads[0]["url"], data=parts[0]) as resp:
        assert resp.status == 400
    url = str(uploads[0]["url"]).replace("sp=w", "sp=r")
    async with api.http.put(url, data=parts[0], headers=uploads[0]["headers"]) as resp:
        assert resp.status == 403


async def test_expired_upload_url_is_403_and_late_close_is_21208(api: Api, ksef_simulator: KsefSimulator) -> None:
    await api.login()
    key = SessionKey.generate()
    ref, uploads, parts = await _batch(api, key, parts=2)
    async with api.http.put(uploads[0]["url"], data=parts[0], headers=uploads[0]["headers"]) as resp:
        assert resp.status == 201
    ksef_simulator.clock.advance(2 * 20 * 60 + 1)  # the window is parts x 20 min
    async with api.http.put(uploads[1]["url"], data=parts[1], headers=uploads[1]["headers"]) as resp:
        assert resp.status == 403
        assert "AuthenticationFailed" in await resp.text()
    await api.login()  # the access token from before has expired too
    status, body, _ = await api.call("POST", f"/sessions/batch/{ref}/close")
    assert (status, _code(body)) == (400, 21208)
    assert (await api.session_status(ref))["status"]["code"] == 440


async def test_replayed_redeem_is_21301(api: Api) -> None:
    _, op_token = await api.start_token_auth(NIP, TOKEN)
    status, _, _ = await api.call("POST", "/auth/token/redeem", token=op_token)
    assert status == 200
    status, body, _ = await api.call("POST", "/auth/token/redeem", token=op_token)
    assert (status, _code(body)) == (400, 21301)


async def test_expired_access_token_is_401_problem_json(api: Api, ksef_simulator: KsefSimulator) -> None:
    await api.login()
    status, _, _ = await api.call("GET", "/rate-limits")
    assert status == 200
    ksef_simulator.clock.advance(901)
    status, body, headers = await api.call("GET", "/rate-limits")
    assert status == 401
    assert headers["Content-Type"].startswith("application/problem+json")
    assert body["status"] == 401


async def test_missing_permission_is_403_with_reason_code(api: Api, ksef_simulator: KsefSimulator) -> None:
    reader = ksef_simulator.add_context("1111111111", permissions=["InvoiceRead"])
    await api.login("1111111111", reader)
    status, body, headers = await api.call(
        "POST",
        "/sessions/online",
        json={
            "formCode": {"systemCode": "FA (3)", "schemaVersion": "1-0E", "value": "FA"},
            "encryption": await api.encryption(SessionKey.generate()),
        },
    )
    assert status == 403
    assert headers["Content-Type"].startswith("application/problem+json")
    assert body["reasonCode"] == "missing-permissions"
    assert body["security"] == {
        "requiredAnyOfPermissions": ["InvoiceWrite", "PefInvoiceWrite", "EnforcementOperations"],
        "presentPermissions": ["InvoiceRead"],
    }


async def test_eleventh_request_in_a_second_is_429_with_retry_after(api: Api, ksef_simulator: KsefSimulator) -> None:
    await api.login()
    ksef_simulator.clock.advance(3)  # the login's own requests leave the 1 s window
    statuses = []
    for _ in range(11):
        status, body, headers = await api.call("GET", "/limits/context")
        statuses.append(status)
    assert statuses == [200] * 10 + [429]
    assert int(headers["Retry-After"]) >= 1
    assert body == {"status": {"code": 429, "description": "Too Many Requests", "details": body["status"]["details"]}}
    assert ksef_simulator.counters.rate_limited == 1
    status, problem, headers = await api.call("GET", "/limits/context", headers={"X-Error-Format": "problem-details"})
    assert status == 429
    assert headers["Content-Type"].startswith("application/problem+json")
    assert problem["status"] == 429
    ksef_simulator.clock.advance(int(headers["Retry-After"]))
    status, _, _ = await api.call("GET", "/limits/context")
    assert status == 200
