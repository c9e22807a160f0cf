"""`ksef-async qr`: write the QR code image(s) of an invoice file and print the verification link(s)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cyclopts import Parameter

from ksef_async.cli._app import app
from ksef_async.core.identifiers import is_valid_ksef_number
from ksef_async.core.qr import ContextType, load_certificate, parse_kod_i
from ksef_async.errors import ConfigurationError, CryptoError, InvoiceError, KsefError
from ksef_async.qr_image import (
    LABEL_CERTIFICATE,
    LABEL_OFFLINE,
    kod_i_link_for_invoice,
    kod_ii_link_for_invoice,
    qr_png,
    qr_svg,
)

__all__ = ["KEY_PASSWORD_ENV", "certificate_image_path", "qr"]

KEY_PASSWORD_ENV = "KSEF_OFFLINE_KEY_PASSWORD"  # noqa: S105 - the variable's name, not a password
"""Environment variable holding the password of an encrypted ``--offline-key`` (never a command-line option)."""


def certificate_image_path(out: Path) -> Path:
    """Where the KOD II image goes next to the KOD I image ``out``: ``invoice.png`` -> ``invoice-certificate.png``."""
    return out.with_name(f"{out.stem}-certificate{out.suffix}")


def _render(link: str, label: str, out: Path) -> None:
    suffix = out.suffix.lower()
    if suffix == ".png":
        data = qr_png(link, label=label)
    elif suffix == ".svg":
        data = qr_svg(link, label=label)
    else:
        msg = f"--out: {out} must end in .png or .svg"
        raise ConfigurationError(msg)
    try:
        out.write_bytes(data)
    except OSError as exc:
        msg = f"--out: cannot write {out}: {exc.strerror or exc}"
        raise ConfigurationError(msg) from exc


def _read(path: Path, option: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        msg = f"{option}: cannot read {path}: {exc.strerror or exc}"
        raise ConfigurationError(msg) from exc


def _load_key(path: Path) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    password = os.environ.get(KEY_PASSWORD_ENV)
    try:
        key = serialization.load_pem_private_key(_read(path, "--offline-key"), password.encode() if password else None)
    except (ValueError, TypeError) as exc:
        # The library's message may say "password required" or "bad decrypt"; it never echoes the password.
        msg = f"--offline-key: {path} is not a usable PEM private key ({exc}); set {KEY_PASSWORD_ENV} if encrypted"
        raise CryptoError(msg) from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        msg = f"--offline-key: {path} holds a {type(key).__name__}, not an RSA or EC key"
        raise CryptoError(msg)
    return key


def _run(
    invoice: Path,
    out: Path,
    *,
    env: str,
    ksef_number: str | None,
    offline_cert: Path | None,
    offline_key: Path | None,
    context_type: ContextType,
    context_value: str | None,
    xsd: bool,
) -> None:
    if ksef_number is not None and (offline_cert or offline_key):
        msg = "--ksef-number is for invoices already in KSeF; --offline-cert/--offline-key for offline ones: not both"
        raise ConfigurationError(msg)
    if (offline_cert is None) != (offline_key is None):
        msg = "--offline-cert and --offline-key go together"
        raise ConfigurationError(msg)
    if ksef_number is not None and not is_valid_ksef_number(ksef_number):
        msg = f"--ksef-number: {ksef_number!r} is not a valid KSeF number"
        raise ConfigurationError(msg)
    data = _read(invoice, "INVOICE")
    link = kod_i_link_for_invoice(data, str(invoice), env=env, xsd=xsd)
    images = [(link, ksef_number or LABEL_OFFLINE, out)]
    if offline_cert is not None and offline_key is not None:
        # Every check runs before any file is written, so a bad certificate or key leaves no half-done output.
        certificate = load_certificate(_read(offline_cert, "--offline-cert"), name=str(offline_cert))
        seller_link = kod_ii_link_for_invoice(
            data,
            str(invoice),
            context_type=context_type,
            context_value=context_value or parse_kod_i(link).seller_nip,
            certificate=certificate,
            private_key=_load_key(offline_key),
            env=env,
            xsd=False,  # validated just above
        )
        images.append((seller_link, LABEL_CERTIFICATE, certificate_image_path(out)))
    for image_link, label, path in images:
        _render(image_link, label, path)
    for image_link, _, _ in images:
        print(image_link)


@app.command(name="qr")
def qr(
    invoice: Path,
    /,
    *,
    out: Path,
    env: str = "test",
    ksef_number: str | None = None,
    offline_cert: Path | None = None,
    offline_key: Path | None = None,
    context_type: ContextType = "Nip",
    context_value: str | None = None,
    xsd: Annotated[bool, Parameter(negative="--no-xsd")] = True,
) -> int:
    """Write the QR code of an invoice (PNG or SVG by --out's extension) and print its verification link.

    KOD I is always written to --out, labelled with --ksef-number or "OFFLINE". With --offline-cert and
    --offline-key (a KSeF Offline certificate and its PEM key; password in $KSEF_OFFLINE_KEY_PASSWORD) KOD II
    is written next to it as NAME-certificate.EXT, labelled "CERTYFIKAT", and its link printed on a second line.
    Exits 0 on success, 1 when the invoice is invalid, 2 on bad options, files or keys.

    Parameters
    ----------
    invoice
        The invoice XML file; its exact bytes are hashed.
    out
        Image file to write (.png or .svg).
    env
        KSeF environment: test, demo or prod.
    ksef_number
        The invoice's KSeF number, when it has one (label under KOD I).
    offline_cert
        KSeF Offline certificate (PEM or DER) for KOD II.
    offline_key
        Its private key (PEM).
    context_type
        KOD II login-context type: Nip, InternalId, NipVatUe or PeppolId.
    context_value
        KOD II context identifier (default: the seller NIP).
    xsd
        Validate the invoice against its XSD first.
    """
    try:
        _run(
            invoice,
            out,
            env=env,
            ksef_number=ksef_number,
            offline_cert=offline_cert,
            offline_key=offline_key,
            context_type=context_type,
            context_value=context_value,
            xsd=xsd,
        )
    except InvoiceError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    except KsefError as exc:
        print(f"ksef-async qr: {exc}", file=sys.stderr)
        return 2
    return 0
