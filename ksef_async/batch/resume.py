"""The state directory of a batch send: where it is, and the per-session upload record that holds the signed URLs.

A state directory holds (all owner-only, 0600 files in a 0700 directory):

* ``plan.json``: the `ksef_async.core.plan.BatchPlan`, rewritten atomically after every step (see
  `ksef_async.batch.prepare.save_plan`): sessions, parts, hashes, what was uploaded, reference numbers, results;
* ``sNNN-part-NNNN.aes``: the ciphertext of every part (deleted once its session is done);
* ``sNNN-upload.json``: the answer of ``POST /sessions/batch`` for session NNN: its ``referenceNumber``, the upload
  deadline and ``partUploadRequests``. The URLs there carry a signature (``sig``) that grants write access to the
  session's parts until the window closes; they are needed to resume an upload, so they are kept here, and only
  here: never in a log line, an event, the plan or the report. The file is deleted once the session is closed.

It is written before the plan records the reference number, so a crash between the two leaves the reference on
disk and `ksef_async.batch.engine.BatchSender.resume` adopts the open session instead of opening another.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from ksef_async._private_files import write_private
from ksef_async.batch.upload import PartRequest
from ksef_async.errors import ConfigurationError, ProtocolError

__all__ = [
    "STATE_ENV",
    "UploadRecord",
    "default_state_dir",
    "delete_upload_record",
    "read_upload_record",
    "upload_record_name",
    "write_upload_record",
]

STATE_ENV: Final = "XDG_CACHE_HOME"


def default_state_dir(
    *, environ: Mapping[str, str] | None = None, now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
) -> Path:
    """A new directory name under the user's cache: ``$XDG_CACHE_HOME/ksef-async/<UTC timestamp>``.

    ``~/.cache`` stands in for an unset ``XDG_CACHE_HOME``. The directory is not created here.
    """
    env = os.environ if environ is None else environ
    base = Path(env[STATE_ENV]) if env.get(STATE_ENV) else Path.home() / ".cache"
    stamp = now().strftime("%Y%m%dT%H%M%S.%fZ")
    return base / "ksef-async" / stamp


@attrs.frozen
class UploadRecord:
    """What ``POST /sessions/batch`` answered for one session (the URLs are secret: no repr)."""

    reference_number: str
    upload_deadline: dt.datetime
    requests: tuple[PartRequest, ...] = attrs.field(repr=False)

    def request(self, ordinal: int) -> PartRequest:
        """The upload request of part ``ordinal``.

        Raises:
            ProtocolError: KSeF's ``POST /sessions/batch`` answer had none for it.
        """
        for r in self.requests:
            if r.ordinal == ordinal:
                return r
        msg = f"session {self.reference_number}: KSeF returned no upload request for part {ordinal}"
        raise ProtocolError(msg, operation="post_sessions_batch", field="$.partUploadRequests")


def upload_record_name(session: int) -> str:
    """File name of the upload record of session ``session``."""
    return f"s{session:03d}-upload.json"


def write_upload_record(state_dir: Path, session: int, record: UploadRecord) -> None:
    """Write the record atomically (temporary file, fsync, rename), mode 0600. Blocking: call from a thread."""
    data = json.dumps(
        {
            "referenceNumber": record.reference_number,
            "uploadDeadline": record.upload_deadline.isoformat(),
            "partUploadRequests": [r.to_json() for r in record.requests],
        }
    ).encode()
    write_private(state_dir / upload_record_name(session), data, fsync=True, fsync_dir=True)


def read_upload_record(state_dir: Path, session: int) -> UploadRecord | None:
    """Read the record of ``session`` (``None`` when there is none).

    Raises:
        ConfigurationError: The file exists but cannot be parsed.
    """
    path = state_dir / upload_record_name(session)
    try:
        raw: Any = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        msg = f"{path}: cannot read the upload record: {exc}"
        raise ConfigurationError(msg) from exc
    try:
        return UploadRecord(
            str(raw["referenceNumber"]),
            dt.datetime.fromisoformat(raw["uploadDeadline"]),
            tuple(PartRequest.from_json(r) for r in raw["partUploadRequests"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        msg = f"{path}: the upload record is malformed ({type(exc).__name__})"
        raise ConfigurationError(msg) from exc


def delete_upload_record(state_dir: Path, session: int) -> None:
    """Delete the record of ``session`` (its URLs are no use once the session is closed or abandoned)."""
    (state_dir / upload_record_name(session)).unlink(missing_ok=True)
