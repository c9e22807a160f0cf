"""The operation table against the bundled spec: every operation, its limits, group, token and path matching."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import attrs
import pytest

import ksef_async.models as m
from ksef_async.core.ratelimit import WindowLimits
from ksef_async.operations import (
    OPERATIONS,
    PUBLIC_GROUP,
    RATE_LIMIT_GROUPS,
    TokenKind,
    match,
    operation,
)

ROOT = Path(__file__).resolve().parent.parent
SPEC: dict[str, Any] = json.loads((ROOT / "schemas" / "openapi.json").read_text(encoding="utf-8"))
SPEC_OPS = {(method.upper(), path): op for path, item in SPEC["paths"].items() for method, op in item.items()}
REF = "20250625-SO-2C3E6C8000-B675CF5D68-07"


def _op(method: str, path: str) -> Any:
    (found,) = [op for op in OPERATIONS if (op.method, op.path) == (method, path)]
    return found


def test_table_lists_every_operation_of_every_path() -> None:
    assert len(OPERATIONS) == len(SPEC_OPS)
    assert {(op.method, op.path) for op in OPERATIONS} == set(SPEC_OPS)
    assert len({op.operation_id for op in OPERATIONS}) == len(SPEC_OPS)
    assert {op.path for op in OPERATIONS} == set(SPEC["paths"])


def test_summary_tag_and_permissions_come_from_the_spec() -> None:
    for op in OPERATIONS:
        spec_op = SPEC_OPS[op.method, op.path]
        assert op.summary == spec_op["summary"].strip()
        assert op.tag == spec_op["tags"][0]
        assert op.required_permissions == tuple(spec_op.get("x-required-permissions", ()))
    assert _op("DELETE", "/permissions/common/grants/{permissionId}").required_permissions == (
        "CredentialsManage",
        "VatUeManage",
        "SubunitManage",
    )


def test_limits_come_from_x_rate_limits_and_the_group_from_the_429_table() -> None:
    row = re.compile(r"\| \*\*Limity liczby żądań\*\* \|(.*)$", re.MULTILINE)
    for op in OPERATIONS:
        spec_op = SPEC_OPS[op.method, op.path]
        limits = spec_op["x-rate-limits"]
        assert op.limits == WindowLimits(limits.get("perSecond"), limits.get("perMinute"), limits.get("perHour"))
        found = row.search(spec_op["responses"]["429"]["description"])
        assert found is not None
        group = found.group(1).split("|")[-1].strip()
        assert op.rate_group == (PUBLIC_GROUP if group == "-" else group)
        assert RATE_LIMIT_GROUPS[op.rate_group] == op.limits


def test_session_open_and_close_have_their_own_groups() -> None:
    # 2.8: closing a session no longer shares the opening group's counter.
    assert _op("POST", "/sessions/batch").rate_group == "batchSession"
    assert _op("POST", "/sessions/batch/{referenceNumber}/close").rate_group == "batchSessionClose"
    assert _op("POST", "/sessions/online").rate_group == "onlineSession"
    assert _op("POST", "/sessions/online/{referenceNumber}/close").rate_group == "onlineSessionClose"
    assert RATE_LIMIT_GROUPS["batchSession"] == WindowLimits(10, 20, 60)
    assert RATE_LIMIT_GROUPS["batchSessionClose"] == WindowLimits(20, 40, 120)
    assert RATE_LIMIT_GROUPS["onlineSession"] == WindowLimits(10, 30, 120)
    assert RATE_LIMIT_GROUPS["onlineSessionClose"] == WindowLimits(20, 60, 240)
    assert RATE_LIMIT_GROUPS["collectiveIdentifier"] == WindowLimits(20, 120, 240)


def test_public_operations_share_one_group() -> None:
    public = [op for op in OPERATIONS if op.rate_group == PUBLIC_GROUP]
    assert len(public) == 16
    assert {op.limits for op in public} == {WindowLimits(per_second=60)}
    only_per_second = {key for key, spec_op in SPEC_OPS.items() if spec_op["x-rate-limits"] == {"perSecond": 60}}
    assert {(op.method, op.path) for op in public} == only_per_second
    assert RATE_LIMIT_GROUPS[PUBLIC_GROUP].windows() == ((1.0, 60),)


def test_named_groups_are_the_ones_get_rate_limits_reports() -> None:
    # GET /rate-limits returns one entry per named group: the table must know exactly those.
    # `anonymous` (the public operations) and `global` (every operation, per IP) are reported but name no
    # operation's 429 table.
    reported = {m.wire_name(f) for f in attrs.fields(m.EffectiveApiRateLimits)}
    assert set(RATE_LIMIT_GROUPS) - {PUBLIC_GROUP} == reported - {"anonymous", "global"}
    assert set(SPEC["components"]["schemas"]["EffectiveApiRateLimits"]["required"]) == reported


def test_bearer_token_kinds() -> None:
    assert _op("GET", "/auth/{referenceNumber}").tokens == (TokenKind.AUTHENTICATION,)
    assert _op("POST", "/auth/token/redeem").tokens == (TokenKind.AUTHENTICATION,)
    assert _op("POST", "/auth/token/refresh").tokens == (TokenKind.REFRESH,)
    assert _op("DELETE", "/auth/sessions/current").tokens == (TokenKind.REFRESH, TokenKind.ACCESS)
    assert _op("POST", "/auth/challenge").tokens == ()
    assert not _op("POST", "/auth/challenge").needs_bearer
    assert _op("POST", "/sessions/batch").tokens == (TokenKind.ACCESS,)
    for op in OPERATIONS:
        assert op.needs_bearer == bool(SPEC_OPS[op.method, op.path].get("security"))
    # The five operations added since 2.6.0 (four collective-identifier ones, PUT /testdata/certificates/{n})
    # all take the access token.
    assert sum(op.needs_bearer for op in OPERATIONS) == 68
    assert sum(op.tokens == (TokenKind.ACCESS,) for op in OPERATIONS) == 64


def test_body_schemas_name_real_models() -> None:
    for op in OPERATIONS:
        for name in (op.request_schema, op.response_schema):
            if name is not None:
                assert attrs.has(getattr(m, name)), (op.operation_id, name)
    batch = _op("POST", "/sessions/batch")
    assert (batch.request_schema, batch.response_schema, batch.success_status) == (
        "OpenBatchSessionRequest",
        "OpenBatchSessionResponse",
        201,
    )
    keys = _op("GET", "/security/public-key-certificates")
    assert (keys.response_schema, keys.response_is_list) == ("PublicKeyCertificate", True)
    # XML bodies have no JSON model.
    assert _op("POST", "/auth/xades-signature").request_schema is None
    assert _op("GET", "/sessions/{referenceNumber}/upo/{upoReferenceNumber}").response_schema is None


def test_operation_lookup_by_id() -> None:
    op = operation("post_sessions_batch_close")
    assert (op.method, op.path) == ("POST", "/sessions/batch/{referenceNumber}/close")
    assert op.path_params == ("referenceNumber",)
    assert operation("get_tokens_by_reference_number").path == "/tokens/{referenceNumber}"
    assert operation("get_tokens").path == "/tokens"
    with pytest.raises(KeyError, match="no_such_thing"):
        operation("no_such_thing")


def test_match_finds_every_operation_from_a_concrete_path() -> None:
    for op in OPERATIONS:
        concrete = re.sub(r"\{[^}]+\}", REF, op.path)
        assert match(op.method, concrete) is op, op.path
        assert match(op.method.lower(), concrete + "?pageSize=10") is op


@pytest.mark.parametrize(
    ("method", "path", "template"),
    [
        ("GET", f"/sessions/{REF}/invoices", "/sessions/{referenceNumber}/invoices"),
        ("GET", f"/sessions/{REF}/invoices/failed", "/sessions/{referenceNumber}/invoices/failed"),
        ("GET", f"/sessions/{REF}/invoices/{REF}", "/sessions/{referenceNumber}/invoices/{invoiceReferenceNumber}"),
        ("GET", "/auth/sessions", "/auth/sessions"),
        ("GET", f"/auth/{REF}", "/auth/{referenceNumber}"),
        ("DELETE", "/auth/sessions/current", "/auth/sessions/current"),
        ("DELETE", f"/auth/sessions/{REF}", "/auth/sessions/{referenceNumber}"),
        ("POST", "/certificates/query", "/certificates/query"),
        ("POST", "/certificates/0123456789ABCDEF/revoke", "/certificates/{certificateSerialNumber}/revoke"),
        ("GET", "/sessions/", "/sessions"),
    ],
)
def test_static_segments_win_over_templated_ones(method: str, path: str, template: str) -> None:
    assert match(method, path).path == template


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/sessions/batch"),  # wrong method
        ("GET", "/sessions/batch/x/close"),  # POST only
        ("POST", "/sessions/batch/x/open"),  # unknown static segment
        ("GET", "/sessions//invoices"),  # empty parameter
        ("GET", "/nothing"),
    ],
)
def test_match_rejects_paths_no_operation_serves(method: str, path: str) -> None:
    with pytest.raises(KeyError, match="no KSeF operation matches"):
        match(method, path)


def test_expand_fills_and_encodes_path_parameters() -> None:
    op = operation("get_sessions_invoices_by_invoice_reference_number")
    path = op.expand(referenceNumber=REF, invoiceReferenceNumber="a/b c")
    assert path == f"/sessions/{REF}/invoices/a%2Fb%20c"
    assert match("GET", path) is op
    assert operation("get_sessions").expand() == "/sessions"
    with pytest.raises(TypeError, match=r"missing path parameters \['invoiceReferenceNumber'\]"):
        op.expand(referenceNumber=REF)
    with pytest.raises(TypeError, match=r"unknown \['ksefNumber'\]"):
        op.expand(referenceNumber=REF, invoiceReferenceNumber="x", ksefNumber="y")
    with pytest.raises(TypeError, match="empty"):
        op.expand(referenceNumber="", invoiceReferenceNumber="x")


def test_the_bundled_spec_is_the_release_the_package_names() -> None:
    from ksef_async._schemas import API_VERSION  # noqa: PLC0415

    assert SPEC["info"]["description"].startswith(f"**Wersja API:** {API_VERSION} (build ")
