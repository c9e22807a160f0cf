"""Archive bombs, parts that never end, endless pages, endless Retry-After, trickled and huge bodies, echoed tokens."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import os
import sys
import tarfile
import time
import tracemalloc
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from ksef_async.client import KsefClient
from ksef_async.core.crypto import SessionKey, encrypt_cbc, sha256_b64
from ksef_async.errors import BadRequestError, IntegrityError, ProtocolError, TransportError
from ksef_async.models import InvoiceExportStatusResponse, InvoiceQueryDateRange, InvoiceQueryFilters
from ksef_async.models.converter import structure
from ksef_async.operations import RATE_LIMIT_GROUPS
from ksef_async.ratelimit import RateLimiter
from ksef_async.retrieval.export import download_package
from ksef_async.retrieval.query import iter_metadata
from ksef_async.retrieval.sync import sync_invoices
from ksef_async.testing.simulator import KsefSimulator

from .conftest import NIP, TOKEN, fast_config
from .server import (
    HostileServer,
    big_json,
    echo_bearer,
    endless_bytes,
    endless_has_more,
    endless_token,
    retry_after,
    serve_bytes,
    trickle,
)

NUMBER = "5265877635-20250626-010080DD2B5E-26"
REFERENCE = "20250626-EH-0000000000-0000000000-00"
MEMBER_SIZE = 96 * 1024 * 1024
"""The bomb's member: far above the 10 MB an invoice may have, small enough to build quickly."""


async def _drain(items: AsyncIterator[Any]) -> int:
    return len([item async for item in items])


def metadata(xml_hash: str, **extra: Any) -> bytes:
    entry = {
        "ksefNumber": NUMBER,
        "invoiceNumber": "FV/1",
        "issueDate": "2025-06-26",
        "invoicingDate": "2025-06-26T10:00:00+00:00",
        "acquisitionDate": "2025-06-26T10:00:01+00:00",
        "permanentStorageDate": "2025-06-26T10:10:00+00:00",
        "seller": {"nip": "5265877635"},
        "buyer": {"identifier": {"type": "Nip", "value": NIP}},
        "netAmount": 1,
        "grossAmount": 1,
        "vatAmount": 0,
        "currency": "PLN",
        "invoicingMode": "Online",
        "invoiceType": "Vat",
        "formCode": {"systemCode": "FA (3)", "schemaVersion": "1-0E", "value": "FA"},
        "isSelfInvoicing": False,
        "hasAttachment": False,
        "invoiceHash": xml_hash,
        **extra,
    }
    return json.dumps({"invoices": [entry]}).encode()


