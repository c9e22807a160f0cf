"""``X-System-Warning`` end to end over loopback: simulator -> transport -> log, counter, callback, reports."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ksef_async import KsefClient, KsefTokenCredentials, send_batch
from ksef_async.batch.engine import SendConfig
from ksef_async.client import ClientConfig, Environment
from ksef_async.core.polling import Backoff
from ksef_async.core.system_warnings import SystemWarning
from ksef_async.errors import BadRequestError, ConfigurationError
from ksef_async.testing.invoices import InvoiceFactory
from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN
from ksef_async.testing.simulator import KsefSimulator, SimConfig
from ksef_async.transport import KsefSystemWarning

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::ksef_async.transport.KsefSystemWarning")]

QUICK = Backoff(initial=0.01, maximum=0.05)
FAST_BATCH = SendConfig(part_backoff=QUICK, open_backoff=QUICK, status_backoff=QUICK, process_timeout=60.0)


def client_for(sim: KsefSimulator, **config: Any) -> KsefClient:
    return KsefClient(
        sim.base_url,
        credentials=KsefTokenCredentials(DEFAULT_TOKEN),
        context=DEFAULT_NIP,
        config=ClientConfig(auth_poll_backoff=QUICK, **config),
    )


def warning_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("KSeF system warning")]


async def test_a_simulator_warning_reaches_the_callback_the_log_once_and_the_counter(
    sim: KsefSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    sim.config.system_warning = "[W1]: planned maintenance | [W2]: zażółć gęślą"
    seen: list[SystemWarning] = []
    caplog.set_level(logging.WARNING, logger="ksef_async")
    with warnings.catch_warnings(record=True) as python_warnings:
        warnings.simplefilter("always", KsefSystemWarning)
        async with client_for(sim, on_system_warning=seen.append) as client:
            for _ in range(3):
                await client.limits.context()
            sim.config.system_warning = "[W3]: another text"
            await client.limits.context()
            await client.limits.context()
    calls = sim.counters.system_warnings
    assert calls >= 7  # challenge, ksef-token, status, redeem, rate-limits, 5 x limits...
    counted = client.system_warnings
    assert counted.responses == calls
    assert counted.total == len(seen)
    assert counted.by_code["W3"] == 2
    assert counted.by_code["W1"] == counted.by_code["W2"] == calls - 2
    first = seen[0]
    assert (first.code, first.message) == ("W1", "planned maintenance")
    assert (seen[1].code, seen[1].message) == ("W2", "zazolc gesla")  # ASCII-folded, as KSeF does
    assert first.raw == "[W1]: planned maintenance | [W2]: zazolc gesla"
    assert first.operation == "get_security_public_key_certificates"  # the login starts with the MF keys
    assert first.method == "GET"
    assert seen[-1].operation == "get_limits_context"
    assert seen[-1].time.tzinfo is not None
    # Logged once per distinct text, with the operation, however often it repeats.
    records = warning_records(caplog)
    assert [r.getMessage() for r in records] == [
        "KSeF system warning: [W1]: planned maintenance | [W2]: zazolc gesla",
        "KSeF system warning: [W3]: another text",
    ]
    assert records[0].ksef_operation == "get_security_public_key_certificates"  # type: ignore[attr-defined]
    assert records[0].ksef_method == "GET"  # type: ignore[attr-defined]
    assert records[0].ksef_codes == ["W1", "W2"]  # type: ignore[attr-defined]
    assert [str(w.message) for w in python_warnings] == [
        "get_security_public_key_certificates: [W1]: planned maintenance | [W2]: zazolc gesla",
        "get_limits_context: [W3]: another text",
    ]
    assert all(DEFAULT_TOKEN not in r.getMessage() for r in caplog.records)


async def test_warnings_on_error_answers_are_surfaced_too(sim: KsefSimulator) -> None:
    sim.config.system_warning = "[E1]: on every answer"
    seen: list[SystemWarning] = []
    async with client_for(sim, on_system_warning=seen.append) as client:
        await client.login()
        before = len(seen)
        with pytest.raises(BadRequestError):
            await client.auth.revoke("20261020-AU-0000000000-0000000000-00")
    assert len(seen) == before + 1
    assert seen[-1].operation == "delete_auth_sessions_by_reference_number"
    assert seen[-1].code == "E1"


async def test_a_failing_callback_never_fails_the_call(sim: KsefSimulator, caplog: pytest.LogCaptureFixture) -> None:
    sim.config.system_warning = "[W]: x"

    def broken(_warning: SystemWarning) -> None:
        raise RuntimeError("application bug")

    caplog.set_level(logging.WARNING, logger="ksef_async")
    async with client_for(sim, on_system_warning=broken) as client:
        limits = await client.limits.context()
    assert limits.online_session.max_invoices > 0
    assert any(r.getMessage() == "the on_system_warning callback raised" for r in caplog.records)


async def test_test_system_warning_is_sent_and_echoed_on_success_only(sim: KsefSimulator) -> None:
    seen: list[SystemWarning] = []
    async with client_for(sim, test_system_warning="[test]: synthetic warning", on_system_warning=seen.append) as c:
        await c.limits.context()
        with pytest.raises(BadRequestError):
            await c.auth.revoke("20261020-AU-0000000000-0000000000-00")
    assert seen
    assert {(w.code, w.message) for w in seen} == {("test", "synthetic warning")}
    assert "delete_auth_sessions_by_reference_number" not in {w.operation for w in seen}  # 400: no echo
    assert c.system_warnings.responses == len(seen) == sim.counters.system_warnings


async def test_the_simulator_echo_and_its_own_warning_combine(sim: KsefSimulator) -> None:
    sim.config.system_warning = "[sim]: configured"
    url = sim.base_url + "/security/public-key-certificates"
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers={"X-Test-System-Warning": "[t]: Łódź"}) as resp:
            assert resp.status == 200
            assert resp.headers.getall("X-System-Warning") == ["[sim]: configured | [t]: Lodz"]
        sim.config.system_warning = None
        async with http.get(url) as resp:
            assert "X-System-Warning" not in resp.headers
        async with http.get(url, headers={"X-Test-System-Warning": "[t]: echo"}) as resp:
            assert resp.headers["X-System-Warning"] == "[t]: echo"


@pytest.mark.parametrize(
    "base_url",
    ["https://api-test.ksef.mf.gov.pl/v2", "http://127.0.0.1:8090/v2", "http://[::1]:1/v2", "http://localhost:9/v2"],
)
def test_test_system_warning_is_allowed_on_test_and_loopback(base_url: str) -> None:
    client = KsefClient(base_url, config=ClientConfig(test_system_warning="[test]: x"))
    assert client.config.test_system_warning == "[test]: x"


@pytest.mark.parametrize(
    "base_url", [Environment.PROD, Environment.DEMO, "https://ksef.example.com/v2", "http://10.0.0.5:8090/v2"]
)
def test_test_system_warning_is_refused_elsewhere(base_url: Environment | str) -> None:
    with pytest.raises(ConfigurationError, match="test_system_warning"):
        KsefClient(base_url, config=ClientConfig(test_system_warning="[test]: x", allow_insecure_http=True))


@pytest.mark.parametrize("text", ["", "line\r\nX-Evil: 1", "zażółć"])
def test_bad_test_system_warning_texts_are_refused_by_the_config(text: str) -> None:
    with pytest.raises(ConfigurationError, match=r"ClientConfig\.test_system_warning"):
        ClientConfig(test_system_warning=text)


def test_the_callback_must_be_callable() -> None:
    with pytest.raises(ConfigurationError, match="on_system_warning"):
        ClientConfig(on_system_warning="print")  # type: ignore[arg-type]


async def test_the_batch_report_lists_the_warnings_of_the_run(
    ksef_simulator_factory: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sim: KsefSimulator = await ksef_simulator_factory(
        contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)], seed=3, rate_limits="off", config=SimConfig()
    )
    invoices = list(InvoiceFactory(DEFAULT_NIP, seed=5).iter(6))
    caplog.set_level(logging.WARNING, logger="ksef_async")
    async with client_for(sim) as client:
        await client.login()
        sim.config.system_warning = "[B1]: batch notice"
        report = await send_batch(client, invoices, state_dir=tmp_path / "state", config=FAST_BATCH)
    assert report.all_accepted
    (tally,) = report.system_warnings
    assert (tally.code, tally.message) == ("B1", "batch notice")
    assert tally.count == report.system_warning_count == sim.counters.system_warnings
    assert tally.count >= 5  # limits, open, close, status, results at least
    assert tally.first.operation == "get_limits_context"  # the engine reads the context limits first
    summary = report.to_json()["systemWarnings"]
    assert summary["count"] == tally.count
    assert summary["distinct"][0]["code"] == "B1"
    assert len(warning_records(caplog)) == 1
