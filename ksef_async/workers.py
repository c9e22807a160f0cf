"""Workers on many machines: arq jobs that send one context's invoices by batch, resumable and never twice.

Why arq (https://arq-docs.helpmanual.io): asyncio-native like this library, Redis only (the same Redis that shares
the KSeF limits), small, jobs and their results live in Redis where any machine can read them, and a job whose
worker dies is run again by another worker. taskiq with its Redis broker would do too; arq needs no broker/result
backend pairing to choose and its retry-on-death is built in.

A job says "send the invoices under INPUT for context NIP, keeping the batch state in STATE_DIR"::

    await pool.enqueue_job("send_context", {"nip": "5265877635", "input": "/shared/in/acme",
                                             "state_dir": "/shared/state/acme", "base_url": "..."},
                           _job_id="acme-2026-12")

- **Plan on shared storage.** ``state_dir`` must be a directory every worker reaches (NFS, a shared volume): it holds
  the batch plan and encrypted spool (`ksef_async.batch`). A job that finds a plan resumes it, so an invoice in a
  closed session is never sent again; a job that finds none sends (nothing was sent before the plan existed).
- **One runner per job.** The job takes an exclusive ``flock`` on ``.<state_dir name>.lock`` beside it (released by
  the OS when the process dies, even by SIGKILL); a second runner of the same job defers itself instead of sending.
  A state directory without a plan (a prepare that was killed: nothing was sent) is moved aside and sent afresh.
- **A killed worker is noticed within seconds.** arq keeps a job "in progress" under a key that expires; the job
  renews it every ``HEARTBEAT`` seconds for ``HEARTBEAT * 3``, so when its worker dies the key lapses and another
  worker runs the job again (its try counter goes up), resuming from the plan.
- **Limits** are shared through Redis when the workers set ``KSEF_ASYNC_LIMITS_URL``; **credentials** come from each
  worker's environment (``KSEF_TOKEN_<NIP>``, or the job's ``token_env`` name), never from the job (jobs sit in
  Redis).
- **Results**: the job returns the batch report's JSON (``await job.result()`` anywhere) and also writes it to
  ``state_dir/report.json``.

Run a worker: ``KSEF_ASYNC_QUEUE_URL=redis://... KSEF_ASYNC_LIMITS_URL=redis://... python -m ksef_async.workers``
(needs ``ksef-async[workers]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from ksef_async._private_files import write_private_in
from ksef_async.auth import KsefTokenCredentials
from ksef_async.batch.engine import BatchSender, SendConfig
from ksef_async.batch.selection import select_files
from ksef_async.client import ClientConfig, KsefClient
from ksef_async.core.extras import require_extra
from ksef_async.errors import ConfigurationError
from ksef_async.manifest import set_aside_unplanned

__all__ = ["HEARTBEAT", "QUEUE_URL_ENV", "WorkerSettings", "send_context"]

QUEUE_URL_ENV = "KSEF_ASYNC_QUEUE_URL"
"""The Redis URL of the job queue (default ``redis://127.0.0.1:6379/0``)."""
HEARTBEAT = 2.0
"""Seconds between renewals of a running job's in-progress key (it lapses 3 heartbeats after its worker died)."""
_LOCK_FILE = ".lock"


class _Busy(Exception):  # noqa: N818 - an internal signal, never raised to a caller
    """Another runner holds the job's state directory."""


@contextlib.contextmanager
def _exclusive(state_dir: Path) -> Any:
    state_dir.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Beside the state directory, not in it: a killed prepare's directory may be moved aside under the lock.
    fd = os.open(state_dir.parent / f".{state_dir.name}{_LOCK_FILE}", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _Busy from None
        yield
    finally:
        os.close(fd)


@contextlib.asynccontextmanager
async def _heartbeat(ctx: Mapping[str, Any]) -> AsyncIterator[None]:
    """Renew arq's in-progress key of the running job, short enough that a dead worker's job is taken over soon."""
    from arq.constants import in_progress_key_prefix  # noqa: PLC0415 - optional dependency

    redis = ctx["redis"]
    key = in_progress_key_prefix + str(ctx["job_id"])

    async def beat() -> None:
        while True:
            await redis.pexpire(key, int(HEARTBEAT * 3 * 1000))
            await asyncio.sleep(HEARTBEAT)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _job_fields(job: Mapping[str, Any]) -> tuple[str, str, Path, Path, str]:
    try:
        nip, base_url = str(job["nip"]), str(job["base_url"])
        input_path, state_dir = Path(job["input"]), Path(job["state_dir"])
    except KeyError as exc:
        raise ConfigurationError(f"send_context job: missing field {exc.args[0]!r}") from None
    token_env = str(job.get("token_env") or f"KSEF_TOKEN_{nip}")
    return nip, base_url, input_path, state_dir, token_env


async def send_context(ctx: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    """Arq job: send (or resume) one context's batch; return the report's JSON.

    Raises:
        ConfigurationError: A field is missing or the worker has no token for the context.
    """
    from arq import Retry  # noqa: PLC0415 - optional dependency

    nip, base_url, input_path, state_dir, token_env = _job_fields(job)
    token = os.environ.get(token_env)
    if not token:
        raise ConfigurationError(f"context {nip}: this worker has no KSeF token: set {token_env}")
    config = SendConfig(concurrency=int(job.get("concurrency", 4)), validate=bool(job.get("validate", True)))
    try:
        with _exclusive(state_dir):
            async with _heartbeat(ctx), KsefClient(
                base_url, credentials=KsefTokenCredentials(token), context=nip,
                config=ClientConfig(storage_connections=config.concurrency),
            ) as client:  # fmt: skip
                sender = BatchSender(client, state_dir, config)
                if (state_dir / "plan.json").exists():
                    report = await sender.resume()
                else:
                    await asyncio.to_thread(set_aside_unplanned, state_dir)  # a killed prepare sent nothing
                    selection = select_files([input_path])
                    if selection.problems or not selection.files:
                        raise ConfigurationError(f"context {nip}: unusable input {input_path}")
                    report = await sender.send([str(f) for f in selection.files])
    except _Busy:
        raise Retry(defer=HEARTBEAT * 2) from None
    result = report.to_json() | {"nip": nip, "jobTry": ctx.get("job_try")}
    await asyncio.to_thread(write_private_in, state_dir, "report.json", (json.dumps(result, indent=2) + "\n").encode())
    return result


def _redis_settings() -> Any:
    from arq.connections import RedisSettings  # noqa: PLC0415 - optional dependency

    return RedisSettings.from_dsn(os.environ.get(QUEUE_URL_ENV, "redis://127.0.0.1:6379/0"))


class WorkerSettings:
    """arq settings of a worker; `main` (``python -m ksef_async.workers``) adds the queue's Redis from the env."""

    functions = (send_context,)
    job_timeout = 6 * 3600  # a batch of many thousands of invoices may wait long for KSeF's processing
    max_tries = 20
    poll_delay = 0.2


def main() -> None:
    """Run one worker until SIGINT/SIGTERM."""
    require_extra("arq", extra="workers")
    from arq.worker import run_worker  # noqa: PLC0415 - optional dependency

    jobs = int(os.environ.get("KSEF_ASYNC_WORKER_JOBS", "10"))  # jobs one worker runs at once
    run_worker(WorkerSettings, redis_settings=_redis_settings(), max_jobs=jobs)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
