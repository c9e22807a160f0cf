"""The package's public names, and the client's configuration and environments."""

from __future__ import annotations

import types

import pytest

import ksef_async
from ksef_async import ClientConfig, Environment, KsefClient, KsefTokenCredentials, RetryPolicy
from ksef_async.errors import ConfigurationError

pytestmark = pytest.mark.anyio


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name in dir(ksef_async)
        if not name.startswith("_") and not isinstance(getattr(ksef_async, name), types.ModuleType)
    }
    assert set(ksef_async.__all__) == public | {"__version__"}
    assert list(ksef_async.__all__) == sorted(ksef_async.__all__)


def test_environment_base_urls() -> None:
    assert Environment.TEST.value == "https://api-test.ksef.mf.gov.pl/v2"
    assert Environment.DEMO.value == "https://api-demo.ksef.mf.gov.pl/v2"
    assert Environment.PROD.value == "https://api.ksef.mf.gov.pl/v2"
    assert KsefClient(Environment.PROD).base_url == "https://api.ksef.mf.gov.pl/v2"
    assert KsefClient("http://127.0.0.1:8090/v2/").base_url == "http://127.0.0.1:8090/v2"


@pytest.mark.parametrize(
    "kwargs",
    [{"api_connections": 0}, {"storage_read_timeout": 0}, {"refresh_margin": -1}, {"auth_timeout": float("nan")}],
)
def test_config_validates(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        ClientConfig(**kwargs)  # type: ignore[arg-type]


def test_retry_policy_validates() -> None:
    with pytest.raises(ConfigurationError):
        RetryPolicy(attempts=0)


def test_bad_base_url_and_context_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="https://"):
        KsefClient("api.ksef.mf.gov.pl")
    with pytest.raises(ConfigurationError, match="Nip"):
        KsefClient(Environment.TEST, credentials=KsefTokenCredentials("t"), context="12345")
    with pytest.raises(ConfigurationError):
        KsefTokenCredentials("  ")


async def test_clients_of_one_environment_and_context_share_a_limiter() -> None:
    a = KsefClient("http://127.0.0.1:1/v2", credentials=KsefTokenCredentials("t"), context="5265877635")
    b = KsefClient("http://127.0.0.1:1/v2", credentials=KsefTokenCredentials("u"), context="5265877635")
    c = KsefClient("http://127.0.0.1:1/v2", credentials=KsefTokenCredentials("t"), context="1111111111")
    assert a.limiter is b.limiter
    assert a.limiter is not c.limiter


async def test_client_without_credentials_refuses_calls_that_need_a_token() -> None:
    async with KsefClient("http://127.0.0.1:1/v2") as client:
        with pytest.raises(ConfigurationError, match="credentials"):
            await client.limits.context()
        with pytest.raises(ConfigurationError):
            await client.login()
