"""`ksef-async token ...` and `ksef-async cert ...` run as a user runs them, against a simulator on loopback."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ksef_async.testing.certificates import generate_person_certificate
from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN
from ksef_async.testing.simulator import KsefSimulator, serve_in_thread


@pytest.fixture(scope="module")
def running_sim() -> Iterator[KsefSimulator]:
    """A simulator served from its own event-loop thread, so the CLI can run in a separate process."""
    with serve_in_thread(KsefSimulator(contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)], strict_contract=True, seed=13)) as sim:
        yield sim
    assert sim.contract_violations == []
    assert sim.internal_errors == []


@pytest.fixture(scope="module")
def owner_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """PEM certificate and key of a person owning the default context (for XAdES logins)."""
    directory = tmp_path_factory.mktemp("owner")
    cert = generate_person_certificate(given_name="Jan", surname="Kowalski", nip=DEFAULT_NIP, algorithm="ec")
    (directory / "owner.pem").write_bytes(cert.cert_pem)
    (directory / "owner.key").write_bytes(cert.key_pem())
    return directory / "owner.pem", directory / "owner.key"


def cli(sim: KsefSimulator, *args: str, login: list[str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSEF_")}
    return subprocess.run(
        [sys.executable, "-m", "ksef_async.cli", *args, "--base-url", sim.base_url, "--nip", DEFAULT_NIP, *login],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


@pytest.mark.covers("post_tokens", "get_tokens", "delete_tokens_by_reference_number", "get_tokens_by_reference_number")
def test_cli_token_create_list_revoke(
    running_sim: KsefSimulator, owner_files: tuple[Path, Path], tmp_path: Path
) -> None:
    owner = ["--cert", str(owner_files[0]), "--key", str(owner_files[1])]
    out = tmp_path / "robot.token"
    created = cli(
        running_sim,
        "token",
        "create",
        "--permission",
        "InvoiceRead",
        "InvoiceWrite",
        "--description",
        "token made by the CLI",
        "--out",
        str(out),
        login=owner,
    )
    assert created.returncode == 0, created.stderr
    reference = created.stdout.split("reference number:")[1].split()[0]
    secret = out.read_text().strip()
    assert secret not in created.stdout + created.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600

    listed = cli(running_sim, "token", "list", "--status", "Active", "--json", login=["--token", secret])
    assert listed.returncode == 0, listed.stderr
    mine = [t for t in json.loads(listed.stdout) if t["reference_number"] == reference]
    assert mine[0]["permissions"] == ["InvoiceRead", "InvoiceWrite"]
    assert secret not in listed.stdout

    again = cli(running_sim, "token", "create", "--permission", "InvoiceRead", "--description", "xxxxxx", "--out",
                str(out), login=owner)  # fmt: skip
    assert again.returncode == 2
    assert "exists" in again.stderr

    revoked = cli(running_sim, "token", "revoke", reference, login=owner)
    assert revoked.returncode == 0, revoked.stderr
    status = cli(running_sim, "token", "status", reference, login=owner)
    assert json.loads(status.stdout)["status"] == "Revoked"
    refused = cli(running_sim, "token", "list", login=["--token", secret])
    assert refused.returncode == 2
    assert "450" in refused.stderr


@pytest.mark.covers("post_certificates_enrollments", "post_certificates_query", "post_certificates_revoke")
def test_cli_cert_enroll_list_revoke(
    running_sim: KsefSimulator, owner_files: tuple[Path, Path], tmp_path: Path
) -> None:
    owner = ["--cert", str(owner_files[0]), "--key", str(owner_files[1])]
    key_out, cert_out = tmp_path / "ksef.key", tmp_path / "ksef.pem"
    enrolled = cli(
        running_sim,
        "cert",
        "enroll",
        "--name",
        "CLI certificate",
        "--key-out",
        str(key_out),
        "--cert-out",
        str(cert_out),
        "--algorithm",
        "rsa",
        login=owner,
    )
    assert enrolled.returncode == 0, enrolled.stderr
    serial = enrolled.stdout.split()[1]
    assert stat.S_IMODE(key_out.stat().st_mode) == 0o600
    certificate = x509.load_pem_x509_certificate(cert_out.read_bytes())
    key = serialization.load_pem_private_key(key_out.read_bytes(), None)
    assert f"{certificate.serial_number:016X}" == serial
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert key.public_key().public_bytes(serialization.Encoding.DER, spki) == certificate.public_key().public_bytes(
        serialization.Encoding.DER, spki
    )

    # The new certificate logs in by itself.
    listed = cli(running_sim, "cert", "list", "--json", login=["--cert", str(cert_out), "--key", str(key_out)])
    assert listed.returncode == 0, listed.stderr
    (item,) = [c for c in json.loads(listed.stdout) if c["serial_number"] == serial]
    assert (item["type"], item["status"]) == ("Authentication", "Active")

    kept = cli(running_sim, "cert", "enroll", "--name", "CLI certificate", "--key-out", str(key_out), "--cert-out",
               str(tmp_path / "other.pem"), login=owner)  # fmt: skip
    assert kept.returncode == 2
    assert "exists" in kept.stderr

    revoked = cli(running_sim, "cert", "revoke", serial, "--reason", "Superseded", login=owner)
    assert revoked.returncode == 0, revoked.stderr
    after = cli(running_sim, "cert", "list", "--status", "Revoked", "--json", login=owner)
    assert [c["serial_number"] for c in json.loads(after.stdout)] == [serial]
    refused = cli(running_sim, "cert", "list", login=["--cert", str(cert_out), "--key", str(key_out)])
    assert refused.returncode == 2
    assert "460" in refused.stderr
