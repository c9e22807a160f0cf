"""Simulator behaviour new in API 2.9.0: error 21184 faults, ``X-KSeF-Feature: subject-identifier-validation``,
``publicKeyId`` length, ``ownerPermissions``, 403 without ``timestamp`` and the status-450 ``details`` strings.

Raw aiohttp calls only (`tests.sim.conftest.Api`), so the client cannot share a mistake with the simulator.
"""

from __future__ import annotations

import base64
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from ksef_async.core.crypto import KEY_USAGE_TOKEN, SessionKey, b64, encrypt_ksef_token
from ksef_async.errors import ConfigurationError
from ksef_async.testing.simulator import FaultSpec, KsefSimulator
from ksef_async.testing.simulator.runtime import SimConfig

from .conftest import FA3, NIP, TOKEN, Api, invoice

pytestmark = pytest.mark.anyio

OTHER_NIP = "1111111111"
FEATURE = {"X-KSeF-Feature": "subject-identifier-validation"}


def _bad_check_digit(nip: str) -> str:
    return nip[:9] + str((int(nip[9]) + 1) % 10)


def _with_buyer(data: bytes, nip: str) -> bytes:
    start = data.index(b"<Podmiot2>")
    head, tail = data[:start], data[start:]
    before, _, after = tail.partition(b"<NIP>")
    _, _, rest = after.partition(b"</NIP>")
    return head + before + b"<NIP>" + nip.encode() + b"</NIP>" + rest


async def _code(api: Api, body: Any) -> int:
    assert isinstance(body, dict), body
    return int(body["exception"]["exceptionDetailList"][0]["exceptionCode"])


async def _open(api: Api, key: SessionKey, headers: dict[str, str] | None = None) -> str:
    status, body, _ = await api.call(
        "POST", "/sessions/online", json={"formCode": FA3, "encryption": await api.encryption(key)}, headers=headers
    )
    assert status == 201, body
    return str(body["referenceNumber"])


async def _final_invoices(api: Api, ref: str) -> list[dict[str, Any]]:
    status, _, _ = await api.call("POST", f"/sessions/online/{ref}/close")
    assert status == 204
    await api.wait_session(ref)
    status, body, _ = await api.call("GET", f"/sessions/{ref}/invoices", params={"pageSize": 10})
    assert status == 200, body
    return list(body["invoices"])


def test_fault_spec_accepts_the_21184_kinds() -> None:
    spec = FaultSpec.parse("session-unavailable:2, session-down=0.5:1, close-error=1:1")
    assert spec.values == {"session-unavailable": 1.0, "session-down": 0.5, "close-error": 1.0}
    assert spec.caps == {"session-unavailable": 2, "session-down": 1, "close-error": 1}
    assert FaultSpec.parse("session-down").values == {"session-down": 1.0}
    for bad in ("session-unavailable:0", "session-gone:1", "upload-delay", "api-error:1", "session-down=2"):
        with pytest.raises(ConfigurationError):
            FaultSpec.parse(bad)


@pytest.mark.ksef_simulator(faults="session-unavailable:1")
async def test_session_unavailable_fault_answers_21184_once(api: Api, ksef_simulator: KsefSimulator) -> None:
    await api.login()
    key = SessionKey.generate()
    ref = await _open(api, key)
    status, body = await api.send(ref, key, invoice("U/1"))
    assert status == 400
    assert await _code(api, body) == 21184
    detail = body["exception"]["exceptionDetailList"][0]
    assert detail["exceptionDescription"] == "Sesja tymczasowo niedostępna."
    assert ref in detail["details"][0]
    status, body = await api.send(ref, key, invoice("U/1"))
    assert status == 202, body
    assert ksef_simulator.counters.faults["session-unavailable"] == 1
    (entry,) = await _final_invoices(api, ref)  # the refused send stored nothing
    assert entry["status"]["code"] == 200


@pytest.mark.ksef_simulator(faults="session-down:1")
async def test_session_down_fault_hits_one_whole_session(api: Api, ksef_simulator: KsefSimulator) -> None:
    await api.login()
    key = SessionKey.generate()
    down = await _open(api, key)
    for _ in range(3):
        status, body = await api.send(down, key, invoice("D/1"))
        assert (status, await _code(api, body)) == (400, 21184)
    fresh = await _open(api, key)
    status, body = await api.send(fresh, key, invoice("D/1"))
    assert status == 202, body
    ksef_simulator.set_session_unavailable(fresh)
    status, body = await api.send(fresh, key, invoice("D/2"))
    assert (status, await _code(api, body)) == (400, 21184)
    ksef_simulator.set_session_unavailable(fresh, unavailable=False)
    status, body = await api.send(fresh, key, invoice("D/2"))
    assert status == 202, body
    with pytest.raises(ConfigurationError):
        ksef_simulator.set_session_unavailable("20260101-SO-0000000000-0000000000-00")


