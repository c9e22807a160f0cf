"""XML handling: invoice forms, offline preflight and XSD validation (AuthTokenRequest/XAdES and UPO live here too)."""

from __future__ import annotations

from ksef_async.xml.forms import FORMS, FormCode, InvoiceForm, detect_form
from ksef_async.xml.validation import ValidatedInvoice, ValidationResult, check_invoice, validate_invoice

__all__ = [
    "FORMS",
    "FormCode",
    "InvoiceForm",
    "ValidatedInvoice",
    "ValidationResult",
    "check_invoice",
    "detect_form",
    "validate_invoice",
]
