"""`KsefClient`: the one entry point; owns the HTTP sessions, the shared rate limiter, the tokens and the resources.

::

    async with KsefClient(Environment.TEST, credentials=KsefTokenCredentials(token), context=nip) as client:
        session = await client.online.open(form.form_code)
        ...

Layout: one pooled aiohttp session for the API (``X-Error-Format: problem-details`` on every request, bearer token,
rate limiter, retries: `ksef_async.transport.ApiTransport`) and one storage session for pre-signed URLs (no
``Authorization``, its own connection limit, connect/read timeouts instead of a total timeout, for uploads that may
take minutes).
"""

from __future__ import annotations

import enum
import ipaddress
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import aiohttp
import attrs

from ksef_async._logging import bind_log_context, extras, get_logger
from ksef_async._version import __version__
from ksef_async.auth import Authenticator, CertificateCredentials, Credentials, KsefTokenCredentials
from ksef_async.core.baseurl import check_base_url
from ksef_async.core.polling import Backoff
from ksef_async.core.system_warnings import SystemWarningHandler, SystemWarningLog, check_test_warning_text
from ksef_async.core.validators import at_least_one, non_negative, positive
from ksef_async.errors import ConfigurationError
from ksef_async.operations import API_RATE_LIMITS
from ksef_async.ratelimit import RateLimiter
from ksef_async.ratelimit_config import RateLimitsSetting, resolve_limiter
from ksef_async.resources._features import check_features
from ksef_async.resources.auth import AuthResource
from ksef_async.resources.batch import BatchResource
from ksef_async.resources.certificates import CertificatesResource
from ksef_async.resources.collective import CollectiveIdentifiersResource
from ksef_async.resources.invoices import InvoicesResource
from ksef_async.resources.limits import LimitsResource, RateLimitsResource
from ksef_async.resources.online import OnlineResource
from ksef_async.resources.peppol import PeppolResource
from ksef_async.resources.permissions import PermissionsResource
from ksef_async.resources.retrieval import RetrievalResource
from ksef_async.resources.security import SecurityResource
from ksef_async.resources.sessions import SessionsResource
from ksef_async.resources.testdata import TestDataResource
from ksef_async.resources.tokens import TokensResource
from ksef_async.transport import ApiTransport, RetryPolicy, StorageTransport
from ksef_async.xml.auth_request import AuthRequestError, ContextIdentifier

__all__ = ["ClientConfig", "Environment", "KsefClient"]

logger = get_logger("client")


class Environment(enum.StrEnum):
    """The KSeF environments and their API base URLs (official docs ``srodowiska.md``; the spec's ``servers``)."""

    TEST = "https://api-test.ksef.mf.gov.pl/v2"
    """TEST (TE): self-signed certificates accepted; data shared between integrators."""
    DEMO = "https://api-demo.ksef.mf.gov.pl/v2"
    """DEMO (TR, pre-production)."""
    PROD = "https://api.ksef.mf.gov.pl/v2"
    """Production (PRD)."""


def _features(value: Any) -> tuple[str, ...]:
    return check_features(value, field="ClientConfig.features")


