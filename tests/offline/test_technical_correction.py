"""The technical correction flow (``hashOfCorrectedInvoice``) against the simulator: accepted, 21166, 21167."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from ksef_async.errors import (
    BadRequestError,
    ConfigurationError,
    CorrectionNotAllowedError,
    CorrectionUnavailableError,
    InvoiceError,
)
from ksef_async.models import FormCode
from ksef_async.online import (
    CORRECTION_NOT_ALLOWED,
    CORRECTION_UNAVAILABLE,
    send_online,
    send_technical_correction,
)
from ksef_async.testing.invoices import InvoiceFactory
from ksef_async.testing.pytest_plugin import DEFAULT_NIP
from ksef_async.testing.simulator import KsefSimulator

from .conftest import broken, client_for

pytestmark = pytest.mark.anyio

FA3 = FormCode(system_code="FA (3)", schema_version="1-0E", value="FA")


async def send_rejected_offline(sim: KsefSimulator, invoice: bytes, *, offline: bool = True) -> str:
    """Send ``invoice`` (not valid: local validation is bypassed) in an online session; return its final code."""
    async with client_for(sim) as client:
        session = await client.online.open(FA3)
        await client.online.send(session, invoice, offline_mode=offline)
        await client.online.close(session.reference_number)
        await client.sessions.wait_until_processed(session.reference_number, max_wait=30)
        statuses = [s async for s in client.sessions.invoices(session.reference_number)]
    (status,) = statuses
    return f"{status.status.code} {status.invoicing_mode}"


async def test_correction_of_a_technically_rejected_offline_invoice_is_accepted_once(
    ksef_simulator: KsefSimulator, tmp_path: Path
) -> None:
    good = InvoiceFactory(DEFAULT_NIP, seed=51).make(0)[1]
    original = broken(good)
    assert await send_rejected_offline(ksef_simulator, original) == "450 Offline"
    corrected = tmp_path / "fixed.xml"
    corrected.write_bytes(good)
    async with client_for(ksef_simulator) as client:
        result = await send_technical_correction(client, corrected, original=original)
        (outcome,) = result.outcomes
        assert outcome.accepted, outcome
        assert outcome.invoicing_mode == "Offline"
        assert outcome.name == str(corrected)
        assert result.sessions[0].status_code == 200
        assert ksef_simulator.state.invoices[outcome.ksef_number or ""].content == good

        # A second correction of the same original: a valid one exists (21166), typed, naming the file.
        again = InvoiceFactory(DEFAULT_NIP, seed=52).make(1)[1]
        original_hash = base64.b64encode(hashlib.sha256(original).digest()).decode()
        with pytest.raises(CorrectionUnavailableError) as raised:
            await send_technical_correction(client, again, original_hash=original_hash, name="second.xml")
    assert isinstance(raised.value, BadRequestError)
    assert raised.value.status == 400
    assert CORRECTION_UNAVAILABLE in raised.value.codes
    assert raised.value.file == "second.xml"
    assert str(raised.value).startswith("second.xml: ")


async def test_correction_of_an_accepted_invoice_is_refused_with_21167(ksef_simulator: KsefSimulator) -> None:
    accepted = InvoiceFactory(DEFAULT_NIP, seed=53).make(0)
    async with client_for(ksef_simulator) as client:
        sent = await send_online(client, [accepted], offline_mode=True)
        assert sent.all_accepted
        correction = InvoiceFactory(DEFAULT_NIP, seed=54).make(1)[1]
        with pytest.raises(CorrectionNotAllowedError) as raised:
            await send_technical_correction(client, correction, original=accepted[1], name="c.xml")
    assert isinstance(raised.value, BadRequestError)
    assert raised.value.codes == [CORRECTION_NOT_ALLOWED]
    assert "c.xml" in str(raised.value)
    # Nothing of the refused correction reached the invoice store.
    assert len(ksef_simulator.state.invoices) == 1


async def test_correction_of_an_invoice_rejected_in_online_mode_is_refused(ksef_simulator: KsefSimulator) -> None:
    # Only offline invoices get a technical correction (official docs ``offline/korekta-techniczna.md``).
    good = InvoiceFactory(DEFAULT_NIP, seed=55).make(0)[1]
    original = broken(good)
    assert await send_rejected_offline(ksef_simulator, original, offline=False) == "450 Online"
    async with client_for(ksef_simulator) as client:
        with pytest.raises(CorrectionNotAllowedError):
            await send_technical_correction(client, good, original=original)


async def test_bad_corrections_are_refused_locally_before_anything_is_sent(ksef_simulator: KsefSimulator) -> None:
    good = InvoiceFactory(DEFAULT_NIP, seed=56).make(0)[1]
    before = dict(ksef_simulator.counters.requests)
    async with client_for(ksef_simulator) as client:
        with pytest.raises(InvoiceError) as invalid:
            await send_technical_correction(client, broken(good), original=good, name="bad.xml")
        assert invalid.value.problems[0].file == "bad.xml"
        with pytest.raises(ConfigurationError, match="exactly one"):
            await send_technical_correction(client, good)
        with pytest.raises(ConfigurationError, match="original_hash"):
            await send_technical_correction(client, good, original_hash="not-a-hash")
        with pytest.raises(ConfigurationError, match="byte-identical"):
            await send_technical_correction(client, good, original=good)
    assert ksef_simulator.counters.requests.get("onlineSession", 0) == before.get("onlineSession", 0)
