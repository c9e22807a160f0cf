"""An aiohttp invoicing service on ksef-async: one client and one OnlineSender for the app, background batch jobs.

Run against a local simulator (``ksef-async simulator --port 8090 --nip 5265877635 --token ...``)::

    python -m examples.aiohttp_service.app --base-url http://127.0.0.1:8090/v2 --nip 5265877635 \
        --token "$KSEF_TOKEN" --state-root /var/lib/invoicing/batches

Endpoints:

- ``POST /invoices`` (body: one invoice's XML): sends it through the shared online session and answers with its
  outcome once KSeF has processed it: 200 accepted (``ksefNumber``), 422 invalid locally or rejected by KSeF,
  429 with ``Retry-After`` when the rate limiter would make the request wait longer than ``--max-wait`` seconds
  (nothing was sent), 503 when KSeF cannot be reached.
- ``POST /batches`` (body: ``{"files": ["/path/a.xml", ...]}``): starts a background batch job in its own state
  directory under ``--state-root``; answers 202 with the job id. ``GET /batches/{id}`` shows its progress and, once
  finished, its counts. Jobs left unfinished by a crash or a restart are resumed when the app starts.
- ``GET /health``: whether KSeF is reachable, the online session, and per rate-limit group the requests used and
  remaining in each window and the seconds until the next free slot, all without any API call.

Cancellation: a client that disconnects while ``POST /invoices`` waits cancels the handler; an invoice already on
its way to KSeF is not lost: its outcome is logged and kept in ``sender.outcomes``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
from aiohttp import web

from ksef_async import KsefClient, KsefTokenCredentials, OnlineSender, resume_batch, send_batch
from ksef_async.batch.events import BatchEvent, InvoicesValidated, PartUploaded, SessionStatusChanged
from ksef_async.batch.jobs import find_unfinished_batches
from ksef_async.errors import InvoiceError, RateLimitWaitExceededError, TransportError
from ksef_async.ratelimit import limiter_wait

__all__ = ["Settings", "create_app", "main"]

log = logging.getLogger("invoicing")

HEALTH_GROUPS = ("invoiceSend", "onlineSession", "invoiceStatus", "batchSession", "global")


@attrs.frozen
class Settings:
    """What the service needs: where KSeF is, whose context, where batch jobs keep their state."""

    base_url: str
    nip: str
    token: str = attrs.field(repr=False)
    state_root: Path
    max_wait: float = 10.0
    """Longest rate-limiter wait of one ``POST /invoices`` before answering 429 with Retry-After."""


@attrs.define
class Job:
    """One background batch job and its progress, as ``GET /batches/{id}`` shows it."""

    id: str
    state_dir: Path
    resumed: bool
    invoices: int = 0
    parts_uploaded: int = 0
    sessions: dict[int, str] = attrs.field(factory=dict)
    result: dict[str, Any] | None = None
    error: str | None = None
    task: asyncio.Task[None] | None = attrs.field(default=None, repr=False)

    def on_event(self, event: BatchEvent) -> None:
        if isinstance(event, InvoicesValidated):
            self.invoices = event.invoices
        elif isinstance(event, PartUploaded):
            self.parts_uploaded += 1
        elif isinstance(event, SessionStatusChanged):
            self.sessions[event.session] = event.state

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "resumed": self.resumed,
            "running": self.task is not None and not self.task.done(),
            "invoices": self.invoices,
            "parts_uploaded": self.parts_uploaded,
            "sessions": {str(k): v for k, v in self.sessions.items()},
            "result": self.result,
            "error": self.error,
        }


CLIENT = web.AppKey("client", KsefClient)
SENDER = web.AppKey("sender", OnlineSender)
JOBS = web.AppKey("jobs", dict[str, Job])
SETTINGS = web.AppKey("settings", Settings)


async def run_job(client: KsefClient, job: Job, files: list[Path] | None) -> None:
    """Send (or resume) one batch job; the outcome goes into the job record."""
    try:
        if files is None:
            report = await resume_batch(client, job.state_dir, on_event=job.on_event)
        else:
            report = await send_batch(client, files, state_dir=job.state_dir, on_event=job.on_event)
    except Exception as exc:  # noqa: BLE001 - reported through GET /batches/{id}
        job.error = f"{type(exc).__name__}: {exc}"
        log.warning("batch job %s failed: %s", job.id, job.error)
        return
    job.result = {"all_accepted": report.all_accepted, "entries": len(report.entries)}
    log.info("batch job %s finished: %d invoices, all accepted: %s", job.id, len(report.entries), report.all_accepted)


def start_job(app: web.Application, job: Job, files: list[Path] | None) -> None:
    app[JOBS][job.id] = job
    job.task = asyncio.create_task(run_job(app[CLIENT], job, files), name=f"batch-job-{job.id}")


async def ksef_context(app: web.Application) -> AsyncIterator[None]:
    """Startup: open the client and the sender, resume unfinished batch jobs. Cleanup: the reverse, shielded."""
    settings = app[SETTINGS]
    settings.state_root.mkdir(parents=True, exist_ok=True)
    client = KsefClient(settings.base_url, credentials=KsefTokenCredentials(settings.token), context=settings.nip)
    await client.open()
    sender = OnlineSender(client, form_code="FA (3)")
    await sender.__aenter__()
    app[CLIENT], app[SENDER], app[JOBS] = client, sender, {}
    for unfinished in find_unfinished_batches(settings.state_root):
        job = Job(unfinished.state_dir.name, unfinished.state_dir, resumed=True)
        log.info("resuming batch job %s (%d invoices)", job.id, unfinished.invoices)
        start_job(app, job, None)
    try:
        yield
    finally:
        # Running batch jobs are cancelled: their state directories stay resumable for the next start.
        tasks = [job.task for job in app[JOBS].values() if job.task is not None and not job.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await sender.close()  # waits for invoices in flight, closes the session, collects its UPO
        for session in sender.sessions:
            log.info("online session %s closed with %d UPO pages", session.reference_number, len(session.upo))
        await client.close()


async def post_invoice(request: web.Request) -> web.Response:
    xml = await request.read()
    sender = request.app[SENDER]
    try:
        with limiter_wait(request.app[SETTINGS].max_wait):
            outcome = await sender.submit(xml)
    except InvoiceError as exc:
        problems = [{"line": p.line, "rule": p.rule, "reason": p.reason} for p in exc.problems]
        return web.json_response({"error": "invalid invoice", "problems": problems}, status=422)
    except RateLimitWaitExceededError as exc:
        retry_after = str(max(1, round(exc.retry_after or 1)))
        body = {"error": "rate limited", "group": exc.group, "retry_after": exc.retry_after}
        return web.json_response(body, status=429, headers={"Retry-After": retry_after})
    except TransportError as exc:
        return web.json_response({"error": f"KSeF unreachable: {exc}"}, status=503)
    return web.json_response(outcome.to_json(), status=200 if outcome.accepted else 422)


async def post_batch(request: web.Request) -> web.Response:
    body = await request.json()
    files = [Path(str(name)) for name in body.get("files", [])]
    if not files:
        return web.json_response({"error": "give files: a list of invoice paths"}, status=400)
    job_id = uuid.uuid4().hex[:12]
    job = Job(job_id, request.app[SETTINGS].state_root / job_id, resumed=False)
    start_job(request.app, job, files)
    return web.json_response({"id": job_id}, status=202)


async def get_batch(request: web.Request) -> web.Response:
    job = request.app[JOBS].get(request.match_info["id"])
    if job is None:
        return web.json_response({"error": "no such job"}, status=404)
    return web.json_response(job.to_json())


async def health(request: web.Request) -> web.Response:
    client, sender = request.app[CLIENT], request.app[SENDER]
    limiter = client.limiter
    now = limiter.now()
    groups: dict[str, Any] = {}
    for group in HEALTH_GROUPS:
        usage = await limiter.usage(group)
        groups[group] = {
            "windows": [
                {"seconds": w.seconds, "limit": w.limit, "used": w.used, "remaining": w.remaining}
                for w in usage.windows
            ],
            "next_free_in": round(max(0.0, usage.next_free - now), 3),
            "paused_for": round(max(0.0, usage.paused_until - now), 3),
        }
    body = {
        "ksef_reachable": client.reachable,
        "online_session": sender.session_reference_number,
        "sessions_opened": sender.sessions_opened,
        "batch_jobs_running": sum(1 for j in request.app[JOBS].values() if j.task is not None and not j.task.done()),
        "rate_limits": groups,
    }
    return web.json_response(body)


def create_app(settings: Settings) -> web.Application:
    """The service's application; ``web.run_app(create_app(settings))`` serves it."""
    app = web.Application()
    app[SETTINGS] = settings
    app.cleanup_ctx.append(ksef_context)
    app.router.add_post("/invoices", post_invoice)
    app.router.add_post("/batches", post_batch)
    app.router.add_get("/batches/{id}", get_batch)
    app.router.add_get("/health", health)
    return app


def main() -> None:
    """Serve the app: ``python -m examples.aiohttp_service.app --help``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--nip", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--state-root", type=Path, required=True)
    parser.add_argument("--max-wait", type=float, default=10.0)
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings(args.base_url, args.nip, args.token, args.state_root, args.max_wait)
    with contextlib.suppress(KeyboardInterrupt):
        web.run_app(create_app(settings), host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