def _callable_or_none(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not callable(value):
        raise ConfigurationError(f"ClientConfig.{attribute.name} must be a callable or None, got {value!r}")


def _test_warning_text(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    reason = check_test_warning_text(value) if isinstance(value, str) else "must be a string"
    if reason is not None:
        raise ConfigurationError(f"ClientConfig.{attribute.name} {reason}")


@attrs.frozen(kw_only=True)
class ClientConfig:
    """Tunables of a `KsefClient`; every field has a documented default.

    Attributes:
        api_connections: Connection pool size of the API session (default 20; the limiter, not the pool, paces
            requests).
        api_connect_timeout: Seconds to establish an API connection (default 10).
        api_read_timeout: Seconds to wait for API response data (default 60).
        storage_connections: Connection pool size of the storage session; match it to the upload concurrency
            (default 8).
        storage_connect_timeout: Seconds to establish a storage connection (default 10).
        storage_read_timeout: Seconds of silence tolerated while sending or receiving storage data (default 300;
            there is deliberately no total timeout: a 100 MB part on a slow link takes minutes).
        retry: Retries of idempotent calls and of 429s.
        refresh_margin: Refresh the access token this many seconds before its ``validUntil`` (default 60).
        auth_poll_backoff: Waits between polls of ``GET /auth/{referenceNumber}``.
        auth_timeout: Give up a login still in progress after this many seconds (default 120; DEMO and PRD may wait
            for a certificate authority's OCSP answer).
        sync_rate_limits: After each login, read ``GET /rate-limits`` into the shared limiter (default True).
        features: ``X-KSeF-Feature`` values sent when any online or batch session is opened (default none), e.g.
            ``("subject-identifier-validation",)``; sessions may add their own.
        user_agent: ``User-Agent`` of API requests.
        on_system_warning: Called with each `ksef_async.core.system_warnings.SystemWarning` KSeF sends
            (``X-System-Warning``), on the event loop; it must not block, and an exception it raises is logged and
            ignored (default None: warnings are only logged once per text and kept in ``client.system_warnings``).
        test_system_warning: Send this text as ``X-Test-System-Warning`` on every request, so that KSeF TEST echoes
            it back as ``X-System-Warning`` (default None). Refused unless the client points at TEST or a loopback
            address (a simulator).
        system_warning_history: How many of the latest warnings ``client.system_warnings.recent`` keeps (default
            100).
        api_total_timeout: Seconds one API call attempt may take in total, body included (default 120): a server
            trickling bytes cannot hold a call past it. Part uploads and downloads are not API calls.
        allow_insecure_http: Accept a plain ``http://`` base URL to a non-loopback host (default False: ``http://``
            only for loopback, e.g. a local simulator).
        max_limiter_wait: Longest wait in seconds of one API call for the rate limiter (default None: no bound);
            a call that would wait longer raises `ksef_async.errors.RateLimitWaitExceededError` (``retry_after``,
            ``group``) before anything is sent. `ksef_async.ratelimit.limiter_wait` overrides it per call.
    """

    api_connections: int = attrs.field(default=20, validator=at_least_one)
    api_connect_timeout: float = attrs.field(default=10.0, validator=positive)
    api_read_timeout: float = attrs.field(default=60.0, validator=positive)
    storage_connections: int = attrs.field(default=8, validator=at_least_one)
    storage_connect_timeout: float = attrs.field(default=10.0, validator=positive)
    storage_read_timeout: float = attrs.field(default=300.0, validator=positive)
    retry: RetryPolicy = attrs.field(factory=RetryPolicy)
    refresh_margin: float = attrs.field(default=60.0, validator=non_negative)
    auth_poll_backoff: Backoff = attrs.field(factory=Backoff)
    auth_timeout: float = attrs.field(default=120.0, validator=positive)
    sync_rate_limits: bool = True
    features: tuple[str, ...] = attrs.field(default=(), converter=_features)
    user_agent: str = f"ksef-async/{__version__}"
    on_system_warning: SystemWarningHandler | None = attrs.field(default=None, validator=_callable_or_none)
    test_system_warning: str | None = attrs.field(default=None, validator=_test_warning_text)
    system_warning_history: int = attrs.field(default=100, validator=at_least_one)
    api_total_timeout: float = attrs.field(default=120.0, validator=positive)
    allow_insecure_http: bool = False
    max_limiter_wait: float | None = attrs.field(default=None, validator=attrs.validators.optional(non_negative))


def _allows_test_warning(base_url: str) -> bool:
    """Whether ``X-Test-System-Warning`` may be sent to ``base_url``: KSeF TEST or a loopback address (simulator)."""
    if base_url == Environment.TEST.value:
        return True
    host = urlsplit(base_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _context_of(context: ContextIdentifier | str | None) -> ContextIdentifier | None:
    if context is None or isinstance(context, ContextIdentifier):
        return context
    try:
        return ContextIdentifier("Nip", context)
    except AuthRequestError as exc:
        raise ConfigurationError(f"context: {exc}") from None


def open_http_sessions(
    config: ClientConfig, trace_configs: list[aiohttp.TraceConfig] | None = None
) -> tuple[aiohttp.ClientSession, aiohttp.ClientSession]:
    """Create the (API, storage) pair of aiohttp sessions ``config`` describes; the caller closes them.

    The API session carries the User-Agent and the API timeouts; the storage session (pre-signed part URLs) has no
    total timeout, only connect and read ones, since a 100 MB part may take long on a slow link.
    """
    api = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=config.api_connections),
        timeout=aiohttp.ClientTimeout(
            total=config.api_total_timeout, connect=config.api_connect_timeout, sock_read=config.api_read_timeout
        ),
        headers={"User-Agent": config.user_agent},
        trace_configs=trace_configs,
        raise_for_status=False,
    )
    storage = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=config.storage_connections),
        timeout=aiohttp.ClientTimeout(
            total=None, connect=config.storage_connect_timeout, sock_read=config.storage_read_timeout
        ),
        trace_configs=trace_configs,
        raise_for_status=False,
    )
    return api, storage


