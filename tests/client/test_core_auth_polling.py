"""Pure logic: token decisions, auth status classification, back-off and deadline schedules (no I/O)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ksef_async.core.auth_flow import AuthStatus, Token, TokenAction, TokenState, classify_auth_status
from ksef_async.core.polling import Backoff, PollSchedule
from ksef_async.errors import ConfigurationError, DeadlineExceededError
from ksef_async.resources._base import poll_until


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (100, AuthStatus.PENDING),
        (200, AuthStatus.SUCCESS),
        (400, AuthStatus.FAILED),
        (415, AuthStatus.FAILED),
        (450, AuthStatus.FAILED),
        (460, AuthStatus.FAILED),
        (550, AuthStatus.FAILED),
    ],
)
def test_auth_status_codes(code: int, expected: AuthStatus) -> None:
    assert classify_auth_status(code) is expected


def test_token_from_api_reads_valid_until_as_utc() -> None:
    aware = Token.from_api("secret-jwt", dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC))
    naive = Token.from_api("secret-jwt", dt.datetime(2026, 1, 1, 12, 0))  # noqa: DTZ001 - KSeF may omit the offset
    assert aware.valid_until == naive.valid_until == dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC).timestamp()
    assert "secret-jwt" not in repr(aware)


def test_decisions_follow_validity_and_margin() -> None:
    state = TokenState(refresh_margin=60)
    assert state.decide(0) is TokenAction.LOGIN
    state.set_tokens(Token("a", 1000), Token("r", 10_000))
    assert state.decide(900) is TokenAction.USE
    assert state.decide(941) is TokenAction.REFRESH  # inside the margin
    assert state.decide(9_950) is TokenAction.LOGIN  # refresh token about to expire too


def test_short_lived_tokens_are_not_renewed_on_every_call() -> None:
    state = TokenState(refresh_margin=60)
    state.set_tokens(Token("a", 1000 + 40, obtained_at=1000), Token("r", 10_000))  # lives 40 s < margin
    assert state.decide(1001) is TokenAction.USE
    assert state.decide(1021) is TokenAction.REFRESH  # past half its life


def test_after_401_refreshes_only_the_token_that_failed() -> None:
    state = TokenState()
    state.set_tokens(Token("a1", 1000), Token("r", 10_000))
    used = state.generation
    state.set_tokens(Token("a2", 1000))  # somebody refreshed meanwhile
    assert state.after_401(used, 0) is TokenAction.USE
    assert state.access is not None
    assert state.access.value == "a2"
    assert state.after_401(state.generation, 0) is TokenAction.REFRESH
    assert state.access is None


def test_negative_margin_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="refresh_margin"):
        TokenState(refresh_margin=-1)


@given(attempt=st.integers(0, 200), rand=st.floats(0, 0.999))
def test_backoff_stays_within_bounds(attempt: int, rand: float) -> None:
    backoff = Backoff(initial=0.5, factor=2, maximum=5, jitter=0.1)
    delay = backoff.delay(attempt, lambda: rand)
    assert 0.9 * min(5, 0.5 * 2**attempt) - 1e-9 <= delay <= 5


def test_backoff_grows_then_caps() -> None:
    backoff = Backoff(initial=1, factor=2, maximum=5, jitter=0)
    assert [backoff.delay(n) for n in range(5)] == [1, 2, 4, 5, 5]


def test_schedule_clips_to_the_deadline_and_then_stops() -> None:
    schedule = PollSchedule(Backoff(initial=4, factor=1, maximum=4, jitter=0), deadline=10.0)
    assert schedule.next_delay(0.0) == 4
    assert schedule.next_delay(8.0) == 2  # one last poll exactly at the deadline
    assert schedule.next_delay(10.0) is None


@pytest.mark.parametrize("kwargs", [{"initial": 0}, {"factor": -1}, {"maximum": float("inf")}, {"jitter": 1.0}])
def test_backoff_validates(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        Backoff(**kwargs)


class _FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.mark.anyio
async def test_poll_until_returns_the_final_result() -> None:
    fake = _FakeTime()
    results = iter([100, 150, 200])

    async def fetch() -> int:
        return next(results)

    result = await poll_until(
        fetch, lambda code: code >= 200, what="op", max_wait=60, clock=fake.clock, sleep=fake.sleep
    )
    assert result == 200
    assert len(fake.sleeps) == 2


@pytest.mark.anyio
async def test_poll_until_stops_at_the_deadline() -> None:
    fake = _FakeTime()
    calls = 0

    async def fetch() -> int:
        nonlocal calls
        calls += 1
        return 100

    with pytest.raises(DeadlineExceededError, match="session X"):
        await poll_until(
            fetch,
            lambda code: code >= 200,
            what="session X",
            max_wait=10,
            backoff=Backoff(initial=3, factor=1, maximum=3, jitter=0),
            clock=fake.clock,
            sleep=fake.sleep,
        )
    assert fake.now == 10  # the last poll happened exactly at the deadline
    assert calls == 5  # at 0, 3, 6, 9 and 10
