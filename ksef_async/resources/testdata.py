"""``client.testdata``: the TEST environment's ``/testdata/*`` operations (subjects, persons, permissions, limits)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from ksef_async.errors import ConfigurationError
from ksef_async.models import (
    AttachmentPermissionGrantRequest,
    AttachmentPermissionRevokeRequest,
    BlockContextAuthenticationRequest,
    PersonCreateRequest,
    PersonRemoveRequest,
    SetRateLimitsRequest,
    SetSessionLimitsRequest,
    SetSubjectLimitsRequest,
    SubjectCreateRequest,
    SubjectRemoveRequest,
    TestDataPermissionsGrantRequest,
    TestDataPermissionsRevokeRequest,
    TestDataUpdateCertificateRequest,
    UnblockContextAuthenticationRequest,
)
from ksef_async.models.converter import unstructure
from ksef_async.resources._base import Resource

__all__ = ["TestDataResource"]

_SERIAL_RE = re.compile(r"^[0-9A-F]{16}$")


class TestDataResource(Resource):
    """The ``/testdata/*`` operations; they exist only on the TEST environment (and the simulator).

    The subject, person, permission and attachment operations are public (no login); the limit operations act on
    the logged-in context or subject.
    """

    __test__ = False  # not a pytest test class despite the name

    async def _post(self, op_id: str, body: Any = None) -> None:
        await self._send(op_id, json_body=None if body is None else unstructure(body))

    async def create_subject(self, request: SubjectCreateRequest) -> None:
        """``POST /testdata/subject``: register a VAT group, local government unit or enforcement authority."""
        await self._post("post_testdata_subject", request)

    async def remove_subject(self, request: SubjectRemoveRequest) -> None:
        """``POST /testdata/subject/remove``."""
        await self._post("post_testdata_subject_remove", request)

    async def create_person(self, request: PersonCreateRequest) -> None:
        """``POST /testdata/person``: a person (PESEL) owning a NIP, maybe a bailiff, maybe deceased."""
        await self._post("post_testdata_person", request)

    async def remove_person(self, request: PersonRemoveRequest) -> None:
        """``POST /testdata/person/remove``."""
        await self._post("post_testdata_person_remove", request)

    async def grant_permissions(self, request: TestDataPermissionsGrantRequest) -> None:
        """``POST /testdata/permissions``: give an identifier permissions in a context without a login."""
        await self._post("post_testdata_permissions", request)

    async def revoke_permissions(self, request: TestDataPermissionsRevokeRequest) -> None:
        """``POST /testdata/permissions/revoke``."""
        await self._post("post_testdata_permissions_revoke", request)

    async def allow_attachments(self, request: AttachmentPermissionGrantRequest) -> None:
        """``POST /testdata/attachment``: allow invoices with attachments for a NIP."""
        await self._post("post_testdata_attachment", request)

    async def revoke_attachments(self, request: AttachmentPermissionRevokeRequest) -> None:
        """``POST /testdata/attachment/revoke``."""
        await self._post("post_testdata_attachment_revoke", request)

    async def block_context(self, request: BlockContextAuthenticationRequest) -> None:
        """``POST /testdata/context/block``: later logins in the context end with status 480."""
        await self._post("post_testdata_context_block", request)

    async def unblock_context(self, request: UnblockContextAuthenticationRequest) -> None:
        """``POST /testdata/context/unblock``."""
        await self._post("post_testdata_context_unblock", request)

    async def set_session_limits(self, request: SetSessionLimitsRequest) -> None:
        """``POST /testdata/limits/context/session``: session limits of the logged-in context."""
        await self._post("post_testdata_limits_context_session", request)

    async def reset_session_limits(self) -> None:
        """``DELETE /testdata/limits/context/session``: back to the default session limits."""
        await self._send("delete_testdata_limits_context_session")

    async def set_certificate_limits(self, request: SetSubjectLimitsRequest) -> None:
        """``POST /testdata/limits/subject/certificate``: enrollment and certificate limits of the subject."""
        await self._post("post_testdata_limits_subject_certificate", request)

    async def reset_certificate_limits(self) -> None:
        """``DELETE /testdata/limits/subject/certificate``: back to the default certificate limits."""
        await self._send("delete_testdata_limits_subject_certificate")

    async def set_rate_limits(self, request: SetRateLimitsRequest) -> None:
        """``POST /testdata/rate-limits``: custom API rate limits (the 13 groups of ``ApiRateLimitsOverride``)."""
        await self._post("post_testdata_rate_limits", request)

    async def reset_rate_limits(self) -> None:
        """``DELETE /testdata/rate-limits``: back to the environment's default rate limits."""
        await self._send("delete_testdata_rate_limits")

    async def production_rate_limits(self) -> None:
        """``POST /testdata/rate-limits/production``: apply the production rate limits."""
        await self._send("post_testdata_rate_limits_production")

    async def update_certificate(self, serial_number: str, valid_to: dt.datetime) -> None:
        """``PUT /testdata/certificates/{serialNumber}``: shorten a KSeF certificate's ``validTo`` (simulate expiry).

        Args:
            serial_number: ``certificateSerialNumber``, 16 upper-case hex digits.
            valid_to: The new end of validity, timezone-aware; KSeF refuses one later than the current.

        Raises:
            ConfigurationError: A malformed serial number or a naive ``valid_to``, before anything is sent.
        """
        if not isinstance(serial_number, str) or not _SERIAL_RE.fullmatch(serial_number):
            raise ConfigurationError(f"serialNumber: 16 upper-case hex digits expected, got {serial_number!r}")
        if not isinstance(valid_to, dt.datetime) or valid_to.tzinfo is None or valid_to.utcoffset() is None:
            raise ConfigurationError("validTo: a timezone-aware datetime.datetime is required")
        request = TestDataUpdateCertificateRequest(valid_to=valid_to)
        await self._send(
            "put_testdata_certificates_by_serial_number",
            path_params={"serialNumber": serial_number},
            json_body=unstructure(request),
        )

    async def expire_certificate(self, serial_number: str, at: dt.datetime) -> None:
        """Alias of `update_certificate`: the certificate expires at ``at``."""
        await self.update_certificate(serial_number, at)
