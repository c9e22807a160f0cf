"""Which API base URLs a client may use: ``https://`` anywhere, plain ``http://`` only to loopback unless forced."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from ksef_async.errors import ConfigurationError

__all__ = ["check_base_url", "is_loopback_host"]


def is_loopback_host(host: str | None) -> bool:
    """Tell whether ``host`` names this machine: ``localhost`` (or a subdomain of it) or a loopback IP literal."""
    if not host:
        return False
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_base_url(url: str, *, allow_insecure_http: bool = False) -> str:
    """Return ``url`` if a client may send tokens and invoices to it.

    Args:
        url: The API base URL.
        allow_insecure_http: Accept ``http://`` to a non-loopback host (e.g. a simulator on another machine of a
            trusted network); tokens and invoices then travel in clear text.

    Raises:
        ConfigurationError: Not ``https://`` or ``http://``, no host, or ``http://`` to a non-loopback host
            without ``allow_insecure_http``.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not parts.hostname:
        raise ConfigurationError(f"base URL must start with https:// or http:// and name a host, got {url!r}")
    if scheme == "http" and not allow_insecure_http and not is_loopback_host(parts.hostname):
        raise ConfigurationError(
            f"base URL {url!r}: plain http:// is accepted only for loopback hosts (a local simulator); use https://, "
            "or ClientConfig(allow_insecure_http=True) to send tokens in clear text on purpose"
        )
    return url
