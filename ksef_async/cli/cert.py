"""`ksef-async cert enroll|list|revoke`: get, list and revoke KSeF certificates."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from cryptography.hazmat.primitives import serialization
from cyclopts import App, Parameter

from ksef_async.cli._app import app
from ksef_async.cli._connection import EXIT_OK, EXIT_USAGE, Connection, run_async
from ksef_async.cli._files import refuse_existing, write_secret
from ksef_async.models import CertificateListItem, QueryCertificatesRequest
from ksef_async.resources.certificates import EnrolledCertificate

__all__ = ["cert_app"]

CertificateType = Literal["Authentication", "Offline"]
Status = Literal["Active", "Blocked", "Revoked", "Expired"]
Reason = Literal["Unspecified", "Superseded", "KeyCompromise"]

cert_app = App(name="cert", help="Manage KSeF certificates (enrolling needs a certificate login).")
app.command(cert_app)


@cert_app.command(name="enroll")
def enroll(
    *,
    name: str,
    key_out: Path,
    cert_out: Path,
    type_: Annotated[CertificateType, Parameter(name="--type")] = "Authentication",
    algorithm: Literal["ec", "rsa"] = "ec",
    new_key_password: Annotated[str | None, Parameter(env_var="KSEF_NEW_KEY_PASSWORD", show_default=False)] = None,
    wait: float = 300.0,
    connection: Connection = Connection(),  # noqa: B008 - an immutable dataclass of options
) -> int:
    """Generate a key, request a KSeF certificate for it, wait until issued, save the key and the certificate.

    Parameters
    ----------
    name
        The certificate's name in KSeF (5 to 100 letters, digits, spaces, ``_`` or ``-``).
    key_out
        New file for the private key (PKCS#8 PEM, mode 0600; never overwritten).
    cert_out
        New file for the certificate (PEM; never overwritten).
    type_
        Authentication (to log in) or Offline (to sign offline invoices' KOD II).
    algorithm
        Key to generate: ec (P-256, KSeF's recommendation) or rsa (2048 bits).
    new_key_password
        Encrypt the saved key with this password (or KSEF_NEW_KEY_PASSWORD).
    wait
        Seconds to wait for KSeF to issue the certificate.
    connection
        Where and how to log in (a certificate: the new one carries the same subject).
    """
    # Checked before enrolling: an enrollment uses up the subject's limit.
    if refuse_existing((key_out, "--key-out"), (cert_out, "--cert-out")):
        return EXIT_USAGE
    password = new_key_password.encode() if new_key_password else None
    return run_async(
        lambda: _enroll(connection, name, type_, algorithm, wait),
        lambda enrolled: _save(enrolled, key_out, cert_out, password),
    )


async def _enroll(
    connection: Connection, name: str, certificate_type: str, algorithm: Literal["ec", "rsa"], wait: float
) -> EnrolledCertificate:
    async with connection.client() as client:
        return await client.certificates.enroll(name, certificate_type, algorithm=algorithm, max_wait=wait)


def _save(enrolled: EnrolledCertificate, key_out: Path, cert_out: Path, password: bytes | None) -> int:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    key_pem = enrolled.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    write_secret(key_out, key_pem, "--key-out")
    write_secret(cert_out, enrolled.certificate.public_bytes(serialization.Encoding.PEM), "--cert-out")
    print(f"certificate {enrolled.serial_number} ({enrolled.certificate_type}) issued")
    print(f"key: {key_out}  certificate: {cert_out}", file=sys.stderr)
    return EXIT_OK


def _item_json(item: CertificateListItem) -> dict[str, Any]:
    return {
        "serial_number": item.certificate_serial_number,
        "name": item.name,
        "type": str(item.type),
        "status": str(item.status),
        "common_name": item.common_name,
        "subject": f"{item.subject_identifier.type}:{item.subject_identifier.value}",
        "valid_from": item.valid_from.isoformat(),
        "valid_to": item.valid_to.isoformat(),
        "last_used": item.last_use_date.isoformat() if item.last_use_date else None,
    }


@cert_app.command(name="list")
def list_certificates(
    *,
    status: Status | None = None,
    type_: Annotated[CertificateType | None, Parameter(name="--type")] = None,
    name: str | None = None,
    as_json: Annotated[bool, Parameter(name="--json", negative="")] = False,
    connection: Connection = Connection(),  # noqa: B008 - an immutable dataclass of options
) -> int:
    """List the subject's KSeF certificates, newest request first.

    Parameters
    ----------
    status
        Only certificates in this status.
    type_
        Only certificates of this type.
    name
        Only certificates whose name contains this text.
    as_json
        Print JSON instead of text.
    connection
        Where and how to log in.
    """
    request = QueryCertificatesRequest(status=status, type=type_, name=name)
    return run_async(lambda: _list(connection, request), lambda items: _print_list(items, as_json=as_json))


async def _list(connection: Connection, request: QueryCertificatesRequest) -> list[CertificateListItem]:
    async with connection.client() as client:
        return [c async for c in client.certificates.query(request)]


def _print_list(items: list[CertificateListItem], *, as_json: bool) -> int:
    if as_json:
        print(json.dumps([_item_json(i) for i in items], ensure_ascii=False, indent=2))
    else:
        for item in items:
            print(
                f"{item.certificate_serial_number}  {item.type!s:<14}  {item.status!s:<8}  "
                f"valid to {item.valid_to:%Y-%m-%d}  {item.name}"
            )
    return EXIT_OK


@cert_app.command(name="revoke")
def revoke(
    serial_number: str,
    /,
    *,
    reason: Reason | None = None,
    connection: Connection = Connection(),  # noqa: B008 - an immutable dataclass of options
) -> int:
    """Revoke a KSeF certificate (not possible after a KSeF-token login).

    Parameters
    ----------
    serial_number
        The certificate's serial number (16 hex digits).
    reason
        Unspecified, Superseded or KeyCompromise.
    connection
        Where and how to log in.
    """
    return run_async(lambda: _revoke(connection, serial_number, reason), lambda _: _revoked(serial_number))


async def _revoke(connection: Connection, serial_number: str, reason: str | None) -> None:
    async with connection.client() as client:
        await client.certificates.revoke(serial_number, reason)


def _revoked(serial_number: str) -> int:
    print(f"revoked {serial_number}")
    return EXIT_OK
