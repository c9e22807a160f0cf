"""``client.permissions``: grants, revocations, operation status (with a wait helper) and the permission queries.

Grants and revocations are asynchronous in KSeF: each call returns a ``referenceNumber`` whose status
(``GET /permissions/operations/{referenceNumber}``) moves from 100 to 200 or to a failure code; `wait_for_operation`
polls it and raises `OperationFailedError` on failure. The queries page by ``pageOffset`` (a page number) and
``pageSize`` (10..100) with ``hasMore`` in the body; their methods are async iterators over every item.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol, TypeVar

from ksef_async._logging import extras, get_logger
from ksef_async.core.codes import PermissionOperationStatus
from ksef_async.core.paging import PageGuard
from ksef_async.core.polling import Backoff
from ksef_async.errors import ConfigurationError, OperationFailedError
from ksef_async.models import (
    CheckAttachmentPermissionStatusResponse,
    EntityAuthorizationGrant,
    EntityAuthorizationPermissionsGrantRequest,
    EntityAuthorizationPermissionsQueryRequest,
    EntityPermissionItem,
    EntityPermissionsGrantRequest,
    EntityPermissionsQueryRequest,
    EntityRole,
    EuEntityAdministrationPermissionsGrantRequest,
    EuEntityPermission,
    EuEntityPermissionsGrantRequest,
    EuEntityPermissionsQueryRequest,
    IndirectPermissionsGrantRequest,
    OwnerPermissionScope,
    PermissionsOperationResponse,
    PermissionsOperationStatusResponse,
    PersonalPermission,
    PersonalPermissionsQueryRequest,
    PersonPermission,
    PersonPermissionsGrantRequest,
    PersonPermissionsQueryRequest,
    QueryEntityAuthorizationPermissionsResponse,
    QueryEntityPermissionsResponse,
    QueryEntityRolesResponse,
    QueryEuEntityPermissionsResponse,
    QueryPersonalPermissionsResponse,
    QueryPersonPermissionsResponse,
    QuerySubordinateEntityRolesResponse,
    QuerySubunitPermissionsResponse,
    SubordinateEntityRole,
    SubordinateEntityRolesQueryRequest,
    SubunitPermission,
    SubunitPermissionsGrantRequest,
    SubunitPermissionsQueryRequest,
)
from ksef_async.models.converter import structure, unstructure
from ksef_async.resources._base import Resource, poll_until

__all__ = [
    "MAX_PAGE_SIZE",
    "MIN_PAGE_SIZE",
    "PERMISSION_OPERATION_PENDING_CODE",
    "PERMISSION_OPERATION_SUCCESS_CODE",
    "PermissionsResource",
]

logger = get_logger("permissions")

PERMISSION_OPERATION_PENDING_CODE = PermissionOperationStatus.ACCEPTED
"""Operation status: accepted, in progress."""
PERMISSION_OPERATION_SUCCESS_CODE = PermissionOperationStatus.SUCCESS
"""Operation status: done. Any other final code (400, 410, 420, 430, 440, 450, 500, 550) is a failure."""
MIN_PAGE_SIZE = 10
"""Smallest ``pageSize`` of the permission queries."""
MAX_PAGE_SIZE = 100
"""Largest ``pageSize`` of the permission queries."""

_Page = TypeVar("_Page", bound="_HasMore")


class _HasMore(Protocol):
    @property
    def has_more(self) -> bool: ...


def _page_size(value: int | None) -> int | None:
    if value is not None and not MIN_PAGE_SIZE <= value <= MAX_PAGE_SIZE:
        raise ConfigurationError(f"page_size must be {MIN_PAGE_SIZE}..{MAX_PAGE_SIZE}, got {value!r}")
    return value


class PermissionsResource(Resource):
    """The ``/permissions`` operations.

    The spec's tags "Nadawanie uprawnień", "Odbieranie uprawnień", "Operacje" and "Wyszukiwanie nadanych uprawnień".
    """

    # -- grants --------------------------------------------------------------------------------------------------

    async def _operation(self, op_id: str, **kwargs: Any) -> PermissionsOperationResponse:
        result = await self._get_model(op_id, PermissionsOperationResponse, **kwargs)
        logger.info(
            "permission operation started", extra=extras(operation=op_id, reference_number=result.reference_number)
        )
        return result

    async def grant_to_person(self, request: PersonPermissionsGrantRequest) -> PermissionsOperationResponse:
        """``POST /permissions/persons/grants``: permissions of a person (NIP, PESEL or fingerprint) in this context.

        Needs ``CredentialsManage``. ``EnforcementOperations`` only for an enforcement authority or a bailiff.
        """
        return await self._operation("post_permissions_persons_grants", json_body=unstructure(request))

    async def grant_to_entity(self, request: EntityPermissionsGrantRequest) -> PermissionsOperationResponse:
        """``POST /permissions/entities/grants``: ``InvoiceWrite``/``InvoiceRead`` (``canDelegate``) to an entity."""
        return await self._operation("post_permissions_entities_grants", json_body=unstructure(request))

    async def grant_authorization(
        self, request: EntityAuthorizationPermissionsGrantRequest
    ) -> PermissionsOperationResponse:
        """``POST /permissions/authorizations/grants``: one entity authorization of another entity.

        ``SelfInvoicing``, ``RRInvoicing``, ``TaxRepresentative`` or ``PefInvoicing``.
        """
        return await self._operation("post_permissions_authorizations_grants", json_body=unstructure(request))

    async def grant_indirect(self, request: IndirectPermissionsGrantRequest) -> PermissionsOperationResponse:
        """``POST /permissions/indirect/grants``: a person handles the invoices of this entity's clients.

        All of them, or the one in ``targetIdentifier``, which must have granted this entity a permission with
        ``canDelegate``.
        """
        return await self._operation("post_permissions_indirect_grants", json_body=unstructure(request))

    async def grant_subunit_admin(self, request: SubunitPermissionsGrantRequest) -> PermissionsOperationResponse:
        """``POST /permissions/subunits/grants``: an administrator (``CredentialsManage``) of a subunit.

        The subunit is an InternalId of this NIP, or a subordinate entity's NIP. Needs ``SubunitManage``.
        """
        return await self._operation("post_permissions_subunits_grants", json_body=unstructure(request))

    async def grant_eu_entity_admin(
        self, request: EuEntityAdministrationPermissionsGrantRequest
    ) -> PermissionsOperationResponse:
        """``POST /permissions/eu-entities/administration/grants``: the administrator of an EU entity.

        The administrator is named by certificate fingerprint and works in the context ``NIP-VAT UE``.
        """
        return await self._operation(
            "post_permissions_eu_entities_administration_grants", json_body=unstructure(request)
        )

    async def grant_eu_entity(self, request: EuEntityPermissionsGrantRequest) -> PermissionsOperationResponse:
        """``POST /permissions/eu-entities/grants``: a representative of the current ``NipVatUe`` context's entity.

        Needs ``VatUeManage``.
        """
        return await self._operation("post_permissions_eu_entities_grants", json_body=unstructure(request))

    # -- revocations ---------------------------------------------------------------------------------------------

    async def revoke(self, permission_id: str) -> PermissionsOperationResponse:
        """``DELETE /permissions/common/grants/{permissionId}``: revoke a permission (ids come from the queries)."""
        return await self._operation(
            "delete_permissions_common_grants_by_permission_id",
            path_params={"permissionId": permission_id},
            reference_number=permission_id,
        )

    async def revoke_authorization(self, permission_id: str) -> PermissionsOperationResponse:
        """``DELETE /permissions/authorizations/grants/{permissionId}``: revoke an entity authorization."""
        return await self._operation(
            "delete_permissions_authorizations_grants_by_permission_id",
            path_params={"permissionId": permission_id},
            reference_number=permission_id,
        )

    # -- operations ----------------------------------------------------------------------------------------------

    async def operation_status(self, reference_number: str) -> PermissionsOperationStatusResponse:
        """``GET /permissions/operations/{referenceNumber}``: the status of a grant or revocation.

        Raises:
            GoneError: The status is kept 30 days.
        """
        return await self._get_model(
            "get_permissions_operations_by_reference_number",
            PermissionsOperationStatusResponse,
            path_params={"referenceNumber": reference_number},
            reference_number=reference_number,
        )

    async def wait_for_operation(
        self, reference_number: str, *, max_wait: float | None = 120.0, backoff: Backoff | None = None
    ) -> PermissionsOperationStatusResponse:
        """Poll `operation_status` until the code is final.

        Raises:
            OperationFailedError: A final code other than 200 (with the code, description and details).
            DeadlineExceededError: Still at 100 after ``max_wait`` seconds.
        """
        status = await poll_until(
            lambda: self.operation_status(reference_number),
            lambda s: s.status.code != PERMISSION_OPERATION_PENDING_CODE,
            what=f"permission operation {reference_number}",
            max_wait=max_wait,
            backoff=backoff or Backoff(initial=0.25, factor=1.5, maximum=5.0),
        )
        if status.status.code != PERMISSION_OPERATION_SUCCESS_CODE:
            raise OperationFailedError(
                status.status.code,
                status.status.description,
                status.status.details or (),
                reference_number=reference_number,
            )
        return status

    async def attachment_status(self) -> CheckAttachmentPermissionStatusResponse:
        """``GET /permissions/attachments/status``: whether this context may send invoices with attachments."""
        return await self._get_model("get_permissions_attachments_status", CheckAttachmentPermissionStatusResponse)

    # -- queries -------------------------------------------------------------------------------------------------

    async def _offset_pages(
        self, op_id: str, model: type[_Page], body: Any, page_size: int | None
    ) -> AsyncIterator[_Page]:
        """Yield pages ``pageOffset`` 0, 1, ... while ``hasMore`` (a read: safe to retry although it is a POST)."""
        size = _page_size(page_size)
        offset = 0
        guard = PageGuard(op_id)
        while True:
            params: dict[str, str | int] = {"pageOffset": offset}
            if size is not None:
                params["pageSize"] = size
            kwargs: dict[str, Any] = {"params": params, "idempotent": True}
            if body is not None:
                kwargs["json_body"] = unstructure(body)
            response = await self._send(op_id, **kwargs)
            page = structure(response.json(), model)
            guard.page(has_more=bool(page.has_more))
            yield page
            if not page.has_more:
                return
            offset += 1

    async def query_personal(
        self, request: PersonalPermissionsQueryRequest | None = None, *, page_size: int | None = None
    ) -> AsyncIterator[PersonalPermission]:
        """``POST /permissions/query/personal/grants``: the caller's own permissions in this context, every page."""
        body = request or PersonalPermissionsQueryRequest()
        async for page in self._offset_pages(
            "post_permissions_query_personal_grants", QueryPersonalPermissionsResponse, body, page_size
        ):
            for item in page.permissions:
                yield item

    async def owner_permissions(
        self, request: PersonalPermissionsQueryRequest | None = None
    ) -> tuple[OwnerPermissionScope | str, ...]:
        """``ownerPermissions`` of ``POST /permissions/query/personal/grants``: the caller's owner rights here.

        Read from the first page; empty when KSeF lists none (the caller is not the context's owner).
        """
        body = request or PersonalPermissionsQueryRequest()
        pages = self._offset_pages(
            "post_permissions_query_personal_grants", QueryPersonalPermissionsResponse, body, MIN_PAGE_SIZE
        )
        first = await anext(pages)
        await pages.aclose()  # type: ignore[attr-defined]  # an async generator
        return tuple(first.owner_permissions or ())

    async def query_persons(
        self, request: PersonPermissionsQueryRequest, *, page_size: int | None = None
    ) -> AsyncIterator[PersonPermission]:
        """``POST /permissions/query/persons/grants``: permissions of persons and entities, every page.

        In force in this context (``PermissionsInCurrentContext``) or granted here by the caller
        (``PermissionsGrantedInCurrentContext``).
        """
        async for page in self._offset_pages(
            "post_permissions_query_persons_grants", QueryPersonPermissionsResponse, request, page_size
        ):
            for item in page.permissions:
                yield item

    async def query_subunits(
        self, request: SubunitPermissionsQueryRequest | None = None, *, page_size: int | None = None
    ) -> AsyncIterator[SubunitPermission]:
        """``POST /permissions/query/subunits/grants``: administrators of subunits granted from this context."""
        body = request or SubunitPermissionsQueryRequest()
        async for page in self._offset_pages(
            "post_permissions_query_subunits_grants", QuerySubunitPermissionsResponse, body, page_size
        ):
            for item in page.permissions:
                yield item

    async def query_entities(
        self, request: EntityPermissionsQueryRequest | None = None, *, page_size: int | None = None
    ) -> AsyncIterator[EntityPermissionItem]:
        """``POST /permissions/query/entities/grants``: invoice permissions other entities gave this context."""
        body = request or EntityPermissionsQueryRequest()
        async for page in self._offset_pages(
            "post_permissions_query_entities_grants", QueryEntityPermissionsResponse, body, page_size
        ):
            for item in page.permissions:
                yield item

    async def entity_roles(self, *, page_size: int | None = None) -> AsyncIterator[EntityRole]:
        """``GET /permissions/query/entities/roles``: the roles of this context's entity (bailiff, JST, VAT group)."""
        async for page in self._offset_pages(
            "get_permissions_query_entities_roles", QueryEntityRolesResponse, None, page_size
        ):
            for item in page.roles:
                yield item

    async def subordinate_entity_roles(
        self, request: SubordinateEntityRolesQueryRequest | None = None, *, page_size: int | None = None
    ) -> AsyncIterator[SubordinateEntityRole]:
        """``POST /permissions/query/subordinate-entities/roles``: subordinate JSTs or VAT group members."""
        body = request or SubordinateEntityRolesQueryRequest()
        async for page in self._offset_pages(
            "post_permissions_query_subordinate_entities_roles", QuerySubordinateEntityRolesResponse, body, page_size
        ):
            for item in page.roles:
                yield item

    async def query_authorizations(
        self, request: EntityAuthorizationPermissionsQueryRequest, *, page_size: int | None = None
    ) -> AsyncIterator[EntityAuthorizationGrant]:
        """``POST /permissions/query/authorizations/grants``: entity authorizations ``Granted`` or ``Received``."""
        async for page in self._offset_pages(
            "post_permissions_query_authorizations_grants",
            QueryEntityAuthorizationPermissionsResponse,
            request,
            page_size,
        ):
            for item in page.authorization_grants:
                yield item

    async def query_eu_entities(
        self, request: EuEntityPermissionsQueryRequest | None = None, *, page_size: int | None = None
    ) -> AsyncIterator[EuEntityPermission]:
        """``POST /permissions/query/eu-entities/grants``: administrators and representatives of EU entities."""
        body = request or EuEntityPermissionsQueryRequest()
        async for page in self._offset_pages(
            "post_permissions_query_eu_entities_grants", QueryEuEntityPermissionsResponse, body, page_size
        ):
            for item in page.permissions:
                yield item
