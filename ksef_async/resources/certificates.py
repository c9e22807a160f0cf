"""``client.certificates``: KSeF certificates (limits, enrollment with a generated CSR, retrieval, query, revoke)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterable

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ksef_async.core.certs import KeyAlgorithm, PrivateKey
from ksef_async.core.csr import build_csr, generate_key
from ksef_async.core.paging import PageGuard
from ksef_async.core.polling import Backoff
from ksef_async.errors import ConfigurationError, IntegrityError, OperationFailedError
from ksef_async.models import (
    CertificateEnrollmentDataResponse,
    CertificateEnrollmentStatusResponse,
    CertificateLimitsResponse,
    CertificateListItem,
    CertificateRevocationReason,
    EnrollCertificateRequest,
    EnrollCertificateResponse,
    KsefCertificateType,
    QueryCertificatesRequest,
    QueryCertificatesResponse,
    RetrieveCertificatesListItem,
    RetrieveCertificatesRequest,
    RetrieveCertificatesResponse,
    RevokeCertificateRequest,
)
from ksef_async.models.converter import unstructure
from ksef_async.resources._base import Resource, poll_until

__all__ = ["CertificatesResource", "EnrolledCertificate"]

_IN_PROGRESS = 100
_ISSUED = 200
_MAX_RETRIEVE = 10
_DER = serialization.Encoding.DER
_SPKI = serialization.PublicFormat.SubjectPublicKeyInfo


@attrs.frozen
class EnrolledCertificate:
    """What `CertificatesResource.enroll` produced: the new key, the issued certificate and its KSeF data.

    Attributes:
        key: The private key generated for the request (never shown in a repr).
        certificate: The certificate KSeF issued.
        serial_number: ``certificateSerialNumber`` (16 hex digits).
        reference_number: The enrollment's reference number.
        certificate_type: ``Authentication`` or ``Offline``.
    """

    key: PrivateKey = attrs.field(repr=False)
    certificate: x509.Certificate
    serial_number: str
    reference_number: str
    certificate_type: KsefCertificateType | str


class CertificatesResource(Resource):
    """The ``/certificates`` operations.

    Enrollment needs a login with a signature (XAdES): the enrollment data describe the certificate used to log in.
    """

    async def limits(self) -> CertificateLimitsResponse:
        """``GET /certificates/limits``: how many enrollments and certificates the subject has left."""
        return await self._get_model("get_certificates_limits", CertificateLimitsResponse)

    async def enrollment_data(self) -> CertificateEnrollmentDataResponse:
        """``GET /certificates/enrollments/data``: the subject attributes a CSR must carry (25001: token login)."""
        return await self._get_model("get_certificates_enrollments_data", CertificateEnrollmentDataResponse)

    async def submit_enrollment(self, request: EnrollCertificateRequest) -> EnrollCertificateResponse:
        """``POST /certificates/enrollments``: send a CSR; poll `enrollment_status` for the outcome."""
        return await self._get_model(
            "post_certificates_enrollments", EnrollCertificateResponse, json_body=unstructure(request)
        )

    async def enrollment_status(self, reference_number: str) -> CertificateEnrollmentStatusResponse:
        """``GET /certificates/enrollments/{referenceNumber}``: 100 in progress, 200 issued, other codes failed."""
        return await self._get_model(
            "get_certificates_enrollments_by_reference_number",
            CertificateEnrollmentStatusResponse,
            path_params={"referenceNumber": reference_number},
            reference_number=reference_number,
        )

    async def wait_for_enrollment(
        self, reference_number: str, *, max_wait: float | None = 300.0, backoff: Backoff | None = None
    ) -> str:
        """Poll an enrollment until it ends; return the issued ``certificateSerialNumber``.

        Raises:
            OperationFailedError: The enrollment ended with a code other than 200.
            DeadlineExceededError: Still in progress after ``max_wait`` seconds.
        """
        status = await poll_until(
            lambda: self.enrollment_status(reference_number),
            lambda s: s.status.code != _IN_PROGRESS,
            what=f"certificate enrollment {reference_number}",
            max_wait=max_wait,
            backoff=backoff,
        )
        if status.status.code != _ISSUED or not status.certificate_serial_number:
            raise OperationFailedError(
                status.status.code,
                status.status.description,
                status.status.details or (),
                reference_number=reference_number,
            )
        return status.certificate_serial_number

    async def enroll(
        self,
        name: str,
        certificate_type: KsefCertificateType | str = KsefCertificateType.AUTHENTICATION,
        *,
        algorithm: KeyAlgorithm = "ec",
        key: PrivateKey | None = None,
        valid_from: dt.datetime | None = None,
        max_wait: float | None = 300.0,
        backoff: Backoff | None = None,
    ) -> EnrolledCertificate:
        """Get a KSeF certificate end to end: enrollment data, key, CSR, enrollment, polling, retrieval.

        Args:
            name: ``certificateName`` (5 to 100 letters, digits, spaces, ``_`` or ``-``).
            certificate_type: ``Authentication`` (to log in) or ``Offline`` (to sign KOD II links).
            algorithm: Key to generate when ``key`` is None: ``"ec"`` (P-256) or ``"rsa"`` (2048).
            key: Use this key instead of generating one.
            valid_from: Start of validity (default: when issued).
            max_wait: Seconds to wait for the enrollment to finish.
            backoff: Waits between status polls.

        Raises:
            ConfigurationError: A key KSeF refuses.
            OperationFailedError: The enrollment was rejected (or the issued certificate could not be retrieved).
            IntegrityError: The issued certificate is not for the generated key.
        """
        data = await self.enrollment_data()
        key = key if key is not None else generate_key(algorithm)
        request = EnrollCertificateRequest(
            certificate_name=name, certificate_type=certificate_type, csr=build_csr(data, key), valid_from=valid_from
        )
        submitted = await self.submit_enrollment(request)
        serial = await self.wait_for_enrollment(submitted.reference_number, max_wait=max_wait, backoff=backoff)
        items = [i for i in await self.retrieve([serial]) if i.certificate_serial_number == serial]
        if len(items) != 1:
            raise OperationFailedError(
                _ISSUED,
                f"certificate {serial} was issued but POST /certificates/retrieve did not return it",
                reference_number=submitted.reference_number,
            )
        (item,) = items
        certificate = x509.load_der_x509_certificate(item.certificate)
        if certificate.public_key().public_bytes(_DER, _SPKI) != key.public_key().public_bytes(_DER, _SPKI):
            raise IntegrityError(f"certificate {serial} does not certify the key of the request")
        return EnrolledCertificate(
            key=key,
            certificate=certificate,
            serial_number=serial,
            reference_number=submitted.reference_number,
            certificate_type=item.certificate_type,
        )

    async def retrieve(self, serial_numbers: Iterable[str]) -> tuple[RetrieveCertificatesListItem, ...]:
        """``POST /certificates/retrieve``: the certificates (DER) with these serial numbers (1 to 10 per call).

        Raises:
            ConfigurationError: No serial number, or more than 10.
        """
        serials = tuple(serial_numbers)
        if not 1 <= len(serials) <= _MAX_RETRIEVE:
            raise ConfigurationError(f"retrieve takes 1 to {_MAX_RETRIEVE} serial numbers, got {len(serials)}")
        request = RetrieveCertificatesRequest(certificate_serial_numbers=serials)
        response = await self._get_model(
            "post_certificates_retrieve", RetrieveCertificatesResponse, json_body=unstructure(request), idempotent=True
        )
        return response.certificates

    async def query(
        self, request: QueryCertificatesRequest | None = None, *, page_size: int | None = None
    ) -> AsyncIterator[CertificateListItem]:
        """``POST /certificates/query``: the subject's certificates matching ``request``, newest request first.

        Pages by ``pageOffset`` until ``hasMore`` is false.

        Args:
            request: Filters (serial number, name, type, status, expiresAfter); none: every certificate.
            page_size: 10 to 50 per page.
        """
        body = unstructure(request or QueryCertificatesRequest())
        offset = 0
        guard = PageGuard("post_certificates_query")
        while True:
            params: dict[str, int] = {"pageOffset": offset}
            if page_size is not None:
                params["pageSize"] = page_size
            page = await self._get_model(
                "post_certificates_query", QueryCertificatesResponse, params=params, json_body=body, idempotent=True
            )
            guard.page(items=len(page.certificates), has_more=bool(page.has_more))
            for item in page.certificates:
                yield item
            if not page.has_more:
                return
            offset += 1

    async def revoke(self, serial_number: str, reason: CertificateRevocationReason | str | None = None) -> None:
        """``POST /certificates/{certificateSerialNumber}/revoke`` (not after a KSeF-token login).

        Raises:
            BadRequestError: 25008 unknown certificate, 25009 already revoked, blocked or invalid.
        """
        body = unstructure(RevokeCertificateRequest(revocation_reason=reason))
        await self._send(
            "post_certificates_revoke", path_params={"certificateSerialNumber": serial_number}, json_body=body
        )
