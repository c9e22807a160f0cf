"""Authentication details: challenge validity, bad tokens (450), key ids (21470), XAdES login, KSeF token creation,
auth sessions, blocked contexts and the test-data rate-limit controls."""

from __future__ import annotations

from typing import Any

import pytest

from ksef_async.core.crypto import KEY_USAGE_TOKEN, SessionKey, encrypt_ksef_token, sha256_b64
from ksef_async.testing.certificates import generate_person_certificate, generate_seal_certificate
from ksef_async.testing.simulator import KsefSimulator
from ksef_async.xml.auth_request import ContextIdentifier, SubjectIdentifierType, build_auth_token_request
from ksef_async.xml.upo import parse_upo
from ksef_async.xml.xades import KeyCertSigner

from .conftest import NIP, TOKEN, Api, invoice

pytestmark = pytest.mark.anyio


def _code(body: object) -> int:
    assert isinstance(body, dict), body
    return int(body["exception"]["exceptionDetailList"][0]["exceptionCode"])


async def _token_body(api: Api, token: str, *, shift_ms: int = 0) -> dict[str, Any]:
    keys = await api.keys()
    _, ch, _ = await api.call("POST", "/auth/challenge")
    mf = keys[KEY_USAGE_TOKEN]
    return {
        "challenge": ch["challenge"],
        "contextIdentifier": {"type": "Nip", "value": NIP},
        "encryptedToken": encrypt_ksef_token(mf.rsa_public_key(), token, ch["timestampMs"] + shift_ms),
        "publicKeyId": mf.public_key_id,
    }


async def _auth_code(api: Api, body: dict[str, Any]) -> int:
    status, init, _ = await api.call("POST", "/auth/ksef-token", json=body)
    assert status == 202, init
    _, st, _ = await api.call("GET", f"/auth/{init['referenceNumber']}", token=init["authenticationToken"]["token"])
    return int(st["status"]["code"])


async def test_challenge_shape_and_expiry(api: Api, ksef_simulator: KsefSimulator) -> None:
    status, ch, _ = await api.call("POST", "/auth/challenge")
    assert status == 200
    assert len(ch["challenge"]) == 36
    assert ch["challenge"][9:11] == "CR"
    assert ch["clientIp"] == "127.0.0.1"
    body = await _token_body(api, TOKEN)
    ksef_simulator.clock.advance(601)
    status, resp, _ = await api.call("POST", "/auth/ksef-token", json=body)
    assert (status, _code(resp)) == (400, 21111)


async def test_challenge_is_single_use(api: Api) -> None:
    body = await _token_body(api, TOKEN)
    assert await _auth_code(api, body) == 200
    status, resp, _ = await api.call("POST", "/auth/ksef-token", json=body)
    assert (status, _code(resp)) == (400, 21111)


async def test_bad_tokens_end_with_450(api: Api) -> None:
    assert await _auth_code(api, await _token_body(api, "not-a-token")) == 450
    assert await _auth_code(api, await _token_body(api, TOKEN, shift_ms=3_600_000)) == 450


async def test_unknown_public_key_id_is_21470(api: Api) -> None:
    body = await _token_body(api, TOKEN) | {"publicKeyId": sha256_b64(b"gone")}
    status, resp, _ = await api.call("POST", "/auth/ksef-token", json=body)
    assert (status, _code(resp)) == (400, 21470)


async def test_status_needs_the_authentication_token(api: Api) -> None:
    tokens = await api.login()
    ref, op_token = await api.start_token_auth(NIP, TOKEN)
    status, _, _ = await api.call("GET", f"/auth/{ref}", token=tokens["accessToken"]["token"])
    assert status == 401
    status, _, _ = await api.call("GET", f"/auth/{ref}", token=op_token)
    assert status == 200


async def test_revoked_session_cannot_refresh(api: Api) -> None:
    tokens = await api.login()
    status, _, _ = await api.call("DELETE", "/auth/sessions/current")
    assert status == 204
    status, _, _ = await api.call("POST", "/auth/token/refresh", token=tokens["refreshToken"]["token"])
    assert status == 401
    status, _, _ = await api.call("GET", "/limits/subject")
    assert status == 200  # the access token lives on until exp


async def test_blocked_context_ends_with_480(api: Api) -> None:
    status, _, _ = await api.call(
        "POST", "/testdata/context/block", json={"contextIdentifier": {"type": "Nip", "value": NIP}}
    )
    assert status == 200
    assert await _auth_code(api, await _token_body(api, TOKEN)) == 480
    await api.call("POST", "/testdata/context/unblock", json={"contextIdentifier": {"type": "Nip", "value": NIP}})
    assert await _auth_code(api, await _token_body(api, TOKEN)) == 200


async def _xades_login(
    api: Api, signer: KeyCertSigner, nip: str, subject: SubjectIdentifierType = "certificateSubject"
) -> dict[str, Any]:
    _, ch, _ = await api.call("POST", "/auth/challenge")
    xml = build_auth_token_request(ch["challenge"], ContextIdentifier("Nip", nip), subject)
    status, init, _ = await api.call(
        "POST", "/auth/xades-signature", data=signer.sign(xml), headers={"Content-Type": "application/xml"}
    )
    assert status == 202, init
    op_token = init["authenticationToken"]["token"]
    _, st, _ = await api.call("GET", f"/auth/{init['referenceNumber']}", token=op_token)
    return {"status": st, "op_token": op_token}


