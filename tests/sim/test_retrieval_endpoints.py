"""The simulator's retrieval endpoints through bare aiohttp and the crypto core (never the client's retrieval code)."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import tarfile
import zipfile
from typing import Any

import aiohttp
import pytest

from ksef_async.core.crypto import SessionKey, b64, decrypt_cbc
from ksef_async.testing.simulator import KsefSimulator
from ksef_async.testing.simulator import retrieval as simret
from ksef_async.testing.simulator.state import iso

from .conftest import NIP, Api

pytestmark = [pytest.mark.anyio, pytest.mark.ksef_simulator(rate_limits="off", storage_delay=600.0)]

DAY = dt.timedelta(days=1)


def ps_range(start: dt.datetime, end: dt.datetime | None = None, **extra: Any) -> dict[str, Any]:
    rng: dict[str, Any] = {"dateType": "PermanentStorage", "from": start.isoformat()}
    if end is not None:
        rng["to"] = end.isoformat()
    return rng | extra


async def query(api: Api, body: dict[str, Any], **params: Any) -> tuple[int, Any]:
    status, answer, _ = await api.call("POST", "/invoices/query/metadata", json=body, params=params or None)
    return status, answer


def codes(body: Any) -> list[int]:
    return [e["code"] for e in body.get("errors", [])] or [
        e["exceptionCode"] for e in body["exception"]["exceptionDetailList"]
    ]


async def wait_export(api: Api, sim: KsefSimulator, ref: str) -> dict[str, Any]:
    for _ in range(200):
        status, body, _ = await api.call("GET", f"/invoices/exports/{ref}")
        assert status == 200, body
        if body["status"]["code"] != 100:
            return dict(body)
        sim.clock.advance(0.1)
        await sim.wait_idle()
    raise AssertionError(f"export {ref} stayed in progress")


async def download_parts(http: aiohttp.ClientSession, key: SessionKey, package: dict[str, Any]) -> bytes:
    plain = b""
    for part in sorted(package["parts"], key=lambda p: p["ordinalNumber"]):
        async with http.get(part["url"]) as resp:
            assert resp.status == 200
            data = await resp.read()
            assert resp.headers["x-ms-meta-hash"] == part["encryptedPartHash"] == b64(hashlib.sha256(data).digest())
        assert len(data) == part["encryptedPartSize"]
        chunk = decrypt_cbc(key, data)
        assert len(chunk) == part["partSize"]
        assert b64(hashlib.sha256(chunk).digest()) == part["partHash"]
        plain += chunk
    assert len(plain) == package["size"]
    return plain


async def test_get_invoice_by_number_with_hash_and_the_two_error_codes(api: Api, ksef_simulator: KsefSimulator) -> None:
    sim = ksef_simulator
    now = sim.clock.now_dt()
    old, fresh = simret.seed_invoices(sim, NIP, 2, now - DAY, now - dt.timedelta(seconds=5))
    await api.login()
    status, body, headers = await api.call("GET", f"/invoices/ksef/{old}")
    assert status == 200
    assert headers["Content-Type"].startswith("application/xml")
    assert headers["x-ms-meta-hash"] == b64(hashlib.sha256(body).digest()) == sim.state.invoices[old].invoice_hash
    status, body, _ = await api.call("GET", f"/invoices/ksef/{fresh}")  # numbered, not yet in permanent storage
    assert status == 400
    assert codes(body) == [21165]
    sim.clock.advance(601)
    status, _, _ = await api.call("GET", f"/invoices/ksef/{fresh}")
    assert status == 200
    unknown = old[:-10] + "000000-00"
    status, body, _ = await api.call("GET", f"/invoices/ksef/{unknown}")
    assert status == 400


async def test_query_paging_sorting_hwm_and_validation(api: Api, ksef_simulator: KsefSimulator) -> None:
    sim = ksef_simulator
    now = sim.clock.now_dt()
    numbers = simret.seed_invoices(sim, NIP, 40, now - 20 * DAY, now - dt.timedelta(hours=1))
    simret.seed_invoices(sim, NIP, 3, now, now, seed=5)  # not stored yet: invisible
    await api.login()
    body = {"subjectType": "Subject2", "dateRange": ps_range(now - 30 * DAY)}
    status, page = await query(api, body, pageSize=25, pageOffset=0)
    assert status == 200, page
    assert [m["ksefNumber"] for m in page["invoices"]] == numbers[:25]
    assert page["hasMore"] is True
    assert page["isTruncated"] is False
    hwm = dt.datetime.fromisoformat(page["permanentStorageHwmDate"])
    assert now - dt.timedelta(seconds=2) <= hwm <= sim.clock.now_dt()  # now, rounded down to the HWM interval
    status, page2 = await query(api, body, pageSize=25, pageOffset=1)
    assert [m["ksefNumber"] for m in page2["invoices"]] == numbers[25:]
    assert page2["hasMore"] is False
    # The simulated HWM follows the clock (rounded down to 1 s), so a page asked for a second later may carry the
    # next second; it never goes back.
    hwm2 = dt.datetime.fromisoformat(page2["permanentStorageHwmDate"])
    assert hwm <= hwm2 <= hwm + dt.timedelta(seconds=1)
    status, desc = await query(api, body, pageSize=10, sortOrder="Desc")
    assert [m["ksefNumber"] for m in desc["invoices"]] == numbers[::-1][:10]
    meta = page["invoices"][0]
    inv = sim.state.invoices[numbers[0]]
    assert meta["invoiceHash"] == inv.invoice_hash
    assert meta["buyer"]["identifier"] == {"type": "Nip", "value": NIP}
    assert meta["grossAmount"] > 0
    # Invoicing dates: no HWM in the answer.
    status, inv_page = await query(
        api, {"subjectType": "Subject2", "dateRange": {**ps_range(now - 30 * DAY), "dateType": "Invoicing"}}
    )
    assert status == 200
    assert inv_page["permanentStorageHwmDate"] is None
    # Subject1: this context sold none of them.
    status, sold = await query(api, {"subjectType": "Subject1", "dateRange": ps_range(now - 30 * DAY)})
    assert sold["invoices"] == []
    for params in ({"pageSize": 9}, {"pageSize": 251}, {"pageOffset": -1}):
        status, err = await query(api, body, **params)
        assert status == 400, params
        assert codes(err) == [21405]
    # 100 days counted in UTC: exactly 100 days is legal, one second more is 21405 naming the rule.
    longest = {"subjectType": "Subject2", "dateRange": ps_range(now - 100 * DAY, now)}
    status, page = await query(api, longest)
    assert status == 200, page
    too_long = {"subjectType": "Subject2", "dateRange": ps_range(now - 100 * DAY - dt.timedelta(seconds=1), now)}
    status, err = await query(api, too_long)
    assert status == 400
    assert codes(err) == [21405]
    assert "100 days counted in UTC" in json.dumps(err)


# 2.9.0: InvoiceQueryFilters.dateRange takes only 'Z' or an explicit offset (the "no offset = Europe/Warsaw" reading
# is gone). Such a request is out of contract, so strict mode (which would record it and fail the test) is off here.
@pytest.mark.ksef_simulator(rate_limits="off", storage_delay=600.0, strict_contract=False)
async def test_query_refuses_a_date_without_offset(api: Api, ksef_simulator: KsefSimulator) -> None:
    sim = ksef_simulator
    moment = dt.datetime(2026, 7, 1, 10, 0, tzinfo=dt.UTC)  # 12:00 in Warsaw (CEST)
    sim.clock.advance(max(0.0, (moment + 30 * DAY - sim.clock.now_dt()).total_seconds()))
    (number,) = simret.seed_invoices(
        sim, NIP, 1, moment - dt.timedelta(seconds=600), moment - dt.timedelta(seconds=600)
    )
    await api.login()

    async def ask(start: str, end: str) -> tuple[int, Any]:
        body = {"subjectType": "Subject2", "dateRange": {"dateType": "PermanentStorage", "from": start, "to": end}}
        return await query(api, body)

    for start, end in (
        ("2026-07-01T11:59:00", "2026-07-01T12:01:00Z"),
        ("2026-07-01T09:59:00Z", "2026-07-01T10:01:00"),
    ):
        status, err = await ask(start, end)
        assert status == 400
        assert codes(err) == [21405]
        assert "offset" in json.dumps(err)
    status, page = await ask("2026-07-01T09:59:00Z", "2026-07-01T12:01:00+02:00")
    assert status == 200, page
    assert [i["ksefNumber"] for i in page["invoices"]] == [number]


async def test_query_truncates_at_the_cap_and_restrict_clamps_to_the_hwm(
    api: Api, ksef_simulator: KsefSimulator
) -> None:
    sim = ksef_simulator
    simret.settings(sim).query_cap = 30
    now = sim.clock.now_dt()
    simret.seed_invoices(sim, NIP, 45, now - 10 * DAY, now - DAY)
    await api.login()
    body = {"subjectType": "Subject2", "dateRange": ps_range(now - 20 * DAY)}
    _, first = await query(api, body, pageSize=20, pageOffset=0)
    assert (first["hasMore"], first["isTruncated"]) == (True, False)
    _, second = await query(api, body, pageSize=20, pageOffset=1)
    assert len(second["invoices"]) == 10  # the cap cuts the page
    assert (second["hasMore"], second["isTruncated"]) == (True, True)
    # A window starting after the HWM with restrict set: 21183.
    late = {"subjectType": "Subject2", "dateRange": ps_range(now + DAY, restrictToPermanentStorageHwmDate=True)}
    status, err = await query(api, late)
    assert status == 400
    assert codes(err) == [21183]
    # restrict clamps 'to' to the HWM: an invoice stored after the HWM moment is left out.
    simret.seed_invoices(sim, NIP, 1, now - dt.timedelta(seconds=300), now - dt.timedelta(seconds=300), seed=9)
    clamp = {
        "subjectType": "Subject2",
        "dateRange": ps_range(now - 20 * DAY, now + DAY, restrictToPermanentStorageHwmDate=True),
    }
    simret.settings(sim).query_cap = 10_000
    _, clamped = await query(api, clamp, pageSize=100)
    assert len(clamped["invoices"]) == 45
    sim.clock.advance(400)
    _, later = await query(api, clamp, pageSize=100)
    assert len(later["invoices"]) == 46


@pytest.mark.parametrize("compression", ["Zip", "TarGz"])
async def test_export_parts_decrypt_join_and_unpack(
    api: Api, ksef_simulator: KsefSimulator, http: aiohttp.ClientSession, compression: str
) -> None:
    sim = ksef_simulator
    cfg = simret.settings(sim)
    cfg.max_part_size = 2_000  # several parts
    cfg.max_package_invoices = 12
    now = sim.clock.now_dt()
    numbers = simret.seed_invoices(sim, NIP, 20, now - 10 * DAY, now - DAY)
    await api.login()
    key = SessionKey.generate()
    request = {
        "encryption": await api.encryption(key),
        "filters": {
            "subjectType": "Subject2",
            "dateRange": ps_range(now - 20 * DAY, restrictToPermanentStorageHwmDate=True),
        },
        "compressionType": compression,
    }
    status, started, _ = await api.call("POST", "/invoices/exports", json=request)
    assert status == 201, started
    ref = started["referenceNumber"]
    assert "-EH-" in ref
    status, pending, _ = await api.call("GET", f"/invoices/exports/{ref}")
    assert pending["status"]["code"] == 100
    final = await wait_export(api, sim, ref)
    assert final["status"]["code"] == 200
    package = final["package"]
    assert package["invoiceCount"] == 12
    assert package["isTruncated"] is True
    assert len(package["parts"]) >= 3
    assert package["parts"][0]["partName"] == f"{ref}-001.{'zip' if compression == 'Zip' else 'tar.gz'}.aes"
    assert package["lastPermanentStorageDate"] == iso(sim.state.invoices[numbers[11]].permanent_storage_date)
    archive = await download_parts(http, key, package)
    if compression == "Zip":
        with zipfile.ZipFile(io.BytesIO(archive)) as zf:
            names = zf.namelist()
            files = {n: zf.read(n) for n in names}
    else:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tf:
            names = tf.getnames()
            files = {m.name: tf.extractfile(m).read() for m in tf.getmembers()}  # type: ignore[union-attr]
    assert names[0] == "_metadata.json"
    metadata = json.loads(files["_metadata.json"])["invoices"]
    assert [m["ksefNumber"] for m in metadata] == numbers[:12]
    for meta in metadata:
        xml = files[f"{meta['ksefNumber']}.xml"]
        assert xml == sim.state.invoices[meta["ksefNumber"]].content
        assert b64(hashlib.sha256(xml).digest()) == meta["invoiceHash"]
    # Part URLs are pre-signed: a tampered signature or a bearer token is refused.
    url = package["parts"][0]["url"]
    async with http.get(url.replace("sig=", "sig=A")) as resp:
        assert resp.status == 403
    async with http.get(url, headers={"Authorization": "Bearer x"}) as resp:
        assert resp.status == 400


async def test_export_only_metadata_415_420_and_the_concurrency_limit(
    api: Api, ksef_simulator: KsefSimulator, http: aiohttp.ClientSession
) -> None:
    sim = ksef_simulator
    now = sim.clock.now_dt()
    simret.seed_invoices(sim, NIP, 5, now - 5 * DAY, now - DAY)
    await api.login()
    key = SessionKey.generate()
    filters = {"subjectType": "Subject2", "dateRange": ps_range(now - 10 * DAY, restrictToPermanentStorageHwmDate=True)}
    status, started, _ = await api.call(
        "POST",
        "/invoices/exports",
        json={"encryption": await api.encryption(key), "filters": filters, "onlyMetadata": True},
    )
    final = await wait_export(api, sim, started["referenceNumber"])
    package = final["package"]
    assert (package["invoiceCount"], package["isTruncated"]) == (5, False)
    assert package["permanentStorageHwmDate"] is not None
    with zipfile.ZipFile(io.BytesIO(await download_parts(http, key, package))) as zf:
        assert zf.namelist() == ["_metadata.json"]
    # A key that does not decrypt under the MF key: status 415.
    bad = await api.encryption(key) | {"encryptedSymmetricKey": b64(b"\x01" * 256)}
    status, started, _ = await api.call("POST", "/invoices/exports", json={"encryption": bad, "filters": filters})
    assert status == 201
    assert (await wait_export(api, sim, started["referenceNumber"]))["status"]["code"] == 415
    # from after the HWM with restrict: status 420.
    late = {"subjectType": "Subject2", "dateRange": ps_range(now + DAY, restrictToPermanentStorageHwmDate=True)}
    status, started, _ = await api.call(
        "POST", "/invoices/exports", json={"encryption": await api.encryption(key), "filters": late}
    )
    assert (await wait_export(api, sim, started["referenceNumber"]))["status"]["code"] == 420
    # The 11th export in progress is refused with 21182.
    simret.settings(sim).export_delay = 3600
    for _ in range(10):
        status, _, _ = await api.call(
            "POST", "/invoices/exports", json={"encryption": await api.encryption(key), "filters": filters}
        )
        assert status == 201
    status, err, _ = await api.call(
        "POST", "/invoices/exports", json={"encryption": await api.encryption(key), "filters": filters}
    )
    assert status == 400
    assert codes(err) == [21182]


async def test_unreadable_json_is_21001_where_the_spec_lists_it(api: Api) -> None:
    await api.login()
    broken = b'{"subjectType": "Subject2", "dateRange": '
    for path in ("/invoices/query/metadata", "/invoices/exports"):
        status, err, _ = await api.call("POST", path, data=broken, headers={"Content-Type": "application/json"})
        assert status == 400, path
        assert codes(err) == [21001], err
        assert "Nieczytelna treść." in json.dumps(err, ensure_ascii=False)
    # POST /testdata/subject does not list 21001 in its 400 table: the generic validation code stays.
    status, err, _ = await api.call(
        "POST", "/testdata/subject", data=b"{", headers={"Content-Type": "application/json"}
    )
    assert status == 400
    assert codes(err) == [21405]
