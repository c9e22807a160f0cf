"""Test support shipped for users' own CI: the KSeF simulator, an invoice factory, test certificates, a pytest plugin.

The names below are imported on first use (PEP 562), so the pytest plugin (`ksef_async.testing.pytest_plugin`),
which pytest loads in every run, costs nothing until a fixture runs.
"""

import typing

from ksef_async import _lazy

if typing.TYPE_CHECKING:
    from ksef_async.core.ratelimit import WindowLimits
    from ksef_async.testing.certificates import TestCertificate, generate_person_certificate, generate_seal_certificate
    from ksef_async.testing.invoices import InvoiceFactory, write_invoices
    from ksef_async.testing.simulator import KsefSimulator, serve_in_thread
    from ksef_async.testing.simulator.retrieval import seed_invoices

_EXPORTS = {
    "InvoiceFactory": "ksef_async.testing.invoices",
    "KsefSimulator": "ksef_async.testing.simulator",
    "TestCertificate": "ksef_async.testing.certificates",
    "WindowLimits": "ksef_async.core.ratelimit",
    "generate_person_certificate": "ksef_async.testing.certificates",
    "generate_seal_certificate": "ksef_async.testing.certificates",
    "seed_invoices": "ksef_async.testing.simulator.retrieval",
    "serve_in_thread": "ksef_async.testing.simulator",
    "write_invoices": "ksef_async.testing.invoices",
}

__all__ = [
    "InvoiceFactory",
    "KsefSimulator",
    "TestCertificate",
    "WindowLimits",
    "generate_person_certificate",
    "generate_seal_certificate",
    "seed_invoices",
    "serve_in_thread",
    "write_invoices",
]

if not typing.TYPE_CHECKING:  # type checkers see the imports above; a typo stays an error for them
    __getattr__, __dir__ = _lazy.lazy_exports(__name__, globals(), _EXPORTS)
