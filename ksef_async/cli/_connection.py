"""Connection options shared by every command that talks to KSeF (where, which context, how to log in)."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from cyclopts import Group, Parameter

from ksef_async.auth import CertificateCredentials, Credentials, KsefTokenCredentials
from ksef_async.cli._exit_codes import EXIT_LOCAL_IO, EXIT_OK, EXIT_REJECTED, EXIT_USAGE
from ksef_async.client import ClientConfig, Environment, KsefClient
from ksef_async.core.identifiers import nip_problem
from ksef_async.errors import (
    AuthenticationFailedError,
    ConfigurationError,
    CryptoError,
    InvoiceError,
    KsefError,
)
from ksef_async.xml.auth_request import AuthRequestError, ContextIdentifier

__all__ = [
    "CONNECTION_GROUP",
    "EXIT_LOCAL_IO",
    "EXIT_OK",
    "EXIT_REJECTED",
    "EXIT_USAGE",
    "Connection",
    "os_error_line",
    "run_async",
]


T = TypeVar("T")

CONNECTION_GROUP = Group("Connection", sort_key=100)
"""Help panel of the connection options."""

_ENVIRONMENTS = {"test": Environment.TEST, "demo": Environment.DEMO, "prod": Environment.PROD}


@Parameter(name="*", group=CONNECTION_GROUP)
@dataclasses.dataclass(frozen=True, kw_only=True)
class Connection:
    """Connection options; add ``connection: Connection = Connection()`` to a command to get them all.

    Attributes:
        base_url: API base URL, e.g. a simulator's ``http://127.0.0.1:8090/v2``.
        env: KSeF environment: test, demo or prod.
        nip: NIP of the context to log in to.
        internal_id: InternalId context (``NIP-5digits``) instead of a NIP.
        token: KSeF token. Prefer the KSEF_TOKEN environment variable: a value given on the command line is
            visible to other users in the process list and kept in shell history (--token still works).
        cert: Certificate (PEM) for an XAdES login.
        key: Private key (PEM) of the certificate.
        pkcs12: PKCS#12 (.p12/.pfx) file with the key and certificate, instead of --cert/--key.
        key_password: Password of the private key or PKCS#12 file. Prefer the KSEF_KEY_PASSWORD environment
            variable (a command-line value is visible in the process list).
        fingerprint: Identify by the certificate's SHA-256 fingerprint instead of its subject.
        limits_url: Where the rate-limit windows live: ``redis://host:6379/0`` shares them with every process and
            machine using that Redis (needs ``ksef-async[redis]``); default: this process only.
    """

    base_url: Annotated[str | None, Parameter(env_var="KSEF_BASE_URL")] = None
    env: Annotated[Literal["test", "demo", "prod"] | None, Parameter(env_var="KSEF_ENV")] = None
    nip: Annotated[str | None, Parameter(env_var="KSEF_NIP")] = None
    internal_id: str | None = None
    token: Annotated[str | None, Parameter(env_var="KSEF_TOKEN", show_default=False)] = dataclasses.field(
        default=None, repr=False
    )
    cert: Path | None = None
    key: Path | None = None
    pkcs12: Path | None = None
    key_password: Annotated[str | None, Parameter(env_var="KSEF_KEY_PASSWORD", show_default=False)] = dataclasses.field(
        default=None, repr=False
    )
    fingerprint: Annotated[bool, Parameter(negative="")] = False
    limits_url: Annotated[str | None, Parameter(env_var="KSEF_ASYNC_LIMITS_URL")] = None

    def resolved_base_url(self) -> str:
        """Return the API base URL.

        Raises:
            ConfigurationError: Neither or both of --base-url and --env.
        """
        if (self.base_url is None) == (self.env is None):
            raise ConfigurationError("give exactly one of --base-url and --env (or KSEF_BASE_URL / KSEF_ENV)")
        if self.env is not None:
            return _ENVIRONMENTS[self.env].value
        assert self.base_url is not None
        return self.base_url

    def context(self) -> ContextIdentifier:
        """Return the context identifier.

        Raises:
            ConfigurationError: Neither or both of --nip and --internal-id, or a malformed value.
        """
        if (self.nip is None) == (self.internal_id is None):
            raise ConfigurationError("give exactly one of --nip and --internal-id (or KSEF_NIP)")
        # Refused locally with the reason: KSeF would answer a wrong checksum only after the login round trips.
        nip, option = (self.nip, "--nip") if self.nip is not None else ((self.internal_id or "")[:10], "--internal-id")
        problem = nip_problem(nip)
        if problem is not None:
            raise ConfigurationError(f"{option}: {problem}")
        try:
            if self.nip is not None:
                return ContextIdentifier("Nip", self.nip)
            assert self.internal_id is not None
            return ContextIdentifier("InternalId", self.internal_id)
        except AuthRequestError as exc:
            raise ConfigurationError(str(exc)) from None

    def credentials(self) -> Credentials:
        """Return the credentials: a KSeF token, a PEM certificate and key, or a PKCS#12 file.

        Raises:
            ConfigurationError: No credentials, several kinds at once, or an unreadable file.
            CryptoError: The key cannot be decrypted or does not match the certificate.
        """
        kinds = [self.token is not None, self.cert is not None or self.key is not None, self.pkcs12 is not None]
        if sum(kinds) != 1:
            raise ConfigurationError(
                "give exactly one way to log in: KSEF_TOKEN (or --token), --cert with --key, or --pkcs12"
            )
        subject: Literal["certificateSubject", "certificateFingerprint"] = (
            "certificateFingerprint" if self.fingerprint else "certificateSubject"
        )
        password = self.key_password.encode() if self.key_password else None
        if self.token is not None:
            return KsefTokenCredentials(self.token)
        if self.pkcs12 is not None:
            return CertificateCredentials.from_pkcs12(
                _read(self.pkcs12, "--pkcs12"), password, subject_identifier_type=subject
            )
        if self.cert is None or self.key is None:
            raise ConfigurationError("--cert and --key go together")
        return CertificateCredentials.from_pem(
            _read(self.cert, "--cert"), _read(self.key, "--key"), password, subject_identifier_type=subject
        )

    def client(self, config: ClientConfig | None = None) -> KsefClient:
        """Return a (not yet opened) client for these options.

        Raises:
            ConfigurationError: Missing or conflicting options.
            CryptoError: Unusable key material.
        """
        return KsefClient(
            self.resolved_base_url(),
            credentials=self.credentials(),
            context=self.context(),
            config=config,
            rate_limits=self.limits_url,
        )


def _read(path: Path, option: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{option} {path}: cannot read the file ({exc.strerror or exc})") from None


def run_async(main: Callable[[], Awaitable[T]], finish: Callable[[T], int]) -> int:
    """Run a command's coroutine, then ``finish`` (synchronous: printing, writing files) on its result.

    The library's errors become a message on stderr and an exit code (messages from `ksef_async.errors` never
    carry secrets); an operating-system error (disk full, permission denied, a missing directory, a file name
    the file system cannot take) becomes one line naming the path and `EXIT_LOCAL_IO`, never a traceback.
    """
    try:
        return finish(asyncio.run(_as_coroutine(main)))
    except OSError as exc:
        print(f"ksef-async: {os_error_line(exc)}", file=sys.stderr)
        return EXIT_LOCAL_IO
    except UnicodeError as exc:
        print(f"ksef-async: a file name cannot be used: {exc}", file=sys.stderr)
        return EXIT_LOCAL_IO
    except InvoiceError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{len({p.file for p in exc.problems})} invalid invoice(s): nothing was sent", file=sys.stderr)
        return EXIT_REJECTED
    except (ConfigurationError, CryptoError, AuthenticationFailedError) as exc:
        print(f"ksef-async: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KsefError as exc:
        print(f"ksef-async: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_REJECTED


def os_error_line(exc: OSError) -> str:
    """Return one line for an operating-system error: the path(s), then the reason."""
    paths = " -> ".join(str(name) for name in (exc.filename, exc.filename2) if name is not None)
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{paths}: {reason}" if paths else f"local file error: {reason}"


async def _as_coroutine(main: Callable[[], Awaitable[T]]) -> T:
    return await main()
