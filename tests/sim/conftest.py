"""Helpers for the simulator tests: a bare aiohttp API client, the KSeF-token login and session helpers.

They use only aiohttp and `ksef_async.core.crypto` (never our client), so a mistake shared by the client and the
simulator cannot hide.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import re
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from ksef_async.core.crypto import (
    KEY_USAGE_SYMMETRIC,
    KEY_USAGE_TOKEN,
    MfPublicKey,
    SessionKey,
    b64,
    encrypt_cbc,
    encrypt_ksef_token,
    select_public_key,
    sha256_b64,
)
from ksef_async.testing.invoices import InvoiceFactory
from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN
from ksef_async.testing.simulator import KsefSimulator

SAMPLES = Path(__file__).parent.parent / "data" / "samples" / "invoices"
SAMPLE = SAMPLES / "fa3-invoice-sample.xml"
FA3 = {"systemCode": "FA (3)", "schemaVersion": "1-0E", "value": "FA"}
NIP = DEFAULT_NIP
TOKEN = DEFAULT_TOKEN
FINAL = frozenset({200, 405, 415, 420, 430, 435, 440, 445, 500})


def invoice(number: str, *, nip: str = NIP, padding: int = 0) -> bytes:
    """The official FA(3) sample with its own P_2 (and optionally a longer description to change its size)."""
    data = SAMPLE.read_bytes()
    data = re.sub(rb"<P_2>[^<]*</P_2>", b"<P_2>" + number.encode() + b"</P_2>", data, count=1)
    data = data.replace(b"<NIP>5265877635</NIP>", b"<NIP>" + nip.encode() + b"</NIP>", 1)
    if padding:
        data = data.replace(b"</Faktura>", b"<!--" + b"x" * padding + b"--></Faktura>")
    return data


class Api:
    """A bare JSON client for the simulator's API (aiohttp only)."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str) -> None:
        self.http = http
        self.base = base_url
        self.token: str | None = None

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        params: Any = None,
    ) -> tuple[int, Any, CIMultiDictProxy[str]]:
        hdrs = dict(headers or {})
        bearer = token if token is not None else self.token
        if bearer:
            hdrs["Authorization"] = f"Bearer {bearer}"
        async with self.http.request(
            method, self.base + path, json=json, data=data, headers=hdrs, params=params
        ) as resp:
            raw = await resp.read()
            body: Any = raw
            if resp.content_type.endswith("json") and raw:
                body = await resp.json(content_type=None)
            return resp.status, body, resp.headers

    async def keys(self) -> dict[str, MfPublicKey]:
        status, body, _ = await self.call("GET", "/security/public-key-certificates")
        assert status == 200
        keys = [
            MfPublicKey.from_api(
                k["certificate"],
                dt.datetime.fromisoformat(k["validFrom"]),
                dt.datetime.fromisoformat(k["validTo"]),
                k["usage"],
                k["publicKeyId"],
            )
            for k in body
        ]
        now = dt.datetime.now(dt.UTC)
        return {usage: select_public_key(keys, usage, now) for usage in (KEY_USAGE_TOKEN, KEY_USAGE_SYMMETRIC)}

    async def start_token_auth(self, nip: str, token: str) -> tuple[str, str]:
        """Challenge + ``POST /auth/ksef-token``; return (reference number, authentication token)."""
        keys = await self.keys()
        status, ch, _ = await self.call("POST", "/auth/challenge")
        assert status == 200, ch
        mf = keys[KEY_USAGE_TOKEN]
        body = {
            "challenge": ch["challenge"],
            "contextIdentifier": {"type": "Nip", "value": nip},
            "encryptedToken": encrypt_ksef_token(mf.rsa_public_key(), token, ch["timestampMs"]),
            "publicKeyId": mf.public_key_id,
        }
        status, init, _ = await self.call("POST", "/auth/ksef-token", json=body, token="")
        assert status == 202, init
        return init["referenceNumber"], init["authenticationToken"]["token"]

    async def login(self, nip: str = NIP, token: str = TOKEN) -> dict[str, Any]:
        """The whole KSeF-token flow; sets ``self.token`` to the access token and returns the redeem body."""
        ref, op_token = await self.start_token_auth(nip, token)
        for _ in range(50):
            status, st, _ = await self.call("GET", f"/auth/{ref}", token=op_token)
            assert status == 200, st
            if st["status"]["code"] != 100:
                break
            await asyncio.sleep(0.05)
        assert st["status"]["code"] == 200, st
        status, tokens, _ = await self.call("POST", "/auth/token/redeem", token=op_token)
        assert status == 200, tokens
        self.token = tokens["accessToken"]["token"]
        return dict(tokens)

    async def encryption(self, key: SessionKey) -> dict[str, str]:
        mf = (await self.keys())[KEY_USAGE_SYMMETRIC]
        return {
            "encryptedSymmetricKey": b64(key.wrap(mf.rsa_public_key())),
            "initializationVector": b64(key.iv),
            "publicKeyId": mf.public_key_id or "",
        }

    async def open_online(self, key: SessionKey) -> str:
        status, body, _ = await self.call(
            "POST", "/sessions/online", json={"formCode": FA3, "encryption": await self.encryption(key)}
        )
        assert status == 201, body
        return str(body["referenceNumber"])

    async def send(self, session: str, key: SessionKey, xml: bytes, **overrides: Any) -> tuple[int, Any]:
        encrypted = encrypt_cbc(key, xml)
        body = {
            "invoiceHash": sha256_b64(xml),
            "invoiceSize": len(xml),
            "encryptedInvoiceHash": sha256_b64(encrypted),
            "encryptedInvoiceSize": len(encrypted),
            "encryptedInvoiceContent": b64(encrypted),
        } | overrides
        status, resp, _ = await self.call("POST", f"/sessions/online/{session}/invoices", json=body)
        return status, resp

    async def session_status(self, session: str) -> dict[str, Any]:
        status, body, _ = await self.call("GET", f"/sessions/{session}")
        assert status == 200, body
        return dict(body)

    async def wait_session(self, session: str, done: frozenset[int] = FINAL) -> dict[str, Any]:
        """Poll ``GET /sessions/{ref}`` (5/s, honouring 429 Retry-After) until a status in ``done``."""
        body: Any = None
        for _ in range(300):
            status, body, headers = await self.call("GET", f"/sessions/{session}")
            if status == 429:
                await asyncio.sleep(float(headers["Retry-After"]))
                continue
            assert status == 200, body
            if body["status"]["code"] in done:
                return dict(body)
            await asyncio.sleep(0.2)
        raise AssertionError(f"session {session} did not finish: {body}")


def zip_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buf.getvalue()


def split_encrypt(key: SessionKey, archive: bytes, parts: int) -> list[bytes]:
    """Split the plaintext archive binary-wise into ``parts``, encrypt each on its own (``sesja-wsadowa.md``)."""
    size = -(-len(archive) // parts)
    return [encrypt_cbc(key, archive[i * size : (i + 1) * size]) for i in range(parts)]


def batch_request(
    key_encryption: dict[str, str], archive: bytes, encrypted_parts: list[bytes], **batch: Any
) -> dict[str, Any]:
    return {
        "formCode": FA3,
        "batchFile": {
            "fileSize": len(archive),
            "fileHash": sha256_b64(archive),
            "fileParts": [
                {"ordinalNumber": i + 1, "fileSize": len(p), "fileHash": sha256_b64(p)}
                for i, p in enumerate(encrypted_parts)
            ],
        }
        | batch,
        "encryption": key_encryption,
    }


@pytest.fixture
async def api(ksef_simulator: KsefSimulator) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(http, ksef_simulator.base_url)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def factory() -> InvoiceFactory:
    """Distinct, XSD-valid FA(3) invoices of the seeded context's NIP."""
    return InvoiceFactory(NIP, seed=7)
