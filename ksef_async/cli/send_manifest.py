"""`ksef-async send --manifest FILE.toml` and `resume` of such a run: many contexts at once, one report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ksef_async.batch.engine import SendConfig
from ksef_async.batch.resume import default_state_dir
from ksef_async.cli._connection import EXIT_LOCAL_IO, EXIT_OK, EXIT_REJECTED, EXIT_USAGE, Connection, run_async
from ksef_async.cli._files import check_outputs, write_output
from ksef_async.client import ClientConfig
from ksef_async.errors import ConfigurationError
from ksef_async.manifest import RUN_FILE, ManifestReport, load_manifest, resume_manifest, run_manifest

__all__ = ["is_manifest_run", "resume_manifest_cli", "send_manifest_cli"]


def is_manifest_run(state_dir: Path) -> bool:
    """Whether ``state_dir`` is the state root of a manifest run."""
    return (state_dir / RUN_FILE).is_file()


def _progress(context: str, message: str) -> None:
    print(f"[{context}] {message}", file=sys.stderr, flush=True)


def _finish(result: ManifestReport, report: Path | None) -> int:
    for nip, batch in result.reports.items():
        in_ksef = batch.count("accepted") + batch.count("duplicate")
        print(f"{nip}: {in_ksef}/{len(batch.entries)} in KSeF, state {result.state_root / nip}")
    for nip, error in result.errors.items():
        print(f"{nip}: failed: {error}")
    if report is not None:
        write_output(report, (json.dumps(result.to_json(), ensure_ascii=False, indent=2) + "\n").encode())
    if not result.complete:
        print(f"not finished; finish with: ksef-async resume {result.state_root}", file=sys.stderr)
    return EXIT_OK if result.all_accepted else EXIT_REJECTED


def _pool_options(connection: Connection, concurrency: int) -> dict[str, object]:
    return {"config": ClientConfig(storage_connections=concurrency * 2), "rate_limits": connection.limits_url}


def send_manifest_cli(
    manifest_path: Path,
    connection: Connection,
    *,
    report: Path | None,
    state_dir: Path | None,
    concurrency: int,
    paths: list[Path] | None = None,
) -> int:
    """Run a manifest: every context sent by batch at once; progress per context on stderr; one report."""
    if paths:
        print("--manifest takes the inputs from the manifest: give no PATHS", file=sys.stderr)
        return EXIT_USAGE
    if check_outputs((report, "--report", False), (state_dir, "--state-dir", True)):
        return EXIT_LOCAL_IO
    try:
        manifest = load_manifest(manifest_path)
        base_url = manifest.base_url or connection.resolved_base_url()
        config = SendConfig(concurrency=concurrency)
    except ConfigurationError as exc:
        print(f"ksef-async send: {exc}", file=sys.stderr)
        return EXIT_USAGE
    root = state_dir or default_state_dir()
    print(f"state directory: {root}", file=sys.stderr)
    return run_async(
        lambda: run_manifest(
            manifest,
            base_url,
            root,
            config=config,
            pool_options=_pool_options(connection, concurrency),
            on_progress=_progress,
        ),
        lambda result: _finish(result, report),
    )


def resume_manifest_cli(state_dir: Path, connection: Connection, *, report: Path | None, concurrency: int) -> int:
    """Finish a manifest run: resume each context's batch, send the contexts that never got a plan."""
    config = SendConfig(concurrency=concurrency)
    return run_async(
        lambda: resume_manifest(
            state_dir, config=config, pool_options=_pool_options(connection, concurrency), on_progress=_progress
        ),
        lambda result: _finish(result, report),
    )