async def test_subject_identifier_validation_only_with_the_header(api: Api, ksef_simulator: KsefSimulator) -> None:
    await api.login()
    bad_buyer = _bad_check_digit(OTHER_NIP)
    key = SessionKey.generate()
    plain = await _open(api, key)
    assert (await api.send(plain, key, _with_buyer(invoice("F/1"), bad_buyer)))[0] == 202
    (accepted,) = await _final_invoices(api, plain)
    assert accepted["status"]["code"] == 200
    assert ksef_simulator.state.sessions[plain].features == frozenset()

    checked = await _open(api, key, FEATURE)
    assert ksef_simulator.state.sessions[checked].features == {"subject-identifier-validation"}
    assert (await api.send(checked, key, _with_buyer(invoice("F/2"), bad_buyer)))[0] == 202
    assert (await api.send(checked, key, _with_buyer(invoice("F/3"), OTHER_NIP)))[0] == 202
    rejected, fine = await _final_invoices(api, checked)
    assert rejected["status"]["code"] == 450
    assert rejected["ksefNumber"] is None
    assert any("Podmiot2" in d and bad_buyer in d and "NIP" in d for d in rejected["status"]["details"])
    assert fine["status"]["code"] == 200


async def test_public_key_ids_are_44_characters(api: Api) -> None:
    status, body, _ = await api.call("GET", "/security/public-key-certificates")
    assert status == 200
    assert body
    for item in body:
        assert len(item["publicKeyId"]) == 44
        assert len(base64.b64decode(item["publicKeyId"], validate=True)) == 32


async def test_owner_permissions_of_the_context_owner(api: Api) -> None:
    await api.login()
    status, body, _ = await api.call("POST", "/permissions/query/personal/grants", json={})
    assert status == 200, body
    owner = body["ownerPermissions"]
    assert {"InvoiceWrite", "InvoiceRead", "CredentialsManage", "CollectiveIdentifierManage"} <= set(owner)
    assert "EnforcementOperations" not in owner  # the context has no bailiff role


async def test_403_timestamp_is_optional(http: aiohttp.ClientSession, ksef_simulator_factory: Any) -> None:
    for with_timestamp in (True, False):
        sim: KsefSimulator = await ksef_simulator_factory(
            contexts=[(NIP, TOKEN)], config=SimConfig(forbidden_timestamp=with_timestamp)
        )
        reader = sim.add_context(OTHER_NIP, permissions=["InvoiceRead"])
        api = Api(http, sim.base_url)
        await api.login(OTHER_NIP, reader)
        status, body, headers = await api.call("POST", "/sessions/online", json={})  # needs InvoiceWrite
        assert status == 403
        assert headers["Content-Type"].startswith("application/problem+json")
        assert body["reasonCode"] == "missing-permissions"
        assert ("timestamp" in body) is with_timestamp


async def _auth_details(api: Api, encrypted: str, *, nip: str = NIP) -> tuple[int, list[str]]:
    keys = await api.keys()
    _, ch, _ = await api.call("POST", "/auth/challenge")
    body = {
        "challenge": ch["challenge"],
        "contextIdentifier": {"type": "Nip", "value": nip},
        "encryptedToken": encrypted,
        "publicKeyId": keys[KEY_USAGE_TOKEN].public_key_id,
    }
    status, init, _ = await api.call("POST", "/auth/ksef-token", json=body)
    assert status == 202, init
    _, st, _ = await api.call("GET", f"/auth/{init['referenceNumber']}", token=init["authenticationToken"]["token"])
    return int(st["status"]["code"]), list(st["status"]["details"] or [])


async def test_auth_450_details_name_the_token_problem(api: Api, ksef_simulator: KsefSimulator) -> None:
    mf = (await api.keys())[KEY_USAGE_TOKEN].rsa_public_key()
    _, ch, _ = await api.call("POST", "/auth/challenge")
    stamp = int(ch["timestampMs"])
    oaep = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)

    garbage = b64(bytes(mf.key_size // 8))
    assert await _auth_details(api, garbage) == (450, ["Nieprawidłowe szyfrowanie tokena"])

    not_utf8 = b64(mf.encrypt(b"\xff\xfe\xfd|" + str(stamp).encode(), oaep))
    assert await _auth_details(api, not_utf8) == (450, ["Nieprawidłowe kodowanie tokena"])

    other = ksef_simulator.add_context(OTHER_NIP)
    foreign = encrypt_ksef_token(mf, other, stamp)
    assert await _auth_details(api, foreign) == (450, [f"Token nie może być użyty w kontekście {NIP}"])

    unknown = encrypt_ksef_token(mf, "no-such-token", stamp)
    assert await _auth_details(api, unknown) == (450, ["Nieprawidłowy token"])
