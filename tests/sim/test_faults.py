"""Fault injection: parsing, determinism, and each kind's effect on the wire."""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from typing import Any

import pytest

from ksef_async.core.crypto import SessionKey
from ksef_async.errors import ConfigurationError
from ksef_async.testing.simulator import FaultSpec, KsefSimulator
from ksef_async.testing.simulator.faults import FaultInjector

from .conftest import Api, batch_request, invoice, split_encrypt, zip_of

pytestmark = pytest.mark.anyio


def test_spec_parsing() -> None:
    spec = FaultSpec.parse("upload-error=0.1, upload-reset=0.05,upload-delay=0.2,api-error=0.01,close-error=1:1")
    assert spec.values == {
        "upload-error": 0.1,
        "upload-reset": 0.05,
        "upload-delay": 0.2,
        "api-error": 0.01,
        "close-error": 1.0,
    }
    assert spec.caps == {"close-error": 1}
    for bad in ("nope=1", "upload-error=2", "upload-error=x", "close-error=1:0", "upload-delay=-1", "api-error"):
        with pytest.raises(ConfigurationError):
            FaultSpec.parse(bad)


def test_same_seed_same_faults() -> None:
    spec = FaultSpec.parse("upload-error=0.5,api-error=0.5")
    runs = []
    for _ in range(2):
        dice = FaultInjector(spec, seed=42)
        runs.append([(dice.fires("upload-error"), dice.fires("api-error")) for _ in range(40)])
    assert runs[0] == runs[1]
    assert any(a for a, _ in runs[0])
    assert not all(a for a, _ in runs[0])
    other = FaultInjector(spec, seed=43)
    assert [(other.fires("upload-error"), other.fires("api-error")) for _ in range(40)] != runs[0]


async def _open_batch(api: Api, key: SessionKey) -> tuple[str, list[dict[str, Any]], list[bytes]]:
    archive = zip_of({f"{i}.xml": invoice(f"FA/FAULT/{i}") for i in range(2)})
    parts = split_encrypt(key, archive, 2)
    status, opened, _ = await api.call(
        "POST", "/sessions/batch", json=batch_request(await api.encryption(key), archive, parts)
    )
    assert status == 201
    return opened["referenceNumber"], opened["partUploadRequests"], parts


@pytest.mark.ksef_simulator(faults="close-error=1:1")
async def test_close_error_once_takes_effect_then_answers_500(api: Api, ksef_simulator: KsefSimulator) -> None:
    await api.login()
    key = SessionKey.generate()
    session = await api.open_online(key)
    await api.send(session, key, invoice("FA/CLOSE/1"))
    status, _, _ = await api.call("POST", f"/sessions/online/{session}/close")
    assert status == 500
    assert (await api.wait_session(session))["status"]["code"] == 200  # the close took effect
    status, _, _ = await api.call("POST", f"/sessions/online/{session}/close")
    assert status == 400  # 21180: already closed, and the fault fired only once
    assert ksef_simulator.counters.faults["close-error"] == 1


@pytest.mark.ksef_simulator(faults="upload-error=1")
async def test_upload_error_stores_nothing(api: Api, ksef_simulator: KsefSimulator) -> None:
    await api.login()
    ref, uploads, parts = await _open_batch(api, SessionKey.generate())
    async with api.http.put(uploads[0]["url"], data=parts[0], headers=uploads[0]["headers"]) as resp:
        assert resp.status in (500, 503)
    assert ksef_simulator.state.sessions[ref].parts[1].path is None
    assert ksef_simulator.counters.faults["upload-error"] == 1


async def _raw_put(url: str, body: bytes, headers: dict[str, str]) -> bytes:
    """Send a PUT over a raw connection; return whatever comes back before the connection ends."""
    parsed = urllib.parse.urlsplit(url)
    reader, writer = await asyncio.open_connection(parsed.hostname, parsed.port)
    head = [
        f"PUT {parsed.path}?{parsed.query} HTTP/1.1",
        f"Host: {parsed.netloc}",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    head += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    try:
        await writer.drain()
        return await reader.read()
    except ConnectionError:
        return b""
    finally:
        writer.close()


@pytest.mark.ksef_simulator(faults="upload-reset=1:1")
async def test_upload_reset_drops_the_connection_once(api: Api, ksef_simulator: KsefSimulator) -> None:
    await api.login()
    key = SessionKey.generate()
    ref, uploads, parts = await _open_batch(api, key)
    # A raw socket: aiohttp's client would transparently retry the idempotent PUT once after the reset.
    answer = await _raw_put(str(uploads[0]["url"]), parts[0], {"x-ms-blob-type": "BlockBlob"})
    assert not answer.startswith(b"HTTP/"), answer[:100]
    assert ksef_simulator.state.sessions[ref].parts[1].path is None
    for upload, data in zip(uploads, parts, strict=True):
        async with api.http.put(upload["url"], data=data, headers=upload["headers"]) as resp:
            assert resp.status == 201
    status, _, _ = await api.call("POST", f"/sessions/batch/{ref}/close")
    assert status == 204
    assert (await api.wait_session(ref))["status"]["code"] == 200


@pytest.mark.ksef_simulator(faults="upload-delay=0.3")
async def test_upload_delay(api: Api) -> None:
    await api.login()
    _, uploads, parts = await _open_batch(api, SessionKey.generate())
    started = time.monotonic()
    async with api.http.put(uploads[0]["url"], data=parts[0], headers=uploads[0]["headers"]) as resp:
        assert resp.status == 201
    assert time.monotonic() - started >= 0.3


@pytest.mark.ksef_simulator(faults="api-error=1:1")
async def test_api_error_answers_503_before_taking_effect(api: Api, ksef_simulator: KsefSimulator) -> None:
    status, _, _ = await api.call("POST", "/auth/challenge")
    assert status == 503
    assert not ksef_simulator.state.challenges
    await api.login()
    assert ksef_simulator.counters.faults["api-error"] == 1


async def test_a_client_aborting_an_upload_leaves_nothing_behind(api: Api, ksef_simulator: KsefSimulator) -> None:
    await api.login()
    key = SessionKey.generate()
    archive = zip_of({"0.xml": invoice("FA/ABORT/0")})
    declared = [b"\0" * 2_000_000]  # only its size and hash are declared; half of it is sent, then the socket closes
    status, opened, _ = await api.call(
        "POST", "/sessions/batch", json=batch_request(await api.encryption(key), archive, declared)
    )
    assert status == 201
    parsed = urllib.parse.urlsplit(str(opened["partUploadRequests"][0]["url"]))
    _, writer = await asyncio.open_connection(parsed.hostname, parsed.port)
    head = f"PUT {parsed.path}?{parsed.query} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(declared[0])}\r\n"
    writer.write(f"{head}x-ms-blob-type: BlockBlob\r\n\r\n".encode() + declared[0][:1_000_000])
    await writer.drain()
    spool = ksef_simulator.runtime.spool_dir
    for _ in range(100):  # wait until the server has spooled part of the body
        if any(spool.iterdir()):
            break
        await asyncio.sleep(0.01)
    assert any(spool.iterdir())
    writer.close()
    await writer.wait_closed()
    for _ in range(100):  # the server notices the disconnect asynchronously
        if not any(spool.iterdir()):
            break
        await asyncio.sleep(0.02)
    assert not any(spool.iterdir())
    assert ksef_simulator.state.sessions[opened["referenceNumber"]].parts[1].path is None
    assert ksef_simulator.internal_errors == []
