"""`ksef_async.core.codes`: every enum is the spec's table, with the spec's descriptions."""

from __future__ import annotations

import enum
import json
import re
from typing import Any

import pytest

from ksef_async._schemas import schema_path
from ksef_async.core.codes import (
    AuthenticationStatus,
    CertificateEnrollmentStatus,
    ExceptionCode,
    ExportStatus,
    InvoiceStatus,
    PermissionOperationStatus,
    SessionStatus,
    is_final_failure,
)

SPEC: dict[str, Any] = json.loads(schema_path("openapi.json").read_text(encoding="utf-8"))
ROW = re.compile(r"^\|\s*(\d{3,5})\s*\|\s*([^|]*?)\s*\|", re.MULTILINE)


def _table(schema: str) -> dict[int, set[str]]:
    text = SPEC["components"]["schemas"][schema]["properties"]["status"]["description"]
    rows: dict[int, set[str]] = {}
    for code, description in ROW.findall(text):
        rows.setdefault(int(code), set()).add(description)
    return rows


@pytest.mark.parametrize(
    ("enum_class", "schema"),
    [
        (SessionStatus, "SessionStatusResponse"),
        (InvoiceStatus, "SessionInvoiceStatusResponse"),
        (AuthenticationStatus, "AuthenticationOperationStatusResponse"),
        (ExportStatus, "InvoiceExportStatusResponse"),
        (PermissionOperationStatus, "PermissionsOperationStatusResponse"),
        (CertificateEnrollmentStatus, "CertificateEnrollmentStatusResponse"),
    ],
)
def test_each_status_enum_is_its_spec_table(enum_class: type[enum.IntEnum], schema: str) -> None:
    table = _table(schema)
    assert {int(m) for m in enum_class} == set(table)
    for member in enum_class:
        assert member.description in {d.strip() for d in table[member]}, (member, table[member])  # type: ignore[attr-defined]


def test_exception_codes_are_the_spec_400_tables() -> None:
    descriptions: dict[int, set[str]] = {}

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str):
            for code, description in re.findall(r"^\|\s*(\d{5})\s*\|\s*([^|]*?)\s*\|", node, re.MULTILINE):
                descriptions.setdefault(int(code), set()).add(description)

    walk(SPEC)
    assert {int(m) for m in ExceptionCode} == set(descriptions)
    for member in ExceptionCode:
        assert member.description.rstrip(".") in {d.rstrip(".") for d in descriptions[member]}, member


def test_440_is_two_things_and_each_has_its_name() -> None:
    assert int(SessionStatus.CANCELLED) == int(InvoiceStatus.DUPLICATE) == 440
    assert SessionStatus(440).name == "CANCELLED"
    assert InvoiceStatus(440).name == "DUPLICATE"
    assert json.dumps({"code": InvoiceStatus.DUPLICATE}) == '{"code": 440}'  # still a number on the wire
    assert f"{SessionStatus.CANCELLED}" == "440"


def test_failures_start_at_300() -> None:
    assert not is_final_failure(AuthenticationStatus.SUCCESS)
    assert is_final_failure(400)  # the auth examples' certificate error
    assert all(is_final_failure(m) for m in InvoiceStatus if m >= 400)
