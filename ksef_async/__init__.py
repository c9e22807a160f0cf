"""Asyncio client for Poland's KSeF 2.x e-invoicing API.

The public API is the names in ``__all__`` of this package and of the modules listed in CONTRIBUTING.md ("Public
API"); everything else may change without notice. ``import ksef_async`` is cheap: each name below is imported on
first use (PEP 562), so a program pays only for what it touches.

To export a name: add ``"Name": "ksef_async.module"`` to ``_EXPORTS`` (``"module:attribute"`` when the name differs),
the same import under ``TYPE_CHECKING`` (for type checkers and IDEs) and the name to ``__all__``; then update
``tests/public_api.txt`` (``python tools/public_api.py --write``).
"""

import typing

from ksef_async import _lazy
from ksef_async._version import __version__

if typing.TYPE_CHECKING:
    from ksef_async.auth import CertificateCredentials, Credentials, KsefTokenCredentials
    from ksef_async.batch.engine import SendConfig
    from ksef_async.batch.reconcile import BatchReport
    from ksef_async.batch.send import resume_batch, send_batch
    from ksef_async.client import ClientConfig, Environment, KsefClient
    from ksef_async.core.system_warnings import SystemWarning
    from ksef_async.online import (
        InvoiceOutcome,
        OnlineSendResult,
        SessionOutcome,
        send_online,
        send_technical_correction,
    )
    from ksef_async.online_retry import SessionUnavailablePolicy
    from ksef_async.online_sender import OnlineSender
    from ksef_async.outage import OutageGuard, OutagePolicy
    from ksef_async.resources.collective import payment as collective_payment
    from ksef_async.status_service import StatusServiceClient
    from ksef_async.transport import KsefSystemWarning, RetryPolicy
    from ksef_async.xml.auth_request import ContextIdentifier

_EXPORTS = {
    "BatchReport": "ksef_async.batch.reconcile",
    "CertificateCredentials": "ksef_async.auth",
    "ClientConfig": "ksef_async.client",
    "ContextIdentifier": "ksef_async.xml.auth_request",
    "Credentials": "ksef_async.auth",
    "Environment": "ksef_async.client",
    "InvoiceOutcome": "ksef_async.online",
    "KsefClient": "ksef_async.client",
    "KsefSystemWarning": "ksef_async.transport",
    "KsefTokenCredentials": "ksef_async.auth",
    "OnlineSendResult": "ksef_async.online",
    "OnlineSender": "ksef_async.online_sender",
    "OutageGuard": "ksef_async.outage",
    "OutagePolicy": "ksef_async.outage",
    "RetryPolicy": "ksef_async.transport",
    "SendConfig": "ksef_async.batch.engine",
    "SessionOutcome": "ksef_async.online",
    "SessionUnavailablePolicy": "ksef_async.online_retry",
    "StatusServiceClient": "ksef_async.status_service",
    "SystemWarning": "ksef_async.core.system_warnings",
    "collective_payment": "ksef_async.resources.collective:payment",
    "resume_batch": "ksef_async.batch.send",
    "send_batch": "ksef_async.batch.send",
    "send_online": "ksef_async.online",
    "send_technical_correction": "ksef_async.online",
}

__all__ = [
    "BatchReport",
    "CertificateCredentials",
    "ClientConfig",
    "ContextIdentifier",
    "Credentials",
    "Environment",
    "InvoiceOutcome",
    "KsefClient",
    "KsefSystemWarning",
    "KsefTokenCredentials",
    "OnlineSendResult",
    "OnlineSender",
    "OutageGuard",
    "OutagePolicy",
    "RetryPolicy",
    "SendConfig",
    "SessionOutcome",
    "SessionUnavailablePolicy",
    "StatusServiceClient",
    "SystemWarning",
    "__version__",
    "collective_payment",
    "resume_batch",
    "send_batch",
    "send_online",
    "send_technical_correction",
]

if not typing.TYPE_CHECKING:  # type checkers see the imports above; a typo stays an error for them
    __getattr__, __dir__ = _lazy.lazy_exports(__name__, globals(), _EXPORTS)
