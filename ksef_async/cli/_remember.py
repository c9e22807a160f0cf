"""Write the connection a command used into its state directory, and fill a re-run's options from it.

``send`` writes ``STATE_DIR/connection.json`` (``prepare`` too, with only the base URL); ``resume`` reads it, so that
only the secret has to be given again (``KSEF_TOKEN`` or ``KSEF_KEY_PASSWORD``, as before from the environment).
``sync`` keeps the same record, with its subject types, in ``OUTDIR/.ksef-sync-run.json``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Final, Literal

from ksef_async._private_files import private_dir, write_private
from ksef_async.cli._connection import Connection
from ksef_async.core.connection_record import CONNECTION_FILE, AuthMethod, ConnectionRecord
from ksef_async.errors import ConfigurationError

__all__ = [
    "SYNC_RUN_FILE",
    "load_record",
    "load_sync_run",
    "recalled",
    "record_of",
    "remember",
    "remember_sync_run",
]

SYNC_RUN_FILE: Final = ".ksef-sync-run.json"
"""What ``sync`` remembers in its output directory: the connection record and the subject types."""

_SYNC_RUN_VERSION: Final = 1


def record_of(connection: Connection) -> ConnectionRecord:
    """Return the non-secret record of ``connection`` (certificate paths made absolute)."""
    method: AuthMethod = (
        "token"
        if connection.token is not None
        else "pkcs12"
        if connection.pkcs12 is not None
        else "certificate"
        if connection.cert is not None or connection.key is not None
        else "none"
    )
    context_type, context_value = (
        ("Nip", connection.nip)
        if connection.nip is not None
        else ("InternalId", connection.internal_id)
        if connection.internal_id is not None
        else (None, None)
    )
    return ConnectionRecord(
        base_url=connection.base_url,
        environment=connection.env,
        context_type=context_type,
        context_value=context_value,
        auth_method=method,
        cert=_absolute(connection.cert),
        key=_absolute(connection.key),
        pkcs12=_absolute(connection.pkcs12),
        key_password=method in {"certificate", "pkcs12"} and bool(connection.key_password),
        fingerprint=connection.fingerprint,
    )


def _absolute(path: Path | None) -> str | None:
    return None if path is None else str(path.absolute())


def remember(directory: Path, record: ConnectionRecord) -> Path:
    """Write ``record`` as ``directory/connection.json`` (owner-only, atomic); return the path."""
    private_dir(directory)
    return write_private(directory / CONNECTION_FILE, record.to_json().encode(), fsync=True)


def load_record(directory: Path) -> ConnectionRecord | None:
    """Read ``directory/connection.json``; ``None`` when there is none (a directory made before it existed).

    Raises:
        ConfigurationError: The file is unreadable or malformed.
    """
    path = directory / CONNECTION_FILE
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read the connection record ({exc.strerror or exc})") from None
    return ConnectionRecord.from_json(text, source=str(path))


def remember_sync_run(directory: Path, record: ConnectionRecord, subjects: list[str], *, tar: bool) -> Path:
    """Write what a ``sync`` run used into ``directory`` (see `SYNC_RUN_FILE`)."""
    body = {"version": _SYNC_RUN_VERSION, "connection": record.to_dict(), "subjects": subjects, "tar": tar}
    private_dir(directory)
    return write_private(directory / SYNC_RUN_FILE, (json.dumps(body, indent=2, sort_keys=True) + "\n").encode())


def load_sync_run(directory: Path) -> tuple[ConnectionRecord, list[str], bool] | None:
    """Read what the last ``sync`` into ``directory`` used: connection, subject types, TarGz; or ``None``.

    Raises:
        ConfigurationError: The file is unreadable or malformed.
    """
    path = directory / SYNC_RUN_FILE
    try:
        raw: Any = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ConfigurationError(f"{path}: not JSON ({exc})") from None
    if not isinstance(raw, dict) or raw.get("version") != _SYNC_RUN_VERSION:
        raise ConfigurationError(f"{path}: not a sync record of version {_SYNC_RUN_VERSION}")
    subjects = raw.get("subjects")
    if not isinstance(subjects, list) or not all(isinstance(s, str) for s in subjects):
        raise ConfigurationError(f"{path}: 'subjects' must be a list of strings")
    tar = raw.get("tar", False)
    if not isinstance(tar, bool):
        raise ConfigurationError(f"{path}: 'tar' must be true or false")
    return ConnectionRecord.from_dict(raw.get("connection"), source=str(path)), subjects, tar


def recalled(connection: Connection, record: ConnectionRecord | None, *, command: str, source: Path) -> Connection:
    """Fill the options ``connection`` lacks from ``record``; check that nothing given contradicts it.

    A re-run then needs only the secret; when that is missing too, the error names its environment variable.

    Args:
        connection: The options of this run (command line and environment).
        record: What the original command recorded (``None``: nothing recorded; ``connection`` is returned as is).
        command: The command's name, for messages (``resume``, ``sync``).
        source: The record's file, for messages.

    Raises:
        ConfigurationError: An option contradicts the record (another server or context), or the secret the
            recorded login needs is not given.
    """
    if record is None:
        return connection
    filled = _fill_place(connection, record, command=command, source=source)
    return _fill_login(filled, record, command=command, source=source)


def _fill_place(connection: Connection, record: ConnectionRecord, *, command: str, source: Path) -> Connection:
    changes: dict[str, Any] = {}
    given_place = connection.base_url is not None or connection.env is not None
    recorded_place = record.base_url is not None or record.environment is not None
    if recorded_place and not given_place:
        changes["base_url"] = record.base_url
        changes["env"] = record.environment
    elif recorded_place and given_place:
        mine = connection.resolved_base_url()
        theirs = dataclasses.replace(connection, base_url=record.base_url, env=_env(record)).resolved_base_url()
        if mine.rstrip("/") != theirs.rstrip("/"):
            raise ConfigurationError(
                f"{command}: the run recorded in {source} used {theirs}, but this run points at {mine}; "
                "drop --base-url/--env (and KSEF_BASE_URL/KSEF_ENV) to use the recorded one"
            )
    if record.context_type is not None:
        given = (
            ("Nip", connection.nip)
            if connection.nip is not None
            else ("InternalId", connection.internal_id)
            if connection.internal_id is not None
            else None
        )
        recorded = (record.context_type, record.context_value)
        if given is None:
            changes["nip" if record.context_type == "Nip" else "internal_id"] = record.context_value
        elif given != recorded:
            raise ConfigurationError(
                f"{command}: the run recorded in {source} was for context {recorded[0]} {recorded[1]}, "
                f"but this run gives {given[0]} {given[1]}; drop --nip/--internal-id (and KSEF_NIP) to use the "
                "recorded one"
            )
    return dataclasses.replace(connection, **changes) if changes else connection


def _env(record: ConnectionRecord) -> Literal["test", "demo", "prod"] | None:
    env = record.environment
    if env == "test":
        return "test"
    if env == "demo":
        return "demo"
    if env == "prod":
        return "prod"
    return None


def _fill_login(connection: Connection, record: ConnectionRecord, *, command: str, source: Path) -> Connection:
    has_login = connection.token is not None or connection.cert is not None or connection.key is not None
    if has_login or connection.pkcs12 is not None:
        return connection  # another credential of the same context is the caller's choice
    changes: dict[str, Any] = {}
    if record.auth_method == "certificate":
        changes = {
            "cert": None if record.cert is None else Path(record.cert),
            "key": None if record.key is None else Path(record.key),
        }
    elif record.auth_method == "pkcs12":
        changes = {"pkcs12": None if record.pkcs12 is None else Path(record.pkcs12)}
    if record.auth_method in {"certificate", "pkcs12"}:
        changes["fingerprint"] = record.fingerprint or connection.fingerprint
    needed = record.needed_secret()
    if needed is not None:
        variable, what = needed
        present = connection.token if variable == "KSEF_TOKEN" else connection.key_password
        if not present:
            raise ConfigurationError(
                f"{command} needs {what} of the original run: set {variable} "
                f"({source} records the connection but never a secret)"
            )
    return dataclasses.replace(connection, **changes) if changes else connection
