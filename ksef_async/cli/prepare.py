"""`ksef-async prepare`: validate, zip, split and encrypt invoices into a state directory, without sending."""

from __future__ import annotations

import datetime as dt
import hashlib
import sys
import time
from pathlib import Path
from typing import Annotated, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cyclopts import Parameter

from ksef_async.batch.prepare import PrepareStats, prepare_batch
from ksef_async.cli._app import app
from ksef_async.cli._connection import EXIT_LOCAL_IO, EXIT_OK, run_async
from ksef_async.cli._files import check_outputs
from ksef_async.cli._remember import remember
from ksef_async.client import Environment, KsefClient
from ksef_async.core.batch_limits import MAX_PART_PLAIN_SIZE
from ksef_async.core.connection_record import ConnectionRecord
from ksef_async.core.crypto import KEY_USAGE_SYMMETRIC, MfPublicKey, b64
from ksef_async.core.plan import BatchPlan
from ksef_async.errors import ConfigurationError

__all__ = ["load_certificate", "prepare"]

_ENVIRONMENTS = {"test": Environment.TEST, "demo": Environment.DEMO, "prod": Environment.PROD}


def load_certificate(path: Path) -> MfPublicKey:
    """Read an MF public-key certificate (PEM or DER) as a `MfPublicKey` for ``SymmetricKeyEncryption``.

    ``publicKeyId`` is computed as the spec defines it: Base64 SHA-256 of the SubjectPublicKeyInfo DER.

    Raises:
        ConfigurationError: The file cannot be read or is not an X.509 certificate.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        msg = f"{path}: cannot read the certificate: {exc.strerror or exc}"
        raise ConfigurationError(msg) from exc
    try:
        cert = x509.load_pem_x509_certificate(raw) if b"-----BEGIN" in raw else x509.load_der_x509_certificate(raw)
    except ValueError as exc:
        msg = f"{path}: not a PEM or DER X.509 certificate"
        raise ConfigurationError(msg) from exc
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return MfPublicKey(
        cert.public_bytes(serialization.Encoding.DER),
        cert.not_valid_before_utc,
        cert.not_valid_after_utc,
        (KEY_USAGE_SYMMETRIC,),
        b64(hashlib.sha256(spki).digest()),
    )


async def _fetch_key(base_url: str) -> MfPublicKey:
    async with KsefClient(base_url) as client:
        return await client.security.public_key(KEY_USAGE_SYMMETRIC)


@app.command(name="prepare")
def prepare(
    paths: list[Path],
    /,
    *,
    out: Path,
    base_url: Annotated[str | None, Parameter(env_var="KSEF_BASE_URL")] = None,
    env: Annotated[Literal["test", "demo", "prod"] | None, Parameter(env_var="KSEF_ENV")] = None,
    public_key_cert: Path | None = None,
    validate: bool = True,
    part_size: int = MAX_PART_PLAIN_SIZE,
    skip_invalid: Annotated[bool, Parameter(negative="")] = False,
) -> int:
    """Prepare a batch without sending it: encrypted parts and a plan in --out, then bytes in, parts and MB/s.

    Only ciphertext reaches the disk. The MF key comes from --public-key-cert (no network; it takes precedence),
    or from GET /security/public-key-certificates of --base-url or --env. Exits 0 when prepared, 1 when an invoice is
    invalid (nothing is left in --out), 2 for usage or configuration errors.

    Parameters
    ----------
    paths
        Invoice files (any name), directories (searched recursively for names ending in ``.xml``, any case) or
        glob patterns (``*``, ``?``, ``[...]``, ``**`` for any depth; case-sensitive, as written). Names starting
        with a dot are skipped inside directories and by wildcards, as by the shell; symbolic links to files are
        followed, links to directories only when named or matched by the pattern's last part. Every unreadable
        directory or file is reported (exit 2), never skipped.
    out
        State directory for the spool and plan.json (created; must not hold a batch already).
    base_url
        API base URL to fetch the MF public key from.
    env
        KSeF environment to fetch the MF public key from: test, demo or prod.
    public_key_cert
        The MF ``SymmetricKeyEncryption`` certificate (PEM or DER) to use instead of fetching it.
    validate
        Check bytes and XSD before anything is written (--no-validate reads only each root element).
    part_size
        Largest plaintext part in bytes (at most 99,999,984); smaller parts upload over more connections.
    skip_invalid
        Leave invalid or duplicate invoices out (listed in the plan) instead of stopping.
    """
    # --public-key-cert wins over KSEF_BASE_URL / KSEF_ENV left in the environment for other commands.
    if public_key_cert is None and (base_url is None) == (env is None):
        print("ksef-async: give --public-key-cert, or exactly one of --base-url and --env", file=sys.stderr)
        return 2

    if check_outputs((out, "--out", True)):
        return EXIT_LOCAL_IO
    started = time.perf_counter()

    async def main() -> BatchPlan:
        if public_key_cert is not None:
            key = load_certificate(public_key_cert)
        else:
            key = await _fetch_key(base_url if base_url is not None else _ENVIRONMENTS[str(env)].value)
        if not key.valid_from <= dt.datetime.now(dt.UTC) < key.valid_to:
            print(f"warning: the MF certificate is valid only {key.valid_from} to {key.valid_to}", file=sys.stderr)
        print(f"state directory: {out}", file=sys.stderr)
        plan = await prepare_batch(
            [str(p) for p in paths],
            public_key=key,
            state_dir=out,
            part_size=part_size,
            validate=validate,
            on_invalid="skip" if skip_invalid else "stop",
        )
        if base_url is not None or env is not None:
            # `resume` sends to the server the key came from; the context and login are given to it.
            remember(out, ConnectionRecord(base_url=base_url, environment=env))
        return plan

    def finish(plan: BatchPlan) -> int:
        stats = PrepareStats.of(plan, time.perf_counter() - started)
        for problem in plan.skipped:
            print(f"skipped {problem}", file=sys.stderr)
        print(
            f"{stats.invoices} invoices, {stats.bytes_in:,} bytes in -> {stats.sessions} session(s), "
            f"{stats.parts} part(s), {stats.archive_bytes:,} bytes zipped, {stats.ciphertext_bytes:,} bytes "
            f"encrypted in {stats.seconds:.2f} s ({stats.mb_per_s:.1f} MB/s); plan: {out / 'plan.json'}"
        )
        return EXIT_OK

    return run_async(main, finish)
