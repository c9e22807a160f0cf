"""The example web service (examples/aiohttp_service) against the simulator over loopback sockets."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ksef_async.auth import KsefTokenCredentials
from ksef_async.batch.prepare import prepare_batch
from ksef_async.client import KsefClient
from ksef_async.core.crypto import KEY_USAGE_SYMMETRIC
from ksef_async.testing.invoices import InvoiceFactory
from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN, ksef_simulator_factory
from ksef_async.testing.simulator import KsefSimulator

__all__ = ["ksef_simulator_factory"]

pytestmark = pytest.mark.anyio

APP_FILE = Path(__file__).resolve().parents[2] / "examples" / "aiohttp_service" / "app.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("aiohttp_service_example", APP_FILE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def wait_for_job(http: TestClient[Any, Any], job_id: str) -> dict[str, Any]:
    for _ in range(600):
        response = await http.get(f"/batches/{job_id}")
        body: dict[str, Any] = await response.json()
        if body["result"] is not None or body["error"] is not None:
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"batch job {job_id} did not finish")


async def test_the_example_service_sends_online_and_by_batch_and_resumes_jobs(
    ksef_simulator_factory: Any, tmp_path: Path
) -> None:
    sim: KsefSimulator = await ksef_simulator_factory(contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)], seed=12)
    example = load_example()
    root = tmp_path / "batches"
    root.mkdir()
    # A job left unfinished by a previous run: prepared (plan saved), nothing sent yet.
    left_over = list(InvoiceFactory(DEFAULT_NIP, seed=111).iter(3))
    async with KsefClient(sim.base_url, credentials=KsefTokenCredentials(DEFAULT_TOKEN), context=DEFAULT_NIP) as c:
        key = await c.security.public_key(KEY_USAGE_SYMMETRIC)
    await prepare_batch(left_over, public_key=key, state_dir=root / "left-over")

    settings = example.Settings(sim.base_url, DEFAULT_NIP, DEFAULT_TOKEN, root, max_wait=0.5)
    app = example.create_app(settings)
    online = [data for _, data in InvoiceFactory(DEFAULT_NIP, seed=112).iter(15)]
    files = []
    for index, (_, data) in enumerate(InvoiceFactory(DEFAULT_NIP, seed=113).iter(4)):
        path = tmp_path / f"batch-{index}.xml"
        path.write_bytes(data)
        files.append(str(path))
    async with TestClient(TestServer(app, host="127.0.0.1")) as http:
        first = [await http.post("/invoices", data=xml) for xml in online[:3]]
        bodies = [await r.json() for r in first]
        assert [r.status for r in first] == [200, 200, 200]
        assert all(b["accepted"] and b["ksef_number"] for b in bodies)

        invalid = await http.post("/invoices", data=b"<Faktura/>")
        assert invalid.status == 422

        burst = await asyncio.gather(*(http.post("/invoices", data=xml) for xml in online[3:]))
        statuses = sorted(r.status for r in burst)
        limited = [r for r in burst if r.status == 429]
        assert limited, statuses  # 15 sends in a second, 10 per 1.25 s allowed, 0.5 s of waiting tolerated
        assert all(int(r.headers["Retry-After"]) >= 1 for r in limited)
        assert (await limited[0].json())["group"] == "invoiceSend"

        health = await (await http.get("/health")).json()
        assert health["ksef_reachable"] is True
        assert health["sessions_opened"] == 1
        send_windows = {w["seconds"]: w for w in health["rate_limits"]["invoiceSend"]["windows"]}
        accepted_online = 3 + sum(1 for r in burst if r.status == 200)
        # Every send KSeF saw used a slot: the accepted ones, and on a loaded machine one the simulator's own
        # window refused with 429 (the service then answered 429 rather than wait past max_wait).
        assert send_windows[3600.0]["used"] == sim.counters.operations["post_sessions_online_invoices"]
        assert send_windows[3600.0]["used"] >= accepted_online

        resumed = await wait_for_job(http, "left-over")
        assert resumed["resumed"] is True
        assert resumed["result"] == {"all_accepted": True, "entries": 3}

        started = await http.post("/batches", json={"files": files})
        assert started.status == 202
        job = await wait_for_job(http, (await started.json())["id"])
        assert job["result"] == {"all_accepted": True, "entries": 4}
        assert job["invoices"] == 4
    # cleanup closed the online session and collected its UPO
    online_sessions = [s for s in sim.state.sessions.values() if s.kind.value == "Online"]
    assert len(online_sessions) == 1
    assert online_sessions[0].closed is not None
    assert len(sim.state.invoices) == accepted_online + 3 + 4
