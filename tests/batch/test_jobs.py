"""Job registries: unfinished state directories under a root, and resume's progress events from its first step."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from ksef_async.batch.engine import BatchClient, BatchSender
from ksef_async.batch.events import InvoicesValidated, SessionPrepared, SessionStatusChanged
from ksef_async.batch.jobs import find_unfinished_batches
from ksef_async.testing.invoices import InvoiceFactory

from .conftest import NIP, fast_config
from .test_close import ScriptedApi

pytestmark = pytest.mark.anyio


async def no_wait(_seconds: float) -> None:
    return None


async def test_unfinished_sends_are_listed_and_resume_reports_progress_first(tmp_path: Path) -> None:
    items = list(InvoiceFactory(NIP, seed=53, size_kb=4).iter(4))
    api = ScriptedApi(["ok"], items, refuse_uploads=1)
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "plan.json").write_text("{not json")
    first = await BatchSender(
        cast("BatchClient", api), tmp_path / "job-1", fast_config(use_context_limits=False), sleep=no_wait
    ).send(items)
    assert not first.all_accepted
    (unfinished,) = find_unfinished_batches(tmp_path)
    assert unfinished.state_dir == tmp_path / "job-1"
    assert (unfinished.sessions, unfinished.sessions_done, unfinished.invoices) == (1, 0, 4)

    events: list[Any] = []
    opens_before = api.opens
    uploads_seen: list[int] = []

    def on_event(event: Any) -> None:
        events.append(event)
        uploads_seen.append(api.opens)

    again = await BatchSender(
        cast("BatchClient", api),
        tmp_path / "job-1",
        fast_config(use_context_limits=False),
        sleep=no_wait,
        on_event=on_event,
    ).resume()
    assert again.all_accepted
    kinds = [type(e) for e in events[:3]]
    assert kinds == [SessionPrepared, InvoicesValidated, SessionStatusChanged]
    assert isinstance(events[1], InvoicesValidated)
    assert events[1].invoices == 4
    assert uploads_seen[0] == opens_before  # emitted before any API call of the resume
    assert find_unfinished_batches(tmp_path) == []