def zip_bomb(member: str, size: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        if member != "_metadata.json":
            archive.writestr("_metadata.json", metadata(sha256_b64(b"")))
        with archive.open(member, "w", force_zip64=True) as fh:
            zeros = b" " * (1 << 20)
            for _ in range(size // len(zeros)):
                fh.write(zeros)
    return out.getvalue()


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = b" " * n
        self.left -= n
        return n


def tar_bomb(member: str, size: int) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", compresslevel=1) as archive:
        if member != "_metadata.json":
            data = metadata(sha256_b64(b""))
            info = tarfile.TarInfo("_metadata.json")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo(member)
        info.size = size
        archive.addfile(info, _Zeros(size))
    return out.getvalue()


def export_status(
    url: str, plain: bytes, cipher: bytes, *, declared: int | None = None, compression: str = "Zip"
) -> InvoiceExportStatusResponse:
    part = {
        "ordinalNumber": 1,
        "partName": "part-1.zip.aes",
        "method": "GET",
        "url": url,
        "partSize": len(plain),
        "partHash": sha256_b64(plain),
        "encryptedPartSize": len(cipher) if declared is None else declared,
        "encryptedPartHash": sha256_b64(cipher),
        "expirationDate": "2099-01-01T00:00:00+00:00",
    }
    body = {
        "status": {"code": 200, "description": "ok"},
        "completedDate": "2025-06-26T10:00:00+00:00",
        "package": {
            "invoiceCount": 1,
            "size": len(plain),
            "parts": [part],
            "isTruncated": False,
            "compressionType": compression,
        },
    }
    return structure(body, InvoiceExportStatusResponse)


@pytest.mark.anyio
@pytest.mark.parametrize("compression", ["Zip", "TarGz"])
@pytest.mark.parametrize("member", [f"{NUMBER}.xml", "_metadata.json"])
async def test_an_archive_bomb_is_refused_with_bounded_memory(
    hostile: HostileServer, client: KsefClient, tmp_path: Path, compression: str, member: str
) -> None:
    plain = (zip_bomb if compression == "Zip" else tar_bomb)(member, MEMBER_SIZE)
    assert len(plain) < MEMBER_SIZE // 100
    key = SessionKey.generate()
    cipher = encrypt_cbc(key, plain)
    hostile.on("GET", r"^/storage/bomb$", serve_bytes(cipher))
    status = export_status(hostile.root + "/storage/bomb", plain, cipher, compression=compression)
    package = await download_package(
        client.retrieval, REFERENCE, status, key, compression=compression, workdir=tmp_path
    )
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError, match="larger than") as caught:
            await _drain(package.invoices())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        package.close()
    assert member in str(caught.value)
    assert peak < 40 * 1024 * 1024, f"peak {peak / 2**20:.0f} MiB while refusing a {MEMBER_SIZE >> 20} MiB member"


@pytest.mark.anyio
async def test_a_part_that_never_ends_is_cut_at_its_declared_size(
    hostile: HostileServer, client: KsefClient, tmp_path: Path
) -> None:
    sent = [0]
    hostile.on("GET", r"^/storage/endless$", endless_bytes(sent))
    key = SessionKey.generate()
    plain = zip_bomb(f"{NUMBER}.xml", 1 << 20)
    cipher = encrypt_cbc(key, plain)
    status = export_status(hostile.root + "/storage/endless", plain, cipher)
    started = time.monotonic()
    with pytest.raises(IntegrityError, match="more than encryptedPartSize"):
        await asyncio.wait_for(download_package(client.retrieval, REFERENCE, status, key, workdir=tmp_path), 60)
    assert time.monotonic() - started < 30
    assert await asyncio.to_thread(lambda: list(tmp_path.iterdir())) == []  # the spool is gone
    assert hostile.hits[r"^/storage/endless$"] == 3  # three attempts, each cut short


@pytest.mark.anyio
async def test_an_absurd_declared_part_size_is_refused_before_downloading(
    hostile: HostileServer, client: KsefClient, tmp_path: Path
) -> None:
    key = SessionKey.generate()
    status = export_status(hostile.root + "/storage/never", b"x", b"y" * 16, declared=1 << 50)
    with pytest.raises(ProtocolError, match="encryptedPartSize"):
        await download_package(client.retrieval, REFERENCE, status, key, workdir=tmp_path)
    assert hostile.hits == {}
    # The failed download left this task as it was (Python 3.11's TaskGroup left it "cancelling": anyio < 4.7 hung).
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


@pytest.mark.anyio
async def test_a_repeated_continuation_token_stops_paging(hostile: HostileServer, client: KsefClient) -> None:
    item = {
        "referenceNumber": REFERENCE,
        "startDate": "2025-06-26T10:00:00+00:00",
        "authenticationMethod": "Token",
        "authenticationMethodInfo": {"category": "Token", "code": "token.ksef", "displayName": "Token KSeF"},
        "status": {"code": 200, "description": "ok"},
        "isTokenRedeemed": True,
    }
    hostile.on("GET", r"/auth/sessions$", endless_token("items", item))

    async def drain() -> int:
        return len([item async for item in client.auth.sessions()])

    with pytest.raises(ProtocolError, match="repeated a continuationToken"):
        await asyncio.wait_for(drain(), 10)
    assert hostile.hits[r"/auth/sessions$"] == 2


@pytest.mark.anyio
async def test_has_more_with_empty_pages_stops_paging(hostile: HostileServer, client: KsefClient) -> None:
    hostile.on("GET", r"/peppol/query$", endless_has_more({"peppolProviders": []}))
    with pytest.raises(ProtocolError, match="empty page says hasMore"):
        await asyncio.wait_for(_drain(client.peppol.providers()), 10)
    hostile.on("POST", r"/invoices/query/metadata$", endless_has_more({"invoices": [], "isTruncated": False}))
    now = dt.datetime.now(dt.UTC)
    filters = InvoiceQueryFilters(
        subject_type="Subject2",
        date_range=InvoiceQueryDateRange(date_type="Invoicing", from_=now - dt.timedelta(days=2), to=now),
    )
    with pytest.raises(ProtocolError, match="empty page says hasMore"):
        await asyncio.wait_for(_drain(iter_metadata(client.retrieval, filters)), 10)
    assert hostile.hits[r"/invoices/query/metadata$"] == 1


@pytest.mark.anyio
async def test_an_endless_retry_after_is_refused_without_stalling_the_limiter(
    hostile: HostileServer, sim: KsefSimulator
) -> None:
    hostile.on("GET", r"/security/public-key-certificates$", retry_after("1e300"))
    limiter = RateLimiter(RATE_LIMIT_GROUPS)
    async with KsefClient(hostile.base_url, limiter=limiter, config=fast_config()) as client:
        started = time.monotonic()
        with pytest.raises(ProtocolError, match="Retry-After 1e\\+300"):
            await asyncio.wait_for(client.security.public_key_certificates(), 10)
        # Nothing paused: the other clients of this limiter (and this one) go on at once.
        hostile.tricks.clear()
        await asyncio.wait_for(client.security.public_key_certificates(), 10)
        assert time.monotonic() - started < 5
    assert hostile.hits[r"/security/public-key-certificates$"] == 1


@pytest.mark.anyio
async def test_sync_gives_up_after_a_bounded_number_of_21182_answers(
    hostile: HostileServer, client: KsefClient, tmp_path: Path
) -> None:
    body = {"exception": {"exceptionDetailList": [{"exceptionCode": 21182, "exceptionDescription": "busy"}]}}

    async def busy(_request: Any) -> Any:
        return web.json_response(body, status=400)

    hostile.on("POST", r"/invoices/exports$", busy)
    with pytest.raises(ProtocolError, match="21182"):
        await sync_invoices(
            client.retrieval,
            tmp_path,
            since=dt.datetime.now(dt.UTC) - dt.timedelta(days=3),
            busy_wait=0.0,
            busy_retries=3,
            fsync=False,
        )
    assert hostile.hits[r"/invoices/exports$"] == 4


@pytest.mark.anyio
async def test_a_trickled_body_is_cut_at_the_total_deadline(hostile: HostileServer) -> None:
    hostile.on("GET", r"/security/public-key-certificates$", trickle(0.1))
    config = fast_config(api_total_timeout=1.0, api_read_timeout=0.5)
    async with KsefClient(hostile.base_url, limiter=RateLimiter(RATE_LIMIT_GROUPS), config=config) as client:
        started = time.monotonic()
        with pytest.raises(TransportError, match="timeout"):
            await client.security.public_key_certificates()
        assert time.monotonic() - started < 3


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "announce"), [(200, False), (200, True), (400, False)])
async def test_an_oversized_api_body_is_refused(hostile: HostileServer, status: int, announce: bool) -> None:
    hostile.on("GET", r"/security/public-key-certificates$", big_json(100 << 20, status=status, announce=announce))
    async with KsefClient(hostile.base_url, limiter=RateLimiter(RATE_LIMIT_GROUPS), config=fast_config()) as client:
        tracemalloc.start()
        try:
            with pytest.raises(ProtocolError, match=r"larger than|announced"):
                await client.security.public_key_certificates()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 48 * 1024 * 1024


