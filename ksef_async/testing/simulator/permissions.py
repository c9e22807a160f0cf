"""Permission endpoints: grants, revocations, operation status, attachment consent and the eight queries.

A grant is checked when it arrives and recorded as one `PermissionGrant` per permission type; its operation
(``...-EG-...``) shows status 100 for ``processing_delay`` seconds, then 200 or the spec's failure code (410 wrong
identifier relation, 430 the context lacks the role, 440 a relation that does not allow it, 450 wrong context or
identifier type). Granted permissions are mirrored into ``state.grants``, which the XAdES login reads: a person or
entity granted ``InvoiceWrite`` in a context logs in there with it, and after revocation its next login lacks it
(tokens already issued keep theirs until ``exp``, as in KSeF). Grants from ``/testdata/permissions`` show up in the
queries as granted by ``System`` and can be revoked like the others.
"""

from __future__ import annotations

from typing import Any

from ksef_async.testing.simulator import permission_grants, permission_queries
from ksef_async.testing.simulator.permission_records import OPERATION_RETENTION, effective_grants

__all__ = ["HANDLERS", "OPERATION_RETENTION", "effective_grants"]

HANDLERS: dict[str, Any] = {**permission_grants.HANDLERS, **permission_queries.HANDLERS}
"""Handlers by operation id (merged into the simulator's routing table)."""
