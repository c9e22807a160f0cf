"""Session behaviour: status progressions, batch outcomes (405/415/420/430/435/440/445), listings and paging."""

from __future__ import annotations

import io
import tarfile
from typing import Any

import pytest

from ksef_async.core.crypto import SessionKey, b64, encrypt_cbc, sha256_b64
from ksef_async.core.identifiers import is_valid_ksef_number
from ksef_async.testing.invoices import InvoiceFactory
from ksef_async.testing.simulator import KsefSimulator

from .conftest import FA3, Api, batch_request, split_encrypt, zip_of

pytestmark = pytest.mark.anyio


def _code(body: object) -> int:
    assert isinstance(body, dict), body
    return int(body["exception"]["exceptionDetailList"][0]["exceptionCode"])


async def _run_batch(api: Api, key: SessionKey, archive: bytes, parts: int = 1, **batch: Any) -> dict[str, Any]:
    encrypted = split_encrypt(key, archive, parts)
    status, opened, _ = await api.call(
        "POST", "/sessions/batch", json=batch_request(await api.encryption(key), archive, encrypted, **batch)
    )
    assert status == 201, opened
    for upload, data in zip(opened["partUploadRequests"], encrypted, strict=True):
        async with api.http.put(upload["url"], data=data, headers=upload["headers"]) as resp:
            assert resp.status == 201
    status, _, _ = await api.call("POST", f"/sessions/batch/{opened['referenceNumber']}/close")
    assert status == 204
    return await api.wait_session(opened["referenceNumber"])


@pytest.mark.ksef_simulator(processing_delay=10.0)
async def test_online_statuses_follow_the_processing_delay(
    api: Api, ksef_simulator: KsefSimulator, factory: InvoiceFactory
) -> None:
    await api.login()
    key = SessionKey.generate()
    session = await api.open_online(key)
    status, sent = await api.send(session, key, factory.make(1)[1])
    assert status == 202
    path = f"/sessions/{session}/invoices/{sent['referenceNumber']}"
    codes = []
    for step in (0, 6, 5):
        ksef_simulator.clock.advance(step)
        _, body, _ = await api.call("GET", path)
        codes.append((body["status"]["code"], body["ksefNumber"] is not None))
    assert codes == [(100, False), (150, False), (200, True)]
    await api.login()  # 11 simulated seconds passed; tokens live 900 s, so this only keeps the test honest
    status, _, _ = await api.call("POST", f"/sessions/online/{session}/close")
    assert status == 204
    assert (await api.session_status(session))["status"]["code"] == 170
    ksef_simulator.clock.advance(10)
    assert (await api.session_status(session))["status"]["code"] == 200


async def test_online_session_closed_without_invoices_is_440_and_refuses_more(
    api: Api, factory: InvoiceFactory
) -> None:
    await api.login()
    key = SessionKey.generate()
    session = await api.open_online(key)
    status, _, _ = await api.call("POST", f"/sessions/online/{session}/close")
    assert status == 204
    assert (await api.session_status(session))["status"]["code"] == 440
    status, body = await api.send(session, key, factory.make(1)[1])
    assert (status, _code(body)) == (400, 21180)
    status, body, _ = await api.call("POST", f"/sessions/online/{session}/close")
    assert (status, _code(body)) == (400, 21180)


async def test_online_session_with_only_bad_invoices_is_445(api: Api) -> None:
    await api.login()
    key = SessionKey.generate()
    session = await api.open_online(key)
    status, sent = await api.send(session, key, b"<?xml version='1.0' encoding='UTF-8'?><x/>")
    assert status == 202
    await api.call("POST", f"/sessions/online/{session}/close")
    assert (await api.wait_session(session))["status"]["code"] == 445
    _, body, _ = await api.call("GET", f"/sessions/{session}/invoices/{sent['referenceNumber']}")
    assert body["status"]["code"] == 450
    assert body["status"]["details"]


async def test_online_session_with_an_undecryptable_key_is_415(api: Api) -> None:
    await api.login()
    encryption = await api.encryption(SessionKey.generate())
    encryption["encryptedSymmetricKey"] = b64(b"\x01" * 256)
    status, body, _ = await api.call("POST", "/sessions/online", json={"formCode": FA3, "encryption": encryption})
    assert status == 201
    assert (await api.session_status(body["referenceNumber"]))["status"]["code"] == 415


