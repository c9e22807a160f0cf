"""``offlineMode`` in online and batch sending, and KSeF's automatic Offline marking (docs ``tryby-offline.md``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ksef_async import send_batch
from ksef_async.online import send_online
from ksef_async.testing.invoices import InvoiceFactory
from ksef_async.testing.pytest_plugin import DEFAULT_NIP
from ksef_async.testing.simulator import KsefSimulator

from .conftest import client_for, fast_batch, yesterday

pytestmark = pytest.mark.anyio


async def test_online_invoices_sent_with_offline_mode_come_back_offline(ksef_simulator: KsefSimulator) -> None:
    offline = list(InvoiceFactory(DEFAULT_NIP, seed=41).iter(3))
    online = list(InvoiceFactory(DEFAULT_NIP, seed=42).iter(2, start=10))
    async with client_for(ksef_simulator) as client:
        marked = await send_online(client, offline, offline_mode=True)
        plain = await send_online(client, online)
    assert marked.all_accepted
    assert [o.invoicing_mode for o in marked.outcomes] == ["Offline"] * 3
    assert all(o.to_json()["invoicing_mode"] == "Offline" for o in marked.outcomes)
    assert plain.all_accepted
    assert [o.invoicing_mode for o in plain.outcomes] == ["Online"] * 2
    stored = {o.ksef_number: ksef_simulator.state.invoices[o.ksef_number or ""].invoicing_mode for o in marked.outcomes}
    assert set(stored.values()) == {"Offline"}


async def test_online_invoice_issued_before_today_is_marked_offline_automatically(
    ksef_simulator: KsefSimulator,
) -> None:
    late = InvoiceFactory(DEFAULT_NIP, seed=43, issue_date=yesterday()).make(0)
    today = InvoiceFactory(DEFAULT_NIP, seed=44).make(1)
    async with client_for(ksef_simulator) as client:
        result = await send_online(client, [late, today])
    assert result.all_accepted
    assert [o.invoicing_mode for o in result.outcomes] == ["Offline", "Online"]


async def test_batch_session_opened_with_offline_mode_marks_its_invoices_offline(
    ksef_simulator: KsefSimulator, tmp_path: Path
) -> None:
    invoices = list(InvoiceFactory(DEFAULT_NIP, seed=45).iter(4))
    state = tmp_path / "state"
    async with client_for(ksef_simulator) as client:
        report = await send_batch(client, invoices, state_dir=state, config=fast_batch(offline_mode=True))
    assert report.all_accepted
    assert [e.invoicing_mode for e in report.entries] == ["Offline"] * 4
    assert all(item["invoicing_mode"] == "Offline" for item in report.to_json()["invoices"])
    # The mode is recorded per session in the plan, so a resumed send reopens offline too.
    plan = json.loads((state / "plan.json").read_text(encoding="utf-8"))
    assert [s["offline_mode"] for s in plan["sessions"]] == [True]


async def test_batch_without_offline_mode_marks_only_late_invoices_offline(
    ksef_simulator: KsefSimulator, tmp_path: Path
) -> None:
    # invoicingDate of a batch is the session's open time: P_1 yesterday is before it, P_1 today is not.
    late = InvoiceFactory(DEFAULT_NIP, seed=46, issue_date=yesterday()).make(0)
    today = InvoiceFactory(DEFAULT_NIP, seed=47).make(1)
    async with client_for(ksef_simulator) as client:
        report = await send_batch(client, [late, today], state_dir=tmp_path / "state", config=fast_batch())
    assert report.all_accepted
    modes = {e.file: e.invoicing_mode for e in report.entries}
    assert modes == {late[0]: "Offline", today[0]: "Online"}
