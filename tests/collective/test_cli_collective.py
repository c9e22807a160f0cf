"""`ksef-async collective create|query|invoices|find`, run as a user runs them, against a simulator on loopback."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from ksef_async.testing.pytest_plugin import DEFAULT_NIP, DEFAULT_TOKEN
from ksef_async.testing.simulator import KsefSimulator, serve_in_thread
from ksef_async.testing.simulator.retrieval import seed_invoices

BUYER = "5580730219"


@pytest.fixture(scope="module")
def running_sim() -> Iterator[tuple[KsefSimulator, list[str]]]:
    """A simulator served from its own thread (the CLI runs in another process) with five invoices of one seller."""
    with serve_in_thread(
        KsefSimulator(contexts=[(DEFAULT_NIP, DEFAULT_TOKEN)], strict_contract=True, seed=5, rate_limits="off")
    ) as sim:
        start = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)
        numbers = seed_invoices(sim, BUYER, 5, start, start + dt.timedelta(hours=4), sellers=[DEFAULT_NIP], seed=9)
        yield sim, numbers
    assert sim.contract_violations == []
    assert sim.internal_errors == []


def cli(sim: KsefSimulator, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSEF_")} | {
        "KSEF_BASE_URL": sim.base_url,
        "KSEF_NIP": DEFAULT_NIP,
        "KSEF_TOKEN": DEFAULT_TOKEN,
    }
    return subprocess.run(
        [sys.executable, "-m", "ksef_async.cli", "collective", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


def test_create_query_invoices_find(running_sim: tuple[KsefSimulator, list[str]]) -> None:
    sim, numbers = running_sim
    created = cli(sim, "create", *numbers[:3], "--amount", "12.30", "--description", "Rata 1", "--json")
    assert created.returncode == 0, created.stderr
    ci = json.loads(created.stdout)["collectiveIdentifierNumber"]
    assert len(ci) == 35
    now = sim.clock.now_dt()
    window = ("--from", (now - dt.timedelta(days=1)).isoformat(), "--to", (now + dt.timedelta(days=1)).isoformat())
    listed = cli(sim, "query", *window, "--json")
    assert listed.returncode == 0, listed.stderr
    assert [(r["collectiveIdentifierNumber"], r["invoiceCount"]) for r in json.loads(listed.stdout)] == [(ci, 3)]
    members = cli(sim, "invoices", ci, "--json")
    assert members.returncode == 0, members.stderr
    rows = json.loads(members.stdout)
    assert [r["ksefNumber"] for r in rows] == sorted(numbers[:3], reverse=True)
    assert {(r["payment"]["amount"], r["payment"]["currency"], r["description"], r["detailsHidden"]) for r in rows} == {
        ("12.3", "PLN", "Rata 1", False)
    }
    found = cli(sim, "find", numbers[0])
    assert found.returncode == 0, found.stderr
    assert found.stdout.split()[0] == ci


def test_refusals_exit_with_a_message(running_sim: tuple[KsefSimulator, list[str]]) -> None:
    sim, numbers = running_sim
    one = cli(sim, "create", numbers[0])
    assert one.returncode == 2
    assert "invoices: at least 2" in one.stderr
    naive = cli(sim, "query", "--from", "2026-07-01T00:00:00", "--to", "2026-07-02T00:00:00")
    assert naive.returncode == 2
    assert "--from: give an offset" in naive.stderr
    wide = cli(sim, "query", "--from", "2026-01-01T00:00:00Z", "--to", "2026-07-01T00:00:00Z")
    assert wide.returncode == 2
    assert "100 days" in wide.stderr
    before = sim.counters.operations["post_collective_identifiers"]
    unknown = cli(sim, "create", numbers[0], numbers[0][:-2] + "00")
    assert unknown.returncode == 2
    assert sim.counters.operations["post_collective_identifiers"] == before