async def test_unknown_public_key_id_is_21470(api: Api) -> None:
    await api.login()
    encryption = await api.encryption(SessionKey.generate())
    encryption["publicKeyId"] = sha256_b64(b"retired key")
    status, body, _ = await api.call("POST", "/sessions/online", json={"formCode": FA3, "encryption": encryption})
    assert (status, _code(body)) == (400, 21470)


async def test_batch_tar_gz_is_processed(api: Api, factory: InvoiceFactory) -> None:
    await api.login()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in factory.iter(3):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    final = await _run_batch(api, SessionKey.generate(), buf.getvalue(), parts=2, compressionType="TarGz")
    assert final["status"]["code"] == 200
    assert final["successfulInvoiceCount"] == 3


@pytest.mark.parametrize(
    ("archive", "batch", "code"),
    [
        (b"definitely not a zip archive", {}, 430),
        (zip_of({}), {}, 440),
    ],
)
async def test_batch_archive_failures(api: Api, archive: bytes, batch: dict[str, Any], code: int) -> None:
    await api.login()
    final = await _run_batch(api, SessionKey.generate(), archive, **batch)
    assert final["status"]["code"] == code


async def test_batch_whole_file_hash_mismatch_is_405(api: Api, factory: InvoiceFactory) -> None:
    await api.login()
    key = SessionKey.generate()
    archive = zip_of(dict(factory.iter(2)))
    encrypted = split_encrypt(key, archive, 1)
    body = batch_request(await api.encryption(key), archive, encrypted)
    body["batchFile"]["fileHash"] = sha256_b64(b"another archive")
    _, opened, _ = await api.call("POST", "/sessions/batch", json=body)
    upload = opened["partUploadRequests"][0]
    async with api.http.put(upload["url"], data=encrypted[0], headers=upload["headers"]) as resp:
        assert resp.status == 201
    await api.call("POST", f"/sessions/batch/{opened['referenceNumber']}/close")
    assert (await api.wait_session(opened["referenceNumber"]))["status"]["code"] == 405


async def test_batch_parts_under_another_key_are_435(api: Api, factory: InvoiceFactory) -> None:
    await api.login()
    declared, actual = SessionKey.generate(), SessionKey.generate()
    archive = zip_of(dict(factory.iter(2)))
    encrypted = [encrypt_cbc(actual, archive)]
    body = batch_request(await api.encryption(declared), archive, encrypted)
    _, opened, _ = await api.call("POST", "/sessions/batch", json=body)
    upload = opened["partUploadRequests"][0]
    async with api.http.put(upload["url"], data=encrypted[0], headers=upload["headers"]) as resp:
        assert resp.status == 201
    await api.call("POST", f"/sessions/batch/{opened['referenceNumber']}/close")
    # A wrong key almost always breaks the PKCS#7 padding (435); if the padding happens to parse, the joined
    # file's hash cannot match (405). Either way the package is refused before any invoice is read.
    final = await api.wait_session(opened["referenceNumber"])
    assert final["status"]["code"] in (435, 405)
    assert final["invoiceCount"] == 0


async def test_batch_over_the_invoice_limit_is_420(
    api: Api, ksef_simulator: KsefSimulator, factory: InvoiceFactory
) -> None:
    ksef_simulator.config.max_invoices_per_session = 2
    await api.login()
    final = await _run_batch(api, SessionKey.generate(), zip_of(dict(factory.iter(3))))
    assert final["status"]["code"] == 420


