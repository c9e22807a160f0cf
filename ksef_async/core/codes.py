"""Every KSeF status and exception code the library acts on, as enums with the spec's meaning (`ksef_async._codes`)."""

from __future__ import annotations

from ksef_async._codes import (
    EXPORT_FAILURES,
    INVOICE_PENDING,
    SESSION_PENDING,
    AuthenticationStatus,
    CertificateEnrollmentStatus,
    ExceptionCode,
    ExportStatus,
    InvoiceStatus,
    PermissionOperationStatus,
    SessionStatus,
    is_final_failure,
)

__all__ = [
    "EXPORT_FAILURES",
    "INVOICE_PENDING",
    "SESSION_PENDING",
    "AuthenticationStatus",
    "CertificateEnrollmentStatus",
    "ExceptionCode",
    "ExportStatus",
    "InvoiceStatus",
    "PermissionOperationStatus",
    "SessionStatus",
    "is_final_failure",
]
