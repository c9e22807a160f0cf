"""Test-data endpoints and KSeF token management: persons (owners, deceased), attachments, session limits, and
listing and revoking KSeF tokens."""

from __future__ import annotations

from typing import Any

import pytest

from ksef_async.core.crypto import SessionKey
from ksef_async.testing.certificates import generate_person_certificate
from ksef_async.testing.invoices import InvoiceFactory
from ksef_async.testing.simulator import KsefSimulator
from ksef_async.xml.auth_request import ContextIdentifier, build_auth_token_request
from ksef_async.xml.validation import check_invoice
from ksef_async.xml.xades import KeyCertSigner

from .conftest import NIP, SAMPLES, TOKEN, Api, batch_request, split_encrypt, zip_of

pytestmark = pytest.mark.anyio

OWNER_NIP = "7352765225"


def _code(body: object) -> int:
    assert isinstance(body, dict), body
    return int(body["exception"]["exceptionDetailList"][0]["exceptionCode"])


async def _xades_status(api: Api, pesel: str, nip: str) -> int:
    cert = generate_person_certificate(given_name="Anna", surname="Nowak", pesel=pesel)
    _, ch, _ = await api.call("POST", "/auth/challenge")
    xml = build_auth_token_request(ch["challenge"], ContextIdentifier("Nip", nip), "certificateSubject")
    status, init, _ = await api.call(
        "POST",
        "/auth/xades-signature",
        data=KeyCertSigner(cert.key, cert.certificate).sign(xml),
        headers={"Content-Type": "application/xml"},
    )
    assert status == 202, init
    _, st, _ = await api.call("GET", f"/auth/{init['referenceNumber']}", token=init["authenticationToken"]["token"])
    return int(st["status"]["code"])


async def test_a_test_person_owns_its_nip_and_a_deceased_one_gets_470(api: Api) -> None:
    person = {"nip": OWNER_NIP, "pesel": "88102341294", "isBailiff": False, "description": "owner"}
    assert (await api.call("POST", "/testdata/person", json=person))[0] == 200
    status, body, _ = await api.call("POST", "/testdata/person", json=person)
    assert (status, _code(body)) == (400, 30001)
    assert await _xades_status(api, "88102341294", OWNER_NIP) == 200
    assert await _xades_status(api, "88102341294", NIP) == 415  # not the owner of another context
    deceased = {
        "nip": "3755747347",
        "pesel": "30112206276",
        "isBailiff": False,
        "description": "deceased",
        "isDeceased": True,
    }
    assert (await api.call("POST", "/testdata/person", json=deceased))[0] == 200
    assert await _xades_status(api, "30112206276", "3755747347") == 470
    assert (await api.call("POST", "/testdata/person/remove", json={"nip": OWNER_NIP}))[0] == 200
    assert await _xades_status(api, "88102341294", OWNER_NIP) == 415


def _attachment_invoice(number: str) -> bytes:
    template = (SAMPLES / "invoice-template-fa-3-with-attachment.xml").read_bytes()
    data = template.replace(b"#nip#", NIP.encode()).replace(b"#invoice_number#", number.encode())
    result = check_invoice(data, "attachment.xml")
    assert result.invoice is not None, result.problems
    assert result.invoice.has_attachment
    return data


async def _batch_codes(api: Api, files: dict[str, bytes]) -> list[int]:
    key = SessionKey.generate()
    archive = zip_of(files)
    parts = split_encrypt(key, archive, 1)
    status, opened, _ = await api.call(
        "POST", "/sessions/batch", json=batch_request(await api.encryption(key), archive, parts)
    )
    assert status == 201, opened
    upload = opened["partUploadRequests"][0]
    async with api.http.put(upload["url"], data=parts[0], headers=upload["headers"]) as resp:
        assert resp.status == 201
    await api.call("POST", f"/sessions/batch/{opened['referenceNumber']}/close")
    await api.wait_session(opened["referenceNumber"])
    _, listing, _ = await api.call("GET", f"/sessions/{opened['referenceNumber']}/invoices")
    return [int(i["status"]["code"]) for i in listing["invoices"]]


async def test_attachments_need_the_test_data_consent(api: Api) -> None:
    await api.login()
    assert await _batch_codes(api, {"a.xml": _attachment_invoice("ATT/1")}) == [415]
    assert (await api.call("POST", "/testdata/attachment", json={"nip": NIP}))[0] == 200
    assert await _batch_codes(api, {"a.xml": _attachment_invoice("ATT/2")}) == [200]
    assert (await api.call("POST", "/testdata/attachment/revoke", json={"nip": NIP}))[0] == 200
    assert await _batch_codes(api, {"a.xml": _attachment_invoice("ATT/3")}) == [415]


async def test_session_limits_override(api: Api, factory: InvoiceFactory) -> None:
    await api.login()
    limits = {"maxInvoiceSizeInMB": 1, "maxInvoiceWithAttachmentSizeInMB": 3, "maxInvoices": 1}
    status, _, _ = await api.call(
        "POST",
        "/testdata/limits/context/session",
        json={"onlineSession": limits, "batchSession": limits, "collectiveIdentifier": {"maxInvoices": 7}},
    )
    assert status == 200
    _, effective, _ = await api.call("GET", "/limits/context")
    assert effective["onlineSession"]["maxInvoices"] == 1
    assert effective["collectiveIdentifier"] == {"maxInvoices": 7}
    key = SessionKey.generate()
    session = await api.open_online(key)
    assert (await api.send(session, key, factory.make(1)[1]))[0] == 202
    status, body = await api.send(session, key, factory.make(2)[1])
    assert (status, _code(body)) == (400, 21155)
    assert (await api.call("DELETE", "/testdata/limits/context/session"))[0] == 200
    _, effective, _ = await api.call("GET", "/limits/context")
    assert effective["batchSession"]["maxInvoices"] == 10_000
    assert effective["collectiveIdentifier"] == {"maxInvoices": 500}


async def test_tokens_are_listed_without_secrets_and_can_be_revoked(api: Api, ksef_simulator: KsefSimulator) -> None:
    extra = ksef_simulator.add_context(NIP, permissions=["InvoiceRead"])
    tokens = await api.login()
    status, listing, _ = await api.call("GET", "/tokens", params={"status": "Active"})
    assert status == 200
    assert TOKEN not in str(listing)
    assert extra not in str(listing)
    items: list[dict[str, Any]] = listing["tokens"]
    assert len(items) == 2
    seeded = next(i for i in items if i["requestedPermissions"] != ["InvoiceRead"])
    assert seeded["lastUseDate"] is not None
    extra_ref = next(i["referenceNumber"] for i in items if i["requestedPermissions"] == ["InvoiceRead"])
    assert (await api.call("DELETE", f"/tokens/{extra_ref}"))[0] == 204
    _, revoked, _ = await api.call("GET", f"/tokens/{extra_ref}")
    assert revoked["status"] == "Revoked"
    ref, op_token = await api.start_token_auth(NIP, extra)
    _, st, _ = await api.call("GET", f"/auth/{ref}", token=op_token)
    assert st["status"]["code"] == 450
    assert (await api.call("DELETE", f"/tokens/{seeded['referenceNumber']}"))[0] == 204
    status, body, _ = await api.call("POST", "/auth/token/refresh", token=tokens["refreshToken"]["token"])
    assert (status, _code(body)) == (400, 21301)
