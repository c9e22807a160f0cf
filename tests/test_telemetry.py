"""OpenTelemetry spans and metrics of real sends against the simulator, read back with the SDK's in-memory exporters."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ksef_async import KsefClient, KsefTokenCredentials, SendConfig, _telemetry, send_batch, send_online
from ksef_async.client import ClientConfig
from ksef_async.core.polling import Backoff
from ksef_async.core.ratelimit import WindowLimits
from ksef_async.operations import API_RATE_LIMITS
from ksef_async.ratelimit import RateLimiter
from ksef_async.testing.invoices import InvoiceFactory, write_invoices
from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN

pytestmark = pytest.mark.anyio

NIP, TOKEN = DEFAULT_NIP, DEFAULT_TOKEN
QUICK = ClientConfig(auth_poll_backoff=Backoff(initial=0.01, maximum=0.05))


class Telemetry:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        _telemetry.use_providers(tracer_provider, MeterProvider(metric_readers=[self.reader]))

    def finished(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.name == name]

    def points(self, metric: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return [
            point
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == metric
            for point in m.data.data_points
        ]

    def total(self, metric: str, attributes: dict[str, Any] | None = None) -> float:
        wanted = attributes or {}
        return float(
            sum(p.value for p in self.points(metric) if all(p.attributes.get(k) == v for k, v in wanted.items()))
        )


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    telemetry = Telemetry()
    yield telemetry
    _telemetry.use_providers()


async def test_batch_send_spans_and_metrics(otel: Telemetry, ksef_simulator_factory: Any, tmp_path: Path) -> None:
    sim = await ksef_simulator_factory(contexts=[(NIP, TOKEN)], rate_limits="off", seed=41)
    write_invoices(tmp_path / "in", 12, NIP, seed=42)
    async with KsefClient(sim.base_url, credentials=KsefTokenCredentials(TOKEN), context=NIP, config=QUICK) as client:
        report = await send_batch(
            client, [tmp_path / "in"], state_dir=tmp_path / "state", config=SendConfig(part_size=10_000)
        )
    assert report.all_accepted
    reference = report.sessions[0]["referenceNumber"]

    [session] = otel.finished("KSeF batch session")
    assert session.attributes is not None
    assert session.attributes["ksef.reference_number"] == reference
    assert session.attributes["ksef.session.mode"] == "batch"
    assert session.attributes["ksef.session.status_code"] == 200
    assert [e.name for e in session.events] == ["closed", "upo"]

    [opened] = otel.finished("KSeF post_sessions_batch")
    assert opened.attributes is not None
    assert opened.attributes["ksef.reference_number"] == reference  # from the answer
    assert opened.attributes["http.response.status_code"] == 201
    assert opened.attributes["ksef.rate_limit_group"] == "batchSession"
    closes = otel.finished("KSeF post_sessions_batch_close")
    assert closes
    assert closes[0].attributes is not None
    assert closes[0].attributes["ksef.reference_number"] == reference  # from the path

    # Never a secret in any attribute.
    for span in otel.spans.get_finished_spans():
        for value in (span.attributes or {}).values():
            assert TOKEN not in str(value)
            assert "sig=" not in str(value)
            assert "Bearer" not in str(value)

    assert otel.total("ksef.invoices.sent", {"ksef.session.mode": "batch"}) == 12
    assert otel.total("ksef.invoices.accepted", {"ksef.session.mode": "batch"}) == 12
    assert otel.total("ksef.invoices.rejected") == 0
    parts = [s.name for s in otel.spans.get_finished_spans()].count("KSeF post_sessions_batch")
    assert parts == 1
    uploaded = otel.total("ksef.part.upload.bytes")
    assert uploaded >= 12 * 3000  # the invoices' ciphertext went out
    [throughput] = otel.points("ksef.part.upload.throughput")
    assert throughput.count >= 2  # part_size 10,000: several parts, one figure each
    assert throughput.min > 0
    assert [p.count for p in otel.points("ksef.session.duration")] == [1]
    assert [p.count for p in otel.points("ksef.upo.latency")] == [1]
    waits = {p.attributes["ksef.rate_limit_group"] for p in otel.points("ksef.ratelimit.wait")}
    assert {"batchSession", "sessionMisc"} <= waits


async def test_online_session_span_and_counts(otel: Telemetry, ksef_simulator_factory: Any) -> None:
    sim = await ksef_simulator_factory(contexts=[(NIP, TOKEN)], rate_limits="off", seed=43)
    async with KsefClient(sim.base_url, credentials=KsefTokenCredentials(TOKEN), context=NIP, config=QUICK) as client:
        result = await send_online(client, list(InvoiceFactory(NIP, seed=44).iter(3)))
    assert result.all_accepted
    [session] = otel.finished("KSeF online session")
    assert session.attributes is not None
    assert session.attributes["ksef.reference_number"] == result.sessions[0].reference_number
    assert session.attributes["ksef.session.status_code"] == 200
    assert otel.total("ksef.invoices.sent", {"ksef.session.mode": "online"}) == 3
    assert otel.total("ksef.invoices.accepted", {"ksef.session.mode": "online"}) == 3
    assert [p.count for p in otel.points("ksef.upo.latency")] == [1]


async def test_a_429_is_counted_and_its_retry_too(otel: Telemetry, ksef_simulator_factory: Any) -> None:
    sim = await ksef_simulator_factory(rate_limit_overrides={"global": WindowLimits(2)}, seed=45)
    limiter = RateLimiter(API_RATE_LIMITS)  # believes the spec's global limit, not the simulator's 2/s
    async with KsefClient(sim.base_url, config=QUICK, limiter=limiter) as client:
        for _ in range(3):
            await client.security.public_key_certificates()
    assert sim.counters.rate_limited == 1
    assert otel.total("ksef.ratelimit.throttled", {"ksef.rate_limit_group": "global"}) == 1
    assert otel.total("ksef.retries", {"ksef.retry.reason": "rate_limited"}) == 1
    failed = [s for s in otel.spans.get_finished_spans() if not s.status.is_ok]
    assert len(failed) == 1
    assert failed[0].attributes is not None
    assert failed[0].attributes["http.response.status_code"] == 429


def test_without_the_extra_nothing_is_imported_and_hooks_do_nothing() -> None:
    code = (
        "import sys\n"
        "for name in ('opentelemetry', 'opentelemetry.trace', 'opentelemetry.metrics'):\n"
        "    sys.modules[name] = None\n"
        "from ksef_async import _telemetry\n"
        "assert not _telemetry.ENABLED\n"
        "_telemetry.rate_limited('global'); _telemetry.invoices('batch', sent=3)\n"
        "_telemetry.session_started('online', 'ref'); _telemetry.session_ended('online', 'ref', 200)\n"
        "try:\n"
        "    _telemetry.require_otel()\n"
        "except Exception as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == (
        "OpenTelemetry tracing and metrics: needs the 'otel' extra (opentelemetry is not installed); "
        "install it with: pip install 'ksef-async[otel]'"
    )
