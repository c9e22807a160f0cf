"""A failed prepare calls ``on_abort`` while its spool files still exist, and deletes them only after it returns."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from ksef_async.batch import prepare_batch, prepare_batch_sync
from ksef_async.core.plan import SessionLimits
from ksef_async.errors import InvoiceError
from ksef_async.testing.invoices import InvoiceFactory

PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
POOL = list(InvoiceFactory("5265877635", seed=6, size_kb=4).iter(30))


def _broken() -> tuple[str, bytes]:
    _, data = POOL[7]
    return "broken.xml", data.replace(b"<P_2>", b"<P_2x>", 1).replace(b"</P_2>", b"</P_2x>", 1)


def test_on_abort_runs_while_the_spool_files_still_exist(tmp_path: Path) -> None:
    # Uploads started from on_session read the spool: on_abort stops them before the files go.
    state = tmp_path / "state"
    seen_at_abort: list[str] = []
    inputs = [*POOL[:20], _broken()]

    def on_abort() -> None:
        seen_at_abort.extend(sorted(p.name for p in state.glob("*.aes")))

    with pytest.raises(InvoiceError):
        prepare_batch_sync(
            inputs, public_key=PRIVATE.public_key(), state_dir=state, part_size=2_000,
            limits=SessionLimits(max_invoices=5), on_abort=on_abort,
        )  # fmt: skip
    assert seen_at_abort  # the parts of the finished sessions were there when on_abort ran ...
    assert not list(state.glob("*.aes"))  # ... and deleted after it returned


@pytest.mark.anyio
async def test_a_cancelled_async_prepare_awaits_on_abort_before_deleting(tmp_path: Path) -> None:
    # The caller's cancellation is the reason for the abort: on_abort must still run to its end.
    pulled = 0
    seen_at_abort: list[str] = []

    async def source() -> AsyncIterator[tuple[str, bytes]]:
        nonlocal pulled
        for item in POOL:
            pulled += 1
            if pulled == 12:
                scope.cancel()
            yield item

    async def on_abort() -> None:
        await anyio.sleep(0.05)  # a checkpoint: a cancelled on_abort would stop here
        seen_at_abort.extend(p.name for p in tmp_path.glob("*.aes"))  # noqa: ASYNC240 - a test's probe

    with anyio.CancelScope() as scope:
        await prepare_batch(
            source(), public_key=PRIVATE.public_key(), state_dir=tmp_path, validate=False, part_size=2_000,
            limits=SessionLimits(max_invoices=5), on_abort=on_abort, workers=1,  # no read-ahead: 12 pulls spool
        )  # fmt: skip
    assert scope.cancelled_caught
    assert seen_at_abort
    assert not any(tmp_path.iterdir())  # noqa: ASYNC240 - a test's check after the work is done
