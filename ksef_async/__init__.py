"""Asyncio client for Poland's KSeF 2.x e-invoicing API."""

__version__ = "0.1.0"

# The version is set before these imports: ksef_async.client reads it for the User-Agent.
from ksef_async.auth import CertificateCredentials, KsefTokenCredentials
from ksef_async.batch.engine import SendConfig
from ksef_async.batch.reconcile import BatchReport
from ksef_async.batch.send import resume_batch, send_batch
from ksef_async.client import ClientConfig, Environment, KsefClient
from ksef_async.core.system_warnings import SystemWarning
from ksef_async.online import InvoiceOutcome, OnlineSendResult, SessionOutcome, send_online, send_technical_correction
from ksef_async.online_retry import SessionUnavailablePolicy
from ksef_async.online_sender import OnlineSender
from ksef_async.transport import KsefSystemWarning, RetryPolicy
from ksef_async.xml.auth_request import ContextIdentifier

__all__ = [
    "BatchReport",
    "CertificateCredentials",
    "ClientConfig",
    "ContextIdentifier",
    "Environment",
    "InvoiceOutcome",
    "KsefClient",
    "KsefSystemWarning",
    "KsefTokenCredentials",
    "OnlineSendResult",
    "OnlineSender",
    "RetryPolicy",
    "SendConfig",
    "SessionOutcome",
    "SessionUnavailablePolicy",
    "SystemWarning",
    "__version__",
    "resume_batch",
    "send_batch",
    "send_online",
    "send_technical_correction",
]