@pytest.mark.ksef_simulator(strict_contract=False)  # these bodies break the spec's maxItems on purpose
async def test_batch_open_limits(api: Api) -> None:
    await api.login()
    encryption = await api.encryption(SessionKey.generate())
    part = {"ordinalNumber": 1, "fileSize": 100_000_001, "fileHash": sha256_b64(b"x")}
    base = {"formCode": FA3, "encryption": encryption}
    file = {"fileSize": 100_000_001, "fileHash": sha256_b64(b"x")}
    status, body, _ = await api.call("POST", "/sessions/batch", json=base | {"batchFile": file | {"fileParts": [part]}})
    assert (status, _code(body)) == (400, 21157)
    parts = [{"ordinalNumber": i, "fileSize": 1000, "fileHash": sha256_b64(b"x")} for i in range(1, 52)]
    status, body, _ = await api.call("POST", "/sessions/batch", json=base | {"batchFile": file | {"fileParts": parts}})
    assert (status, _code(body)) == (400, 21161)
    too_big = {"fileSize": 5_000_000_001, "fileHash": sha256_b64(b"x"), "fileParts": parts[:1]}
    status, body, _ = await api.call("POST", "/sessions/batch", json=base | {"batchFile": too_big})
    assert (status, _code(body)) == (400, 21405)


async def test_invoice_listing_pages_with_continuation_tokens(api: Api, factory: InvoiceFactory) -> None:
    await api.login()
    final = await _run_batch(api, SessionKey.generate(), zip_of(dict(factory.iter(25))))
    assert final["successfulInvoiceCount"] == 25
    ref = await _latest_batch(api)
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        headers: dict[str, str] = {"x-continuation-token": token} if token else {}
        status, body, _ = await api.call("GET", f"/sessions/{ref}/invoices", params={"pageSize": "10"}, headers=headers)
        assert status == 200
        seen += [i["ksefNumber"] for i in body["invoices"]]
        pages += 1
        token = body["continuationToken"]
        if not token:
            break
    assert pages == 3
    assert len(set(seen)) == 25
    assert all(is_valid_ksef_number(n) for n in seen)
    status, body, _ = await api.call("GET", f"/sessions/{ref}/invoices", headers={"x-continuation-token": "garbage"})
    assert (status, _code(body)) == (400, 21418)
    status, body, _ = await api.call("GET", f"/sessions/{ref}/invoices", params={"pageSize": "5"})
    assert (status, _code(body)) == (400, 21405)


async def _latest_batch(api: Api) -> str:
    status, body, _ = await api.call("GET", "/sessions", params={"sessionType": "Batch", "statuses": "Succeeded"})
    assert status == 200, body
    assert len(body["sessions"]) == 1
    return str(body["sessions"][0]["referenceNumber"])


async def test_session_list_requires_session_type(api: Api) -> None:
    await api.login()
    status, body, _ = await api.call("GET", "/sessions", headers={"X-Error-Format": "problem-details"})
    assert status == 400
    assert body["errors"][0]["code"] == 21405


async def test_technical_correction_of_a_rejected_offline_invoice(api: Api, factory: InvoiceFactory) -> None:
    await api.login()
    key = SessionKey.generate()
    session = await api.open_online(key)
    _, good = factory.make(1)
    broken = good.replace(b"<P_2>", b"<P_2>X", 1).replace(b"</Fa>", b"<Unexpected/></Fa>", 1)
    status, rejected = await api.send(session, key, broken, offlineMode=True)
    assert status == 202
    _, first, _ = await api.call("GET", f"/sessions/{session}/invoices/{rejected['referenceNumber']}")
    assert (first["status"]["code"], first["invoicingMode"]) == (450, "Offline")
    correction = {"offlineMode": True, "hashOfCorrectedInvoice": sha256_b64(broken)}
    status, body = await api.send(session, key, good, **(correction | {"offlineMode": False}))
    assert (status, _code(body)) == (400, 21166)  # a correction is an offline send
    status, fixed = await api.send(session, key, good, **correction)
    assert status == 202, fixed
    _, second, _ = await api.call("GET", f"/sessions/{session}/invoices/{fixed['referenceNumber']}")
    assert second["status"]["code"] == 200
    status, body = await api.send(session, key, factory.make(2)[1], **correction)
    assert (status, _code(body)) == (400, 21166)  # already corrected
    accepted = factory.make(3)[1]
    assert (await api.send(session, key, accepted, offlineMode=True))[0] == 202
    status, body = await api.send(
        session, key, factory.make(4)[1], offlineMode=True, hashOfCorrectedInvoice=sha256_b64(accepted)
    )
    assert (status, _code(body)) == (400, 21167)  # the original was accepted
