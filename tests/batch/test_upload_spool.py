"""`upload_part` reports a spool file that vanished before it was opened as a typed error, without retrying."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import BinaryIO, cast

import pytest

from ksef_async.batch.events import BatchEvent
from ksef_async.batch.upload import PartRequest, PartUploader, upload_part
from ksef_async.core.polling import Backoff
from ksef_async.errors import ConfigurationError
from ksef_async.models import PartUploadRequest

pytestmark = pytest.mark.anyio


class _Storage:
    def __init__(self) -> None:
        self.calls = 0

    async def upload_part(self, request: PartUploadRequest, body: bytes | BinaryIO, size: int) -> int:
        self.calls += 1
        return 201


async def test_a_spool_file_deleted_after_the_size_check_is_a_configuration_error(tmp_path: Path) -> None:
    part = tmp_path / "s001-part-0001.aes"
    part.write_bytes(b"x" * 32)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def now() -> dt.datetime:
        # The clock is read after the size check and before the file is opened: delete it in between.
        part.unlink(missing_ok=True)
        return start

    storage = _Storage()
    events: list[BatchEvent] = []
    with pytest.raises(ConfigurationError, match=r"s001-part-0001\.aes: spool file of part 1 cannot be read"):
        await upload_part(
            cast("PartUploader", storage),
            session=1,
            request=PartRequest(1, "PUT", "https://storage.invalid/part-1?sig=secret"),
            path=part,
            size=32,
            deadline=start + dt.timedelta(minutes=20),
            now=now,
            backoff=Backoff(initial=0.01, factor=1.0, maximum=0.01),
            emit=events.append,
        )
    assert storage.calls == 0
    assert events == []
