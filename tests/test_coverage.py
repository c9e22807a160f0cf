"""Every operation of the bundled spec has a client method, a simulator handler and a simulator-backed test.

How "has a test" is decided (statically, so it works the same under xdist and with any subset of tests selected):
the test sources under ``tests/`` are parsed, and a test function counts for an operation when

* it carries ``@pytest.mark.covers("<operation id>", ...)`` (or its module's ``pytestmark`` does): in
  ``tests/surface`` an autouse fixture then fails the test unless the simulator really served each named operation
  (``sim.counters.operations``), so the claim cannot drift from what the test does; or
* its name spells the operation id (``test_post_permissions_persons_grants_and_...``: the convention of the
  permission and retrieval tests), ids matched longest first so ``get_tokens`` is not read into
  ``get_tokens_by_reference_number``;

and its module talks to the simulator (it uses ``KsefSimulator`` or the ``ksef_simulator`` fixtures). Removing or
renaming the last test of an operation makes `test_every_operation_has_a_simulator_backed_test` fail;
`test_the_scanner_notices_a_missing_test` shows that it does on a synthetic test tree.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
from collections.abc import Iterable
from pathlib import Path

from ksef_async.client import KsefClient
from ksef_async.operations import OPERATIONS

TESTS = Path(__file__).parent
OPERATION_IDS = frozenset(op.operation_id for op in OPERATIONS)

CLIENT_METHODS: dict[str, str] = {
    "get_auth_sessions": "auth.sessions",
    "delete_auth_sessions_current": "auth.revoke_current",
    "delete_auth_sessions_by_reference_number": "auth.revoke",
    "get_certificates_limits": "certificates.limits",
    "get_certificates_enrollments_data": "certificates.enrollment_data",
    "post_certificates_enrollments": "certificates.submit_enrollment",
    "get_certificates_enrollments_by_reference_number": "certificates.enrollment_status",
    "post_certificates_retrieve": "certificates.retrieve",
    "post_certificates_revoke": "certificates.revoke",
    "post_certificates_query": "certificates.query",
    "get_security_public_key_certificates": "security.public_key_certificates",
    "post_testdata_subject": "testdata.create_subject",
    "post_testdata_subject_remove": "testdata.remove_subject",
    "post_testdata_person": "testdata.create_person",
    "post_testdata_person_remove": "testdata.remove_person",
    "post_testdata_permissions": "testdata.grant_permissions",
    "post_testdata_permissions_revoke": "testdata.revoke_permissions",
    "post_testdata_attachment": "testdata.allow_attachments",
    "post_testdata_attachment_revoke": "testdata.revoke_attachments",
    "post_testdata_context_block": "testdata.block_context",
    "post_testdata_context_unblock": "testdata.unblock_context",
    "get_limits_context": "limits.context",
    "get_limits_subject": "limits.subject",
    "get_rate_limits": "rate_limits.get",
    "post_testdata_limits_context_session": "testdata.set_session_limits",
    "delete_testdata_limits_context_session": "testdata.reset_session_limits",
    "post_testdata_limits_subject_certificate": "testdata.set_certificate_limits",
    "delete_testdata_limits_subject_certificate": "testdata.reset_certificate_limits",
    "post_testdata_rate_limits": "testdata.set_rate_limits",
    "delete_testdata_rate_limits": "testdata.reset_rate_limits",
    "post_testdata_rate_limits_production": "testdata.production_rate_limits",
    "post_permissions_persons_grants": "permissions.grant_to_person",
    "post_permissions_entities_grants": "permissions.grant_to_entity",
    "post_permissions_authorizations_grants": "permissions.grant_authorization",
    "post_permissions_indirect_grants": "permissions.grant_indirect",
    "post_permissions_subunits_grants": "permissions.grant_subunit_admin",
    "post_permissions_eu_entities_administration_grants": "permissions.grant_eu_entity_admin",
    "post_permissions_eu_entities_grants": "permissions.grant_eu_entity",
    "delete_permissions_common_grants_by_permission_id": "permissions.revoke",
    "delete_permissions_authorizations_grants_by_permission_id": "permissions.revoke_authorization",
    "get_permissions_operations_by_reference_number": "permissions.operation_status",
    "get_permissions_attachments_status": "permissions.attachment_status",
    "get_invoices_ksef_by_ksef_number": "retrieval.get_invoice",
    "post_invoices_query_metadata": "retrieval.query_metadata_page",
    "post_invoices_exports": "retrieval.start_export",
    "get_invoices_exports_by_reference_number": "retrieval.export_status",
    "get_sessions": "sessions.list",
    "get_sessions_by_reference_number": "sessions.status",
    "get_sessions_invoices": "sessions.invoices",
    "get_sessions_invoices_by_invoice_reference_number": "invoices.status",
    "get_sessions_invoices_failed": "sessions.failed_invoices",
    "get_sessions_invoices_ksef_upo": "sessions.invoice_upo_by_ksef_number",
    "get_sessions_invoices_upo": "sessions.invoice_upo",
    "get_sessions_upo_by_upo_reference_number": "sessions.upo",
    "post_tokens": "tokens.create",
    "get_tokens": "tokens.list",
    "get_tokens_by_reference_number": "tokens.status",
    "delete_tokens_by_reference_number": "tokens.revoke",
    "get_peppol_query": "peppol.providers",
    "post_auth_challenge": "auth.challenge",
    "post_auth_xades_signature": "auth.xades_signature",
    "post_auth_ksef_token": "auth.ksef_token",
    "get_auth_by_reference_number": "auth.status",
    "post_auth_token_redeem": "auth.redeem",
    "post_auth_token_refresh": "auth.refresh",
    "post_sessions_online": "online.open",
    "post_sessions_online_invoices": "online.send",
    "post_sessions_online_close": "online.close",
    "post_sessions_batch": "batch.open",
    "post_sessions_batch_close": "batch.close",
    "post_permissions_query_personal_grants": "permissions.query_personal",
    "post_permissions_query_persons_grants": "permissions.query_persons",
    "post_permissions_query_subunits_grants": "permissions.query_subunits",
    "post_permissions_query_entities_grants": "permissions.query_entities",
    "get_permissions_query_entities_roles": "permissions.entity_roles",
    "post_permissions_query_subordinate_entities_roles": "permissions.subordinate_entity_roles",
    "post_permissions_query_authorizations_grants": "permissions.query_authorizations",
    "post_permissions_query_eu_entities_grants": "permissions.query_eu_entities",
    "post_collective_identifiers": "collective_identifiers.create",
    "post_collective_identifiers_query": "collective_identifiers.query_pages",
    "post_collective_identifiers_invoices": "collective_identifiers.invoice_pages",
    "get_collective_identifiers_ksef_by_ksef_number": "collective_identifiers.by_ksef_number_pages",
    "put_testdata_certificates_by_serial_number": "testdata.update_certificate",
}
"""Operation id -> the ``KsefClient`` attribute path of the method that calls it."""

_USES_SIMULATOR = re.compile(r"\bKsefSimulator\b|\bksef_simulator\w*")


def test_every_operation_of_the_bundled_spec_is_in_the_table() -> None:
    spec = json.loads((Path(__file__).resolve().parent.parent / "schemas" / "openapi.json").read_text("utf-8"))
    assert len(OPERATIONS) == sum(len(item) for item in spec["paths"].values())
    assert set(CLIENT_METHODS) == OPERATION_IDS


def test_every_operation_has_an_async_client_method_that_calls_it() -> None:
    client = KsefClient("http://127.0.0.1:9/v2")  # the resources exist from construction; nothing is sent
    problems = []
    for op_id, target in sorted(CLIENT_METHODS.items()):
        resource_name, method_name = target.split(".")
        method = getattr(getattr(client, resource_name, None), method_name, None)
        if method is None:
            problems.append(f"{op_id}: client.{target} does not exist")
            continue
        if not (inspect.iscoroutinefunction(method) or inspect.isasyncgenfunction(method)):
            problems.append(f"{op_id}: client.{target} is not an async method or async iterator")
            continue
        if f'"{op_id}"' not in inspect.getsource(method):
            problems.append(f"{op_id}: client.{target} does not call the operation")
    assert problems == []


def test_every_operation_has_a_simulator_handler() -> None:
    from ksef_async.testing.simulator import app  # noqa: PLC0415 - a private table, read only here

    missing = sorted(OPERATION_IDS - set(app._HANDLERS))
    assert missing == [], f"the simulator answers 501 to: {missing}"


def _string_args(call: ast.expr) -> Iterable[str]:
    """The string arguments of ``pytest.mark.covers("a", "b")`` (nothing for any other expression)."""
    if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "covers":
        for arg in call.args:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                yield arg.value


def _module_marks(tree: ast.Module) -> set[str]:
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets):
            values = node.value.elts if isinstance(node.value, ast.List | ast.Tuple) else [node.value]
            for value in values:
                found.update(_string_args(value))
    return found


def _named(name: str, ids: Iterable[str]) -> set[str]:
    """Operation ids spelled in a test name, longest first, each at ``_`` boundaries."""
    rest = name.removeprefix("test")
    found = set()
    for op_id in sorted(ids, key=len, reverse=True):
        pattern = re.compile(rf"(?:^|_){re.escape(op_id)}(?=_|$)")
        if pattern.search(rest):
            found.add(op_id)
            rest = pattern.sub("_", rest)
    return found


def covered_operations(root: Path, ids: Iterable[str] = OPERATION_IDS) -> dict[str, list[str]]:
    """Operation id -> the simulator-backed tests under ``root`` that exercise it (see the module docstring)."""
    known = frozenset(ids)
    covered: dict[str, list[str]] = {}
    for path in sorted(root.rglob("test_*.py")):
        source = path.read_text(encoding="utf-8")
        if not _USES_SIMULATOR.search(source):
            continue
        tree = ast.parse(source)
        module_claims = _module_marks(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or not node.name.startswith("test"):
                continue
            claims = set(module_claims)
            for decorator in node.decorator_list:
                claims.update(_string_args(decorator))
            claims |= _named(node.name, known)
            for op_id in claims & known:
                covered.setdefault(op_id, []).append(f"{path.relative_to(root)}::{node.name}")
    return covered


def test_every_operation_has_a_simulator_backed_test() -> None:
    covered = covered_operations(TESTS)
    missing = sorted(OPERATION_IDS - set(covered))
    assert missing == [], f"operations without a simulator-backed test: {missing}"


def test_the_scanner_notices_a_missing_test(tmp_path: Path) -> None:
    (tmp_path / "test_some.py").write_text(
        "import pytest\n"
        "from ksef_async.testing.simulator import KsefSimulator\n"
        '@pytest.mark.covers("post_tokens")\n'
        "async def test_one(sim: KsefSimulator) -> None: ...\n"
        "async def test_get_tokens_by_reference_number_works(sim: KsefSimulator) -> None: ...\n"
        "def helper_post_auth_challenge() -> None: ...\n",
        encoding="utf-8",
    )
    (tmp_path / "test_offline.py").write_text(
        '@pytest.mark.covers("get_peppol_query")\ndef test_no_simulator() -> None: ...\n', encoding="utf-8"
    )
    covered = covered_operations(tmp_path)
    assert set(covered) == {"post_tokens", "get_tokens_by_reference_number"}
    assert covered["get_tokens_by_reference_number"] == ["test_some.py::test_get_tokens_by_reference_number_works"]
    assert len(OPERATION_IDS - set(covered)) == len(OPERATION_IDS) - 2
