"""``PUT /testdata/certificates/{serialNumber}`` through ``client.testdata.update_certificate`` (loopback)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from ksef_async.auth import CertificateCredentials
from ksef_async.client import KsefClient
from ksef_async.errors import BadRequestError, ConfigurationError
from ksef_async.testing.certificates import generate_person_certificate
from ksef_async.testing.simulator import KsefSimulator

from .conftest import QUICK, SELLER

pytestmark = pytest.mark.anyio


@pytest.fixture
async def sim(ksef_simulator_factory: Any) -> KsefSimulator:
    simulator: KsefSimulator = await ksef_simulator_factory(contexts=[(SELLER, None)], seed=3, rate_limits="off")
    return simulator


@pytest.mark.covers("put_testdata_certificates_by_serial_number", "post_certificates_query")
async def test_update_certificate_shortens_valid_to_and_refuses_later_or_unknown(sim: KsefSimulator) -> None:
    owner = generate_person_certificate(given_name="Anna", surname="Nowak", nip=SELLER, algorithm="ec")
    credentials = CertificateCredentials.from_pem(owner.cert_pem, owner.key_pem())
    async with KsefClient(sim.base_url, credentials=credentials, context=SELLER, config=QUICK) as client:
        enrolled = await client.certificates.enroll("Certyfikat testowy", max_wait=10)
        [before] = [c async for c in client.certificates.query()]
        shorter = before.valid_to - dt.timedelta(days=300)
        await client.testdata.update_certificate(enrolled.serial_number, shorter)
        [after] = [c async for c in client.certificates.query()]
        with pytest.raises(BadRequestError) as later:
            await client.testdata.update_certificate(enrolled.serial_number, shorter + dt.timedelta(days=1))
        with pytest.raises(BadRequestError) as unknown:
            await client.testdata.update_certificate("0123456789ABCDEF", shorter)
        past = sim.clock.now_dt() - dt.timedelta(seconds=1)
        await client.testdata.expire_certificate(enrolled.serial_number, max(past, before.valid_from))
        [expired] = [c async for c in client.certificates.query()]
        with pytest.raises(ConfigurationError, match="serialNumber"):
            await client.testdata.update_certificate("abc", shorter)
        with pytest.raises(ConfigurationError, match="validTo"):
            await client.testdata.update_certificate(enrolled.serial_number, shorter.replace(tzinfo=None))
    assert after.valid_to == shorter
    assert later.value.has_code(21405)
    assert unknown.value.has_code(25008)
    assert str(expired.status) == "Expired"
