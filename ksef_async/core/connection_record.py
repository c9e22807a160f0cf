"""What a state directory remembers of the connection that made it (never a secret), and what a re-run still needs.

`ksef-async send` and ``prepare`` write a `ConnectionRecord` next to the plan (``connection.json``) and ``sync``
next to its checkpoints, so that ``ksef-async resume DIR`` and a re-run of ``sync`` need nothing but the secret.
The record holds the base URL (or the environment), the context, the authentication method and the paths of
certificate files; it never holds a KSeF token, a key password or key material. `ConnectionRecord.needed_secret`
names the one environment variable a re-run still needs.
"""

from __future__ import annotations

import json
from typing import Any, Final, Literal

import attrs

from ksef_async.errors import ConfigurationError

__all__ = [
    "CONNECTION_FILE",
    "CONNECTION_RECORD_VERSION",
    "AuthMethod",
    "ConnectionRecord",
]

CONNECTION_FILE: Final = "connection.json"
"""The record's file name inside a batch state directory."""
CONNECTION_RECORD_VERSION: Final = 1

AuthMethod = Literal["token", "certificate", "pkcs12", "none"]
"""How the original command logged in (``none``: it did not, e.g. ``prepare``)."""

_METHODS: Final = ("token", "certificate", "pkcs12", "none")
_ENVIRONMENTS: Final = ("test", "demo", "prod")
_CONTEXT_TYPES: Final = ("Nip", "InternalId", "NipVatUe", "PeppolId")


@attrs.frozen(kw_only=True)
class ConnectionRecord:
    """The non-secret part of a connection, as a command used it.

    Attributes:
        base_url: The API base URL (set when the command was given ``--base-url``).
        environment: ``test``, ``demo`` or ``prod`` (set when it was given ``--env``).
        context_type: ``Nip`` or ``InternalId`` (``None`` when the command had no context).
        context_value: The context identifier's value.
        auth_method: See `AuthMethod`.
        cert: Absolute path of the certificate (PEM), for ``certificate``.
        key: Absolute path of its private key (PEM), for ``certificate``.
        pkcs12: Absolute path of the PKCS#12 file, for ``pkcs12``.
        key_password: Whether the key (or PKCS#12 file) needed a password (the password itself is never stored).
        fingerprint: Whether the login named the certificate by its fingerprint.
    """

    base_url: str | None = None
    environment: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.in_(_ENVIRONMENTS))
    )
    context_type: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.in_(_CONTEXT_TYPES))
    )
    context_value: str | None = None
    auth_method: AuthMethod = attrs.field(default="none", validator=attrs.validators.in_(_METHODS))
    cert: str | None = None
    key: str | None = None
    pkcs12: str | None = None
    key_password: bool = False
    fingerprint: bool = False

    def needed_secret(self) -> tuple[str, str] | None:
        """Return ``(environment variable, what it is)`` of the secret a re-run needs, or ``None``."""
        if self.auth_method == "token":
            return "KSEF_TOKEN", "the KSeF token"
        if self.auth_method in {"certificate", "pkcs12"} and self.key_password:
            what = "the PKCS#12 file's password" if self.auth_method == "pkcs12" else "the private key's password"
            return "KSEF_KEY_PASSWORD", what
        return None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON object (see `to_json`)."""
        return {
            "version": CONNECTION_RECORD_VERSION,
            "baseUrl": self.base_url,
            "environment": self.environment,
            "context": None if self.context_type is None else {"type": self.context_type, "value": self.context_value},
            "auth": {
                "method": self.auth_method,
                "cert": self.cert,
                "key": self.key,
                "pkcs12": self.pkcs12,
                "keyPassword": self.key_password,
                "fingerprint": self.fingerprint,
            },
        }

    def to_json(self) -> str:
        """Serialise (stable key order)."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "connection record") -> ConnectionRecord:
        """Parse a record written by `to_json`.

        Raises:
            ConfigurationError: Not JSON, another version, or a field of the wrong type (named).
        """
        try:
            raw = json.loads(text)
        except ValueError as exc:
            msg = f"{source}: not JSON ({exc})"
            raise ConfigurationError(msg) from None
        return cls.from_dict(raw, source=source)

    @classmethod
    def from_dict(cls, raw: object, *, source: str = "connection record") -> ConnectionRecord:
        """Build from the object `to_dict` returns.

        Raises:
            ConfigurationError: Another version, or a field of the wrong type (named).
        """
        if not isinstance(raw, dict) or raw.get("version") != CONNECTION_RECORD_VERSION:
            msg = f"{source}: not a connection record of version {CONNECTION_RECORD_VERSION}"
            raise ConfigurationError(msg)
        context = raw.get("context")
        auth = raw.get("auth")
        if context is not None and not isinstance(context, dict):
            msg = f"{source}: 'context' must be an object"
            raise ConfigurationError(msg)
        if not isinstance(auth, dict):
            msg = f"{source}: 'auth' must be an object"
            raise ConfigurationError(msg)
        fields: dict[str, Any] = {
            "base_url": _text(raw, "baseUrl", source),
            "environment": _text(raw, "environment", source),
            "context_type": None if context is None else _text(context, "type", source),
            "context_value": None if context is None else _text(context, "value", source),
            "auth_method": _text(auth, "method", source) or "none",
            "cert": _text(auth, "cert", source),
            "key": _text(auth, "key", source),
            "pkcs12": _text(auth, "pkcs12", source),
            "key_password": _flag(auth, "keyPassword", source),
            "fingerprint": _flag(auth, "fingerprint", source),
        }
        try:
            return cls(**fields)
        except ValueError as exc:
            msg = f"{source}: {exc}"
            raise ConfigurationError(msg) from None


def _text(raw: dict[str, Any], name: str, source: str) -> str | None:
    value = raw.get(name)
    if value is not None and not isinstance(value, str):
        msg = f"{source}: {name!r} must be a string"
        raise ConfigurationError(msg)
    return value


def _flag(raw: dict[str, Any], name: str, source: str) -> bool:
    value = raw.get(name, False)
    if not isinstance(value, bool):
        msg = f"{source}: {name!r} must be true or false"
        raise ConfigurationError(msg)
    return value
