"""Acceptance: the KSeF-token flow, an online session and a 3-part batch session, through aiohttp and crypto only."""

from __future__ import annotations

import pytest

from ksef_async.core.crypto import SessionKey, sha256_b64
from ksef_async.core.identifiers import is_valid_ksef_number
from ksef_async.xml.upo import parse_upo, validate_upo

from .conftest import NIP, Api, batch_request, invoice, split_encrypt, zip_of

pytestmark = pytest.mark.anyio


async def test_token_flow_issues_tokens_and_lists_the_session(api: Api) -> None:
    tokens = await api.login()
    assert tokens["accessToken"]["token"].count(".") == 2
    status, sessions, _ = await api.call("GET", "/auth/sessions")
    assert status == 200
    assert [s["isCurrent"] for s in sessions["items"]] == [True]
    status, refreshed, _ = await api.call("POST", "/auth/token/refresh", token=tokens["refreshToken"]["token"])
    assert status == 200
    assert refreshed["accessToken"]["token"] != tokens["accessToken"]["token"]


async def test_online_session_numbers_statuses_and_upo(api: Api) -> None:
    await api.login()
    key = SessionKey.generate()
    session = await api.open_online(key)
    assert (await api.session_status(session))["status"]["code"] == 100
    good = invoice("FA/ONLINE/1")
    status, sent = await api.send(session, key, good)
    assert status == 202, sent
    status, dup = await api.send(session, key, good)
    assert status == 202
    status, _, _ = await api.call("POST", f"/sessions/online/{session}/close")
    assert status == 204
    final = await api.wait_session(session)
    assert final["status"]["code"] == 200
    assert (final["invoiceCount"], final["successfulInvoiceCount"], final["failedInvoiceCount"]) == (2, 1, 1)

    status, ok, _ = await api.call("GET", f"/sessions/{session}/invoices/{sent['referenceNumber']}")
    assert status == 200
    assert ok["status"]["code"] == 200
    assert is_valid_ksef_number(ok["ksefNumber"])
    assert ok["ksefNumber"].startswith(NIP + "-")
    status, duplicate, _ = await api.call("GET", f"/sessions/{session}/invoices/{dup['referenceNumber']}")
    assert duplicate["status"]["code"] == 440
    assert duplicate["status"]["extensions"] == {
        "originalSessionReferenceNumber": session,
        "originalKsefNumber": ok["ksefNumber"],
    }

    page = final["upo"]["pages"][0]
    async with api.http.get(page["downloadUrl"]) as resp:  # pre-signed: no token
        assert resp.status == 200
        upo = await resp.read()
        assert resp.headers["x-ms-meta-hash"] == sha256_b64(upo)
    assert validate_upo(upo) == []
    parsed = parse_upo(upo)
    assert [d.ksef_number for d in parsed.documents] == [ok["ksefNumber"]]
    status, same, _ = await api.call("GET", f"/sessions/{session}/upo/{page['referenceNumber']}")
    assert status == 200
    assert same == upo
    status, invoice_upo, _ = await api.call("GET", f"/sessions/{session}/invoices/ksef/{ok['ksefNumber']}/upo")
    assert status == 200
    assert validate_upo(invoice_upo) == []


async def test_three_part_batch_session(api: Api) -> None:
    await api.login()
    key = SessionKey.generate()
    files = {f"inv-{i}.xml": invoice(f"FA/BATCH/{i}") for i in range(5)}
    files["broken.xml"] = b"<Faktura>not an invoice</Faktura>"
    archive = zip_of(files)
    parts = split_encrypt(key, archive, 3)
    status, opened, _ = await api.call(
        "POST", "/sessions/batch", json=batch_request(await api.encryption(key), archive, parts)
    )
    assert status == 201, opened
    uploads = opened["partUploadRequests"]
    assert [u["ordinalNumber"] for u in uploads] == [1, 2, 3]
    for upload, data in zip(uploads, parts, strict=True):
        async with api.http.request(upload["method"], upload["url"], data=data, headers=upload["headers"]) as resp:
            assert resp.status == 201, await resp.text()
    ref = opened["referenceNumber"]
    status, _, _ = await api.call("POST", f"/sessions/batch/{ref}/close")
    assert status == 204
    final = await api.wait_session(ref)
    assert final["status"]["code"] == 200, final
    assert (final["invoiceCount"], final["successfulInvoiceCount"], final["failedInvoiceCount"]) == (6, 5, 1)
    status, listing, _ = await api.call("GET", f"/sessions/{ref}/invoices", params={"pageSize": "10"})
    numbers = [i["ksefNumber"] for i in listing["invoices"] if i["status"]["code"] == 200]
    assert len(numbers) == 5
    assert all(is_valid_ksef_number(n) for n in numbers)
    assert {i["invoiceFileName"] for i in listing["invoices"]} == set(files)
    status, failed, _ = await api.call("GET", f"/sessions/{ref}/invoices/failed")
    assert [(i["invoiceFileName"], i["status"]["code"]) for i in failed["invoices"]] == [("broken.xml", 450)]
    async with api.http.get(final["upo"]["pages"][0]["downloadUrl"]) as resp:
        upo = await resp.read()
    assert validate_upo(upo) == []
    assert sorted(d.ksef_number for d in parse_upo(upo).documents) == sorted(numbers)