class KsefClient:
    """Asyncio client of the KSeF 2.x API.

    Args:
        environment_or_base_url: An `Environment` or any API base URL (e.g. a simulator's ``sim.base_url``).
        credentials: How to log in (`ksef_async.auth.KsefTokenCredentials` or
            `ksef_async.auth.CertificateCredentials`); without them only public operations work.
        context: The context to log in to: a NIP string or a `ksef_async.xml.auth_request.ContextIdentifier`.
        config: Tunables (`ClientConfig`).
        limiter: The rate limiter to use; by default the process-wide one of (base URL, context), shared by every
            client of that pair, whose per-IP groups (``global``, ``anonymous``) are shared by every context of
            the base URL (`ksef_async.ratelimit.limiter_for`).
        rate_limits: Where the limit windows live when no ``limiter`` is given: a limits URL (``redis://...`` shares
            them with every process and machine using that Redis; ``memory://`` is the default), a store object or
            a `ksef_async.ratelimit.Backend`; None reads ``KSEF_ASYNC_LIMITS_URL`` (see
            `ksef_async.ratelimit_config`).
        clock: Wall-clock Unix time for token expiry (tests inject a fake).
        trace_configs: aiohttp trace configs attached to both sessions (instrumentation, request counting).
        http_sessions: An (API, storage) pair of aiohttp sessions to use instead of making new ones (e.g.
            `ksef_async.pool.ClientPool` shares one pair between contexts); the caller owns and closes them.

    Resources: ``auth``, ``security``, ``sessions``, ``online``, ``batch``, ``invoices``, ``retrieval``,
    ``limits``, ``rate_limits``, ``permissions``, ``tokens``, ``certificates``, ``peppol``, ``testdata``,
    ``collective_identifiers``. They exist from construction; their calls need the client open (``async with``,
    else `ksef_async.errors.ConfigurationError`). The login happens on the first call that needs the access token,
    or on `login`.
    """

    def __init__(
        self,
        environment_or_base_url: Environment | str,
        *,
        credentials: Credentials | None = None,
        context: ContextIdentifier | str | None = None,
        config: ClientConfig | None = None,
        limiter: RateLimiter | None = None,
        rate_limits: RateLimitsSetting = None,
        clock: Callable[[], float] = time.time,
        trace_configs: list[aiohttp.TraceConfig] | None = None,
        http_sessions: tuple[aiohttp.ClientSession, aiohttp.ClientSession] | None = None,
    ) -> None:
        base_url = str(
            environment_or_base_url.value
            if isinstance(environment_or_base_url, Environment)
            else environment_or_base_url
        )
        self.config = config or ClientConfig()
        check_base_url(base_url, allow_insecure_http=self.config.allow_insecure_http)
        self.base_url = base_url.rstrip("/")
        self.context = _context_of(context)
        if credentials is not None and not isinstance(credentials, KsefTokenCredentials | CertificateCredentials):
            raise ConfigurationError(
                f"credentials must be KsefTokenCredentials(token) or CertificateCredentials(...), "
                f"not {type(credentials).__name__}"
            )
        if credentials is not None and self.context is None:
            raise ConfigurationError("credentials need a context (e.g. context='1234567890' for a NIP)")
        if self.config.test_system_warning is not None and not _allows_test_warning(self.base_url):
            raise ConfigurationError(
                f"ClientConfig.test_system_warning is only for KSeF TEST or a loopback simulator, not {self.base_url!r}"
            )
        self.system_warnings = SystemWarningLog(history=self.config.system_warning_history)
        """Every ``X-System-Warning`` this client received: ``total``, ``by_code``, ``recent``, recorders."""
        context_key = "-" if self.context is None else f"{self.context.type}:{self.context.value}"
        if limiter is not None and rate_limits is not None:
            raise ConfigurationError("give either limiter or rate_limits, not both")
        self.limiter = limiter or resolve_limiter(rate_limits, self.base_url, context_key, API_RATE_LIMITS)
        self._credentials = credentials
        self._clock = clock
        self._trace_configs = trace_configs
        self._api_session: aiohttp.ClientSession | None = None
        self._storage_session: aiohttp.ClientSession | None = None
        self._given_sessions = http_sessions
        self._build()

    def _build(self) -> None:
        """Create the transports (bound to sessions by `open`), the authenticator and every resource.

        Authentication calls carry their own bearer, so the authenticator's resources use a transport without a
        token source; the main API transport is given the authenticator as its token source.
        """
        cfg = self.config
        storage = StorageTransport(None)
        public = self._api_transport(None)
        self.security = SecurityResource(public, storage)  # public keys need no token; one cache for all
        self._authenticator: Authenticator | None = None
        if self._credentials is not None:
            assert self.context is not None
            self._authenticator = Authenticator(
                self._credentials,
                self.context,
                AuthResource(public, storage),
                self.security,
                clock=self._clock,
                refresh_margin=cfg.refresh_margin,
                poll_backoff=cfg.auth_poll_backoff,
                poll_timeout=cfg.auth_timeout,
                on_login=self._sync_rate_limits if cfg.sync_rate_limits else None,
            )
        api = self._api_transport(self._authenticator)
        self._transports: tuple[ApiTransport, ApiTransport, StorageTransport] = (api, public, storage)
        self.auth = AuthResource(api, storage)
        self.sessions = SessionsResource(api, storage)
        self.online = OnlineResource(api, storage, self.security, features=cfg.features)
        self.batch = BatchResource(api, storage, self.security, features=cfg.features)
        self.invoices = InvoicesResource(api, storage)
        self.retrieval = RetrievalResource(api, storage, self.security)
        self.limits = LimitsResource(api, storage)
        self.rate_limits = RateLimitsResource(api, storage)
        self.permissions = PermissionsResource(api, storage)
        self.tokens = TokensResource(api, storage)
        self.certificates = CertificatesResource(api, storage)
        self.peppol = PeppolResource(api, storage)
        self.testdata = TestDataResource(api, storage)
        self.collective_identifiers = CollectiveIdentifiersResource(api, storage)

    def _api_transport(self, tokens: Authenticator | None) -> ApiTransport:
        api = ApiTransport(self.base_url, None, self.limiter, self.config.retry, tokens)
        api.system_warnings = self.system_warnings
        api.on_system_warning = self.config.on_system_warning
        api.test_system_warning = self.config.test_system_warning
        api.max_limiter_wait = self.config.max_limiter_wait
        return api

    def __repr__(self) -> str:
        return f"KsefClient(base_url={self.base_url!r}, context={self.context!r}, credentials={self._credentials!r})"

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Open the HTTP sessions the resources send through (done by ``async with``)."""
        if self._api_session is not None:
            return
        bind_log_context(None if self.context is None else f"{self.context.type}:{self.context.value}")
        if self._given_sessions is not None:
            self._api_session, self._storage_session = self._given_sessions
        else:
            self._open_sessions()
        self._bind(self._api_session, self._storage_session)

    def _open_sessions(self) -> None:
        self._api_session, self._storage_session = open_http_sessions(self.config, self._trace_configs)

    async def close(self) -> None:
        """Close both HTTP sessions (done by ``async with``); tokens are not revoked (see `logout`).

        Sessions given as ``http_sessions`` stay open: their owner closes them.
        """
        self._bind(None, None)
        if self._given_sessions is None:
            for session in (self._api_session, self._storage_session):
                if session is not None:
                    await session.close()
        self._api_session = self._storage_session = None

    def _bind(self, api_session: aiohttp.ClientSession | None, storage_session: aiohttp.ClientSession | None) -> None:
        api, public, storage = self._transports
        api.bind(api_session)
        public.bind(api_session)
        storage.bind(storage_session)

    @property
    def authenticator(self) -> Authenticator:
        """The token owner of this client.

        Raises:
            ConfigurationError: The client has no credentials.
        """
        if self._authenticator is None:
            raise ConfigurationError("this client has no credentials: give KsefClient(credentials=..., context=...)")
        return self._authenticator

    @property
    def reachable(self) -> bool:
        """Whether KSeF accepted this client's last connection attempt.

        ``False`` during an outage: calls then wait while one probe at a time checks whether KSeF is back.
        """
        return self._transports[0].reachability.up

    async def login(self) -> None:
        """Log in now instead of on the first call that needs the access token."""
        await self.authenticator.login()

    async def logout(self) -> None:
        """Revoke this login's refresh token and forget the tokens."""
        await self.authenticator.logout()

    async def _sync_rate_limits(self) -> None:
        report = await self.rate_limits.report()
        if report.problems:
            logger.warning("GET /rate-limits: entries skipped", extra=extras(problems=list(report.problems)))
        self.limiter.update_limits(report.limits)
        logger.info("rate limits read from KSeF", extra=extras(groups=len(report.limits)))