async def test_xades_login_then_a_new_ksef_token_works(api: Api) -> None:
    seal = generate_seal_certificate(organization_name="Test Sp. z o.o.", nip=NIP)
    result = await _xades_login(api, KeyCertSigner(seal.key, seal.certificate), NIP)
    assert result["status"]["status"]["code"] == 200
    assert result["status"]["authenticationMethodInfo"]["category"] == "XadesSignature"
    _, tokens, _ = await api.call("POST", "/auth/token/redeem", token=result["op_token"])
    api.token = tokens["accessToken"]["token"]
    status, created, _ = await api.call(
        "POST", "/tokens", json={"permissions": ["InvoiceRead", "InvoiceWrite"], "description": "CI token"}
    )
    assert status == 202, created
    await api.login(NIP, created["token"])
    status, body, _ = await api.call("POST", "/tokens", json={"permissions": ["InvoiceRead"], "description": "again"})
    assert status == 403
    assert body["reasonCode"] == "auth-method-not-allowed"


async def test_xades_login_of_a_stranger_without_permissions_is_415(api: Api) -> None:
    person = generate_person_certificate(given_name="Jan", surname="Kowalski", pesel="88102341294")
    result = await _xades_login(api, KeyCertSigner(person.key, person.certificate), NIP)
    assert result["status"]["status"]["code"] == 415
    status, body, _ = await api.call(
        "POST",
        "/testdata/permissions",
        json={
            "contextIdentifier": {"type": "Nip", "value": NIP},
            "authorizedIdentifier": {"type": "Pesel", "value": "88102341294"},
            "permissions": [{"permissionType": "InvoiceWrite", "description": "write"}],
        },
    )
    assert status == 200, body
    result = await _xades_login(api, KeyCertSigner(person.key, person.certificate), NIP)
    assert result["status"]["status"]["code"] == 200


async def test_forged_xades_signature_is_rejected(api: Api) -> None:
    seal = generate_seal_certificate(organization_name="Test Sp. z o.o.", nip=NIP)
    _, ch, _ = await api.call("POST", "/auth/challenge")
    signed = KeyCertSigner(seal.key, seal.certificate).sign(
        build_auth_token_request(ch["challenge"], ContextIdentifier("Nip", NIP), "certificateSubject")
    )
    forged = signed.replace(NIP.encode(), b"1111111111", 1)
    status, body, _ = await api.call(
        "POST", "/auth/xades-signature", data=forged, headers={"Content-Type": "application/xml"}
    )
    assert (status, _code(body)) == (400, 9105)


async def test_upo_names_the_token_used_to_log_in(api: Api, ksef_simulator: KsefSimulator) -> None:
    await api.login()
    key = SessionKey.generate()
    session = await api.open_online(key)
    await api.send(session, key, invoice("FA/UPO/1"))
    await api.call("POST", f"/sessions/online/{session}/close")
    final = await api.wait_session(session)
    _, upo, _ = await api.call("GET", f"/sessions/{session}/upo/{final['upo']['pages'][0]['referenceNumber']}")
    token_ref = ksef_simulator.state.tokens[TOKEN].reference_number
    assert parse_upo(upo).authentication.ksef_token_reference == token_ref


async def test_custom_rate_limits_and_back_to_production(api: Api) -> None:
    await api.login()
    _, prod, _ = await api.call("GET", "/rate-limits")
    assert prod["invoiceSend"] == {"perSecond": 10, "perMinute": 30, "perHour": 180}
    custom = {group: {"perSecond": 2, "perMinute": 100, "perHour": 1000} for group in prod}
    status, _, _ = await api.call("POST", "/testdata/rate-limits", json={"rateLimits": custom})
    assert status == 200
    statuses = [(await api.call("GET", "/limits/subject"))[0] for _ in range(3)]
    assert statuses == [200, 200, 429]
    status, _, _ = await api.call("POST", "/testdata/rate-limits/production")
    assert status == 200
    _, back, _ = await api.call("GET", "/rate-limits")
    assert back == prod


async def test_auth_operation_stays_in_progress_for_the_auth_delay(api: Api, ksef_simulator: KsefSimulator) -> None:
    ksef_simulator.config.auth_delay = 5.0
    ref, op_token = await api.start_token_auth(NIP, TOKEN)
    _, st, _ = await api.call("GET", f"/auth/{ref}", token=op_token)
    assert st["status"]["code"] == 100
    status, body, _ = await api.call("POST", "/auth/token/redeem", token=op_token)
    assert (status, _code(body)) == (400, 21301)  # not yet authenticated
    ksef_simulator.clock.advance(5)
    _, st, _ = await api.call("GET", f"/auth/{ref}", token=op_token)
    assert st["status"]["code"] == 200
    status, _, _ = await api.call("POST", "/auth/token/redeem", token=op_token)
    assert status == 200
