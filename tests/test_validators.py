"""One home for config validation: every config object refuses bad values with a `ConfigurationError`."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from ksef_async.batch.engine import SendConfig
from ksef_async.client import ClientConfig
from ksef_async.core.batch_limits import MAX_PART_PLAIN_SIZE, MAX_PART_SIZE, check_part_size
from ksef_async.core.plan import SessionLimits
from ksef_async.core.polling import Backoff
from ksef_async.errors import ConfigurationError
from ksef_async.online_retry import SessionUnavailablePolicy
from ksef_async.transport import RetryPolicy


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: ClientConfig(api_read_timeout=math.inf), "ClientConfig.api_read_timeout"),
        (lambda: ClientConfig(api_connections=0), "ClientConfig.api_connections"),
        (lambda: RetryPolicy(attempts=0), "RetryPolicy.attempts"),
        (lambda: RetryPolicy(timeout=math.nan), "RetryPolicy.timeout"),
        (lambda: SessionUnavailablePolicy(base_delay=-1), "SessionUnavailablePolicy.base_delay"),
        (lambda: SendConfig(process_timeout=math.inf), "SendConfig.process_timeout"),
        (lambda: SendConfig(concurrency=True), "SendConfig.concurrency"),
        (lambda: SendConfig(part_size=MAX_PART_PLAIN_SIZE + 1), "SendConfig.part_size"),
        (lambda: SessionLimits(part_size=15), "SessionLimits.part_size"),
        (lambda: Backoff(jitter=1.0), "Backoff.jitter"),
    ],
)
def test_bad_config_is_a_configuration_error_naming_the_field(build: Callable[[], Any], field: str) -> None:
    with pytest.raises(ConfigurationError, match=rf"^{field} must be"):
        build()


def test_the_part_size_rule() -> None:
    assert check_part_size(MAX_PART_PLAIN_SIZE) == MAX_PART_PLAIN_SIZE
    assert MAX_PART_PLAIN_SIZE + 16 == MAX_PART_SIZE  # the ciphertext of a full part still fits KSeF's 100 MB
    for bad in (15, MAX_PART_PLAIN_SIZE + 1, 1.5):
        with pytest.raises(ConfigurationError, match="part_size must be between 16 and 99,999,984 bytes"):
            check_part_size(bad)  # type: ignore[arg-type]
