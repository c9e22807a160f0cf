"""`ksef-async permissions grant|list|revoke`, run as a user runs them, against a simulator on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN
from ksef_async.testing.simulator import KsefSimulator, serve_in_thread

PESEL = "15062788702"


@pytest.fixture(scope="module")
def running_sim() -> Iterator[KsefSimulator]:
    """A simulator served from its own event loop thread, so the CLI can run in a separate process."""
    with serve_in_thread(
        KsefSimulator(contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)], strict_contract=True, seed=5, rate_limits="off")
    ) as sim:
        yield sim
    assert sim.contract_violations == []
    assert sim.internal_errors == []


def cli(sim: KsefSimulator, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSEF_")} | {
        "KSEF_BASE_URL": sim.base_url,
        "KSEF_NIP": DEFAULT_NIP,
        "KSEF_TOKEN": DEFAULT_TOKEN,
    }
    return subprocess.run(
        [sys.executable, "-m", "ksef_async.cli", "permissions", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


def listed(sim: KsefSimulator) -> list[dict[str, object]]:
    result = cli(sim, "list", "--json")
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, object]] = json.loads(result.stdout)
    return rows


def test_grant_list_revoke(running_sim: KsefSimulator) -> None:
    granted = cli(
        running_sim,
        "grant",
        "InvoiceWrite",
        "InvoiceRead",
        "--subject-pesel",
        PESEL,
        "--first-name",
        "Jan",
        "--last-name",
        "Kowalski",
        "--description",
        "Księgowość: faktury",
    )
    assert granted.returncode == 0, granted.stderr
    assert "[200]" in granted.stdout

    rows = listed(running_sim)
    assert sorted((r["permission"], r["subject"]) for r in rows) == [
        ("InvoiceRead", f"Pesel:{PESEL}"),
        ("InvoiceWrite", f"Pesel:{PESEL}"),
    ]
    table = cli(running_sim, "list")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == ["ID", "PERMISSION", "SUBJECT", "CONTEXT", "AUTHOR", "DESCRIPTION"]
    assert "2 permission(s)" in table.stdout

    write_id = next(str(r["id"]) for r in rows if r["permission"] == "InvoiceWrite")
    revoked = cli(running_sim, "revoke", write_id)
    assert revoked.returncode == 0, revoked.stderr
    assert [r["permission"] for r in listed(running_sim)] == ["InvoiceRead"]

    # Revoking it again: KSeF refuses (the operation ends with 400), exit code 1.
    again = cli(running_sim, "revoke", write_id)
    assert again.returncode == 1
    assert "[400]" in again.stderr


def test_refused_grant_exits_1_and_bad_options_exit_2(running_sim: KsefSimulator) -> None:
    person = ["--first-name", "Jan", "--last-name", "Kowalski", "--description", "Egzekucja komornicza"]
    refused = cli(running_sim, "grant", "EnforcementOperations", "--subject-pesel", PESEL, *person)
    assert refused.returncode == 1
    assert "[430]" in refused.stderr

    no_subject = cli(running_sim, "grant", "InvoiceRead", *person)
    assert no_subject.returncode == 2
    assert "--subject-pesel" in no_subject.stderr

    bad_pesel = cli(running_sim, "grant", "InvoiceRead", "--subject-pesel", "12345678901", *person)
    assert bad_pesel.returncode == 2
    assert "not a valid PESEL" in bad_pesel.stderr
