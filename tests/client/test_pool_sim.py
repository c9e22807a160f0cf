"""Many contexts in one process: `ClientPool` and `send_contexts` against the simulator (20 contexts, one report)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from ksef_async.auth import Credentials
from ksef_async.client import ClientConfig
from ksef_async.core.identifiers import generate_nip
from ksef_async.core.polling import Backoff
from ksef_async.errors import ConfigurationError
from ksef_async.pool import ClientPool, ContextProgress, credentials_from_env, send_contexts
from ksef_async.testing.invoices import InvoiceFactory

pytestmark = pytest.mark.anyio

QUICK = ClientConfig(auth_poll_backoff=Backoff(initial=0.01, maximum=0.05))


def _contexts(count: int) -> list[tuple[str, str]]:
    rng = random.Random(20)
    nips: list[str] = []
    while len(nips) < count:
        nip = generate_nip(rng)
        if nip not in nips:
            nips.append(nip)
    return [(nip, f"20250101-EC-{nip}-0000000000-00|nip-{nip}|" + f"{i:02d}" * 32) for i, nip in enumerate(nips)]


@pytest.mark.slow
async def test_twenty_contexts_in_one_process_one_report_per_context_upos(ksef_simulator_factory: Any) -> None:
    contexts = _contexts(20)
    sim = await ksef_simulator_factory(contexts=contexts, seed=20)
    env = {f"KSEF_TOKEN_{nip}": token for nip, token in contexts}
    asked: list[str] = []
    provider = credentials_from_env(environ=env)

    async def credentials(context: str) -> Credentials:  # an async secrets lookup
        asked.append(context)
        return provider(context)  # type: ignore[return-value]

    jobs = {nip: list(InvoiceFactory(nip, seed=i).iter(3)) for i, (nip, _) in enumerate(contexts)}
    progress: list[ContextProgress] = []
    async with ClientPool(sim.base_url, credentials=credentials, config=QUICK) as pool:
        report = await send_contexts(pool, jobs, on_progress=progress.append)
        clients = [await pool.client(nip) for nip, _ in contexts]
        api_sessions = {id(client._transports[0]._session) for client in clients}
        per_ip = {id(client.limiter.per_ip) for client in clients}
    assert sorted(asked) == sorted(jobs)  # each context's credentials asked for once, when first needed
    assert report.all_accepted, report.to_json()
    summary = report.to_json()
    assert (summary["contexts"], summary["accepted"], summary["rejected"]) == (20, 60, 0)
    for nip in jobs:
        result = report.results[nip]
        assert len(result.accepted) == 3
        assert result.sessions[0].upo  # every context's own UPO
        assert nip in result.sessions[0].upo[0].decode()
    assert len(api_sessions) == 1  # one HTTP connection pool
    assert len(per_ip) == 1  # one per-IP limiter (global)
    assert sim.counters.rate_limited == 0
    assert [p.event for p in progress].count("finished") == 20
    assert len(sim._state.invoices) == 60


async def test_a_context_without_credentials_fails_alone(ksef_simulator_factory: Any) -> None:
    contexts = _contexts(2)
    sim = await ksef_simulator_factory(contexts=contexts, seed=21)
    known = {contexts[0][0]: contexts[0][1]}
    provider = credentials_from_env(environ={f"KSEF_TOKEN_{k}": v for k, v in known.items()})
    jobs = {nip: list(InvoiceFactory(nip, seed=1).iter(1)) for nip, _ in contexts}
    async with ClientPool(sim.base_url, credentials=provider, config=QUICK) as pool:
        report = await send_contexts(pool, jobs)
    assert list(report.results) == [contexts[0][0]]
    assert report.errors[contexts[1][0]].startswith("ConfigurationError: no KSeF token")
    assert f"KSEF_TOKEN_{contexts[1][0]}" in report.errors[contexts[1][0]]
    assert not report.all_accepted
    with pytest.raises(ConfigurationError, match="not open"):
        await ClientPool(sim.base_url, credentials={}).client(contexts[0][0])
