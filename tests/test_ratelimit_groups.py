"""Rate-limit groups at 2.9.0: the client's table against the spec, reading GET /rate-limits, a 429's group."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cattrs
import pytest

import ksef_async.models as m
from ksef_async.core.ratelimit import WindowLimits
from ksef_async.core.ratelimit_groups import (
    ANONYMOUS_GROUP,
    GLOBAL_GROUP,
    PER_IP_GROUPS,
    group_named_in,
    parse_rate_limits,
    rate_limited_group,
    request_groups,
)
from ksef_async.models.converter import structure
from ksef_async.operations import API_RATE_LIMITS, OPERATIONS, RATE_LIMIT_GROUPS, TokenKind, operation
from ksef_async.resources.limits import window_limits

ROOT = Path(__file__).resolve().parent.parent
SPEC: dict[str, Any] = json.loads((ROOT / "schemas" / "openapi.json").read_text(encoding="utf-8"))
EXAMPLE: dict[str, Any] = SPEC["paths"]["/rate-limits"]["get"]["responses"]["200"]["content"]["application/json"][
    "example"
]
# GET /rate-limits of a 2.6.0 server: the 12 groups it had (no close groups, collectiveIdentifier, anonymous, global).
OLD_GROUPS = (
    "onlineSession",
    "batchSession",
    "invoiceSend",
    "invoiceStatus",
    "sessionList",
    "sessionInvoiceList",
    "sessionMisc",
    "invoiceMetadata",
    "invoiceExport",
    "invoiceExportStatus",
    "invoiceDownload",
    "other",
)


def _wire(limits: WindowLimits) -> dict[str, int]:
    def one(value: int | None) -> int:
        return -1 if value is None else value

    return {"perSecond": one(limits.per_second), "perMinute": one(limits.per_minute), "perHour": one(limits.per_hour)}


# -- the client's table ------------------------------------------------------------------------------------------


def test_client_table_is_the_spec_example_of_get_rate_limits() -> None:
    # Every group of EffectiveApiRateLimits, with the documented values (-1 = not limited = None).
    assert set(EXAMPLE) == set(SPEC["components"]["schemas"]["EffectiveApiRateLimits"]["required"])
    assert parse_rate_limits(EXAMPLE).limits == dict(API_RATE_LIMITS)
    assert API_RATE_LIMITS["onlineSessionClose"] == WindowLimits(20, 60, 240)
    assert API_RATE_LIMITS["batchSessionClose"] == WindowLimits(20, 40, 120)
    assert API_RATE_LIMITS["collectiveIdentifier"] == WindowLimits(20, 120, 240)
    assert API_RATE_LIMITS[ANONYMOUS_GROUP] == WindowLimits(60, None, None)
    assert API_RATE_LIMITS[GLOBAL_GROUP] == WindowLimits(75, None, None)
    # global names no operation; every other group is some operation's.
    assert set(API_RATE_LIMITS) - set(RATE_LIMIT_GROUPS) == {GLOBAL_GROUP}


def test_unauthenticated_operations_count_in_anonymous_and_close_in_its_own_group() -> None:
    anonymous = {op.operation_id for op in OPERATIONS if op.rate_group == ANONYMOUS_GROUP}
    assert len(anonymous) == 16
    assert {"post_auth_challenge", "get_security_public_key_certificates", "post_auth_token_refresh"} <= anonymous
    # None of them takes the access token: no context to count them in, so KSeF counts them per IP.
    assert all(TokenKind.ACCESS not in op.tokens for op in OPERATIONS if op.rate_group == ANONYMOUS_GROUP)
    assert operation("post_sessions_online_close").rate_group == "onlineSessionClose"
    assert operation("post_sessions_batch_close").rate_group == "batchSessionClose"
    assert {"anonymous", "global"} == PER_IP_GROUPS


def test_request_groups_put_the_operation_group_before_global() -> None:
    assert request_groups("invoiceSend") == ("invoiceSend", "global")
    assert request_groups("anonymous") == ("anonymous", "global")
    assert request_groups("onlineSessionClose") == ("onlineSessionClose", "global")
    assert request_groups("global") == ("global",)


# -- GET /rate-limits ---------------------------------------------------------------------------------------------


def test_minus_one_is_an_unlimited_window() -> None:
    report = parse_rate_limits({"global": {"perSecond": 75, "perMinute": -1, "perHour": -1}})
    assert report.limits == {"global": WindowLimits(75, None, None)}
    assert report.problems == ()
    assert parse_rate_limits({"x": {"perSecond": -1, "perMinute": -1, "perHour": -1}}).limits["x"].windows() == ()


def test_an_older_server_reports_fewer_groups_and_nothing_fails() -> None:
    body = {group: _wire(API_RATE_LIMITS[group]) for group in OLD_GROUPS}
    report = parse_rate_limits(body)
    assert set(report.limits) == set(OLD_GROUPS)
    assert report.problems == ()
    # The strict 2.9.0 model cannot read it: that is why the client reads the raw body.
    with pytest.raises(cattrs.BaseValidationError):
        structure(body, m.EffectiveApiRateLimits)


def test_unknown_groups_are_kept() -> None:
    body = dict(EXAMPLE) | {"futureGroup": {"perSecond": 3, "perMinute": 9, "perHour": -1}}
    report = parse_rate_limits(body)
    assert report.limits["futureGroup"] == WindowLimits(3, 9, None)
    assert len(report.limits) == 18


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("10/30/120", "$.g: expected an object"),
        ({"perSecond": 10, "perMinute": 30}, "$.g.perHour: required field missing"),
        ({"perSecond": "10", "perMinute": 30, "perHour": 120}, "$.g: expected an integer"),
        ({"perSecond": True, "perMinute": 30, "perHour": 120}, "$.g: expected an integer"),
        ({"perSecond": 10.0, "perMinute": 30, "perHour": 120}, "$.g: expected an integer"),
        ({"perSecond": 0, "perMinute": 30, "perHour": 120}, "$.g: expected -1 or an int32 >= 1"),
        ({"perSecond": -2, "perMinute": 30, "perHour": 120}, "$.g: expected -1 or an int32 >= 1"),
        ({"perSecond": 2**31, "perMinute": 30, "perHour": 120}, "$.g: expected -1 or an int32 >= 1"),
    ],
)
def test_a_malformed_group_is_skipped_and_named(entry: Any, problem: str) -> None:
    report = parse_rate_limits({"g": entry, "other": {"perSecond": 1, "perMinute": 2, "perHour": 3}})
    assert report.limits == {"other": WindowLimits(1, 2, 3)}
    assert report.problems == (problem,)


def test_names_that_are_not_identifiers_are_skipped_without_quoting_them() -> None:
    report = parse_rate_limits({"secret token=abc": {"perSecond": 1, "perMinute": 1, "perHour": 1}})
    assert report.limits == {}
    assert report.problems == ("$: a group name that is not an identifier was skipped",)
    assert "abc" not in report.problems[0]


def test_a_huge_report_is_bounded() -> None:
    body = {f"g{i}": {"perSecond": 1, "perMinute": -1, "perHour": -1} for i in range(1000)}
    report = parse_rate_limits(body)
    assert len(report.limits) == 256
    assert report.problems == ("$: more than 256 groups, the rest ignored",)


@pytest.mark.parametrize("body", [[], "x", None, 3])
def test_a_body_that_is_not_an_object_is_refused(body: Any) -> None:
    with pytest.raises(ValueError, match="expected an object"):
        parse_rate_limits(body)


def test_window_limits_reads_the_model_and_the_raw_body_alike() -> None:
    model = structure(EXAMPLE, m.EffectiveApiRateLimits)
    assert window_limits(model) == window_limits(EXAMPLE) == dict(API_RATE_LIMITS)
    assert window_limits({"onlineSession": _wire(WindowLimits(1, 2, 3))}) == {"onlineSession": WindowLimits(1, 2, 3)}


# -- the group a 429 names ----------------------------------------------------------------------------------------

KNOWN = frozenset(API_RATE_LIMITS)


def test_the_simulator_429_text_names_its_group() -> None:
    text = "Przekroczono limit żądań dla grupy global. Spróbuj ponownie za 1 s."
    assert group_named_in([text], KNOWN) == "global"
    assert rate_limited_group("invoiceSend", ["Too Many Requests", text], KNOWN) == "global"


def test_close_and_open_groups_are_told_apart() -> None:
    assert group_named_in(["limit dla grupy onlineSessionClose"], KNOWN) == "onlineSessionClose"
    assert group_named_in(["limit dla grupy onlineSession."], KNOWN) == "onlineSession"


def test_no_known_group_or_several_falls_back_to_the_operation_group() -> None:
    spec_example = "Przekroczono limit 20 żądań na minutę. Spróbuj ponownie po 30 sekundach."
    assert group_named_in([spec_example], KNOWN) is None
    assert rate_limited_group("invoiceSend", [spec_example], KNOWN) == "invoiceSend"
    assert group_named_in(["globalny limit", "grupaglobal"], KNOWN) is None  # whole words only
    assert group_named_in(["global albo other"], KNOWN) is None  # ambiguous
    assert group_named_in(["dla grupy futureGroup"], KNOWN) is None  # unknown to the limiter
    assert group_named_in(["dla grupy futureGroup"], KNOWN | {"futureGroup"}) == "futureGroup"
    assert rate_limited_group("other", [], KNOWN) == "other"
