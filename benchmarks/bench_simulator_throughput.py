"""Simulator throughput with request validation against the spec on, and the same simulator with it off.

Run: ``python benchmarks/bench_simulator_throughput.py [--requests 3000] [--concurrency 8] [--rounds 3]``.

One in-process simulator (rate limits off), one logged-in aiohttp client, a mix of four operations per cycle that
exercise every kind of check: ``GET /sessions`` (query parameters, an enum, date-times), ``POST
/invoices/query/metadata`` (a JSON body with nested objects and a query parameter), ``POST
/permissions/query/persons/grants`` (a JSON body) and ``GET /rate-limits`` (nothing to check). Rounds alternate
between validation on and off (``sim.runtime.request_validator = None``: the baseline, i.e. the simulator as it was
before every request was validated) so machine noise falls on both sides alike; the best round of each is reported
with the ratio. It also times ``RequestValidator.problems`` alone on the same four requests (microseconds each).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import time
from typing import Any

import aiohttp
from _machine import describe
from aiohttp.test_utils import make_mocked_request

from ksef_async.core.crypto import KEY_USAGE_TOKEN, MfPublicKey, encrypt_ksef_token, select_public_key
from ksef_async.operations import operation
from ksef_async.testing.simulator import KsefSimulator
from ksef_async.testing.simulator.request_validation import RequestValidator

NIP = "5265877635"
TOKEN = "20250101-EC-0000000000-0000000000-00|nip-5265877635|" + "0" * 64
_NOW = dt.datetime(2026, 1, 15, tzinfo=dt.UTC)
_METADATA = {
    "subjectType": "Subject1",
    "dateRange": {"dateType": "Invoicing", "from": "2026-01-01T00:00:00Z", "to": "2026-01-10T00:00:00Z"},
}
_PERSONS = {"queryType": "PermissionsInCurrentContext", "permissionTypes": ["InvoiceRead", "InvoiceWrite"]}
_MIX: list[tuple[str, str, str, dict[str, str], Any]] = [
    (
        "get_sessions",
        "GET",
        "/sessions",
        {"sessionType": "Online", "pageSize": "10", "dateCreatedFrom": "2026-01-01T00:00:00Z"},
        None,
    ),
    ("post_invoices_query_metadata", "POST", "/invoices/query/metadata", {"pageSize": "10"}, _METADATA),
    ("post_permissions_query_persons_grants", "POST", "/permissions/query/persons/grants", {}, _PERSONS),
    ("get_rate_limits", "GET", "/rate-limits", {}, None),
]


async def _login(http: aiohttp.ClientSession, base: str) -> str:
    async with http.get(f"{base}/security/public-key-certificates") as resp:
        listed = await resp.json()
    keys = [
        MfPublicKey.from_api(
            k["certificate"],
            dt.datetime.fromisoformat(k["validFrom"]),
            dt.datetime.fromisoformat(k["validTo"]),
            k["usage"],
            k["publicKeyId"],
        )
        for k in listed
    ]
    mf = select_public_key(keys, KEY_USAGE_TOKEN, dt.datetime.now(dt.UTC))
    async with http.post(f"{base}/auth/challenge") as resp:
        challenge = await resp.json()
    body = {
        "challenge": challenge["challenge"],
        "contextIdentifier": {"type": "Nip", "value": NIP},
        "encryptedToken": encrypt_ksef_token(mf.rsa_public_key(), TOKEN, challenge["timestampMs"]),
        "publicKeyId": mf.public_key_id,
    }
    async with http.post(f"{base}/auth/ksef-token", json=body) as resp:
        started = await resp.json()
    op_token = started["authenticationToken"]["token"]
    headers = {"Authorization": f"Bearer {op_token}"}
    for _ in range(100):
        async with http.get(f"{base}/auth/{started['referenceNumber']}", headers=headers) as resp:
            if (await resp.json())["status"]["code"] == 200:
                break
        await asyncio.sleep(0.01)
    async with http.post(f"{base}/auth/token/redeem", headers=headers) as resp:
        return str((await resp.json())["accessToken"]["token"])


async def _round(http: aiohttp.ClientSession, base: str, access: str, requests: int, concurrency: int) -> float:
    headers = {"Authorization": f"Bearer {access}"}
    per_worker = requests // concurrency

    async def worker(offset: int) -> None:
        for i in range(per_worker):
            _, method, path, query, body = _MIX[(i + offset) % len(_MIX)]
            async with http.request(method, base + path, params=query, json=body, headers=headers) as resp:
                await resp.read()
                if resp.status != 200:
                    sys.exit(f"{method} {path} -> {resp.status}: {await resp.text()}")

    start = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return per_worker * concurrency / (time.perf_counter() - start)


def _validator_micro(repeat: int = 2000) -> dict[str, float]:
    validator = RequestValidator()
    out = {}
    for op_id, method, path, query, body in _MIX:
        op = operation(op_id)
        url = path + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")
        request = make_mocked_request(method, "/v2" + url)
        content_type = "application/json" if body is not None else None
        assert validator.problems(op, request, content_type, body) == [], op_id
        start = time.perf_counter()
        for _ in range(repeat):
            validator.problems(op, request, content_type, body)
        out[op_id] = (time.perf_counter() - start) / repeat * 1e6
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(describe(f"aiohttp {aiohttp.__version__}"))
    start = time.perf_counter()
    RequestValidator()
    print(f"compile the spec's request rules: {(time.perf_counter() - start) * 1000:.1f} ms (once per start)")
    for op_id, micros in _validator_micro().items():
        print(f"  validate {op_id:<40} {micros:7.1f} us")
    async with KsefSimulator([(NIP, TOKEN)], rate_limits="off") as sim, aiohttp.ClientSession() as http:
        access = await _login(http, sim.base_url)
        validator = sim.runtime.request_validator
        await _round(http, sim.base_url, access, 400, args.concurrency)  # warm-up
        best = {"validated": 0.0, "baseline": 0.0}
        for n in range(args.rounds * 2):
            side = "validated" if n % 2 == 0 else "baseline"
            sim.runtime.request_validator = validator if side == "validated" else None
            rate = await _round(http, sim.base_url, access, args.requests, args.concurrency)
            best[side] = max(best[side], rate)
            print(f"round {n + 1}: {side:<9} {rate:8.0f} requests/s")
    ratio = best["validated"] / best["baseline"]
    print(
        f"best: validated {best['validated']:.0f} requests/s, baseline (no validation) {best['baseline']:.0f} "
        f"requests/s, ratio {ratio:.2f} ({'within' if ratio >= 0.8 else 'OUTSIDE'} the 20% budget)"
    )


if __name__ == "__main__":
    asyncio.run(main())