@pytest.mark.anyio
async def test_a_bearer_token_echoed_in_an_error_body_is_redacted(hostile: HostileServer, client: KsefClient) -> None:
    seen: list[str] = []
    echo = echo_bearer()

    async def recording(request: Any) -> Any:
        seen.append(request.headers["Authorization"].split()[-1])
        return await echo(request)

    hostile.on("GET", r"/limits/context$", recording)
    with pytest.raises(BadRequestError) as caught:
        await client.limits.context()
    [token] = seen
    text = str(caught.value)
    assert token[:20] not in text, text
    assert "Authorization: Bearer <redacted>" in text
    assert all(token not in d.description for d in caught.value.errors)


@pytest.mark.anyio
async def test_the_cli_never_prints_an_echoed_token(sim: KsefSimulator, hostile: HostileServer, tmp_path: Path) -> None:
    seen: list[str] = []
    echo = echo_bearer()

    async def recording(request: Any) -> Any:
        seen.append(request.headers["Authorization"].split()[-1])
        return await echo(request)

    hostile.on("GET", r"/sessions/[^/]+$", recording)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSEF_")} | {"KSEF_TOKEN": TOKEN}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ksef_async.cli", "upo", REFERENCE, "--out", str(tmp_path), "--base-url",
        hostile.base_url, "--nip", NIP, env=env, stdout=-1, stderr=-1,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode != 0
    [token] = seen
    assert token not in out.decode() + err.decode()
    assert "<redacted>" in err.decode(), err.decode()
