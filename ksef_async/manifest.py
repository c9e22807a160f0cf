"""Manifest runs: many contexts sent by batch in one process, one state directory each, one report, resumable.

A manifest (TOML) maps contexts to their input and credentials; secrets never go in it::

    base_url = "https://api-test.ksef.mf.gov.pl/v2"   # optional: else --base-url / --env
    [[contexts]]
    nip = "5265877635"
    input = "invoices/acme"          # a directory (searched for *.xml) or a file, relative to the manifest
    token_env = "ACME_KSEF_TOKEN"    # default KSEF_TOKEN_<nip>
    [[contexts]]
    nip = "1111111111"
    input = "invoices/other"
    cert = "other.pem"               # XAdES login instead: PEM certificate and key files
    key = "other.key"
    key_password_env = "OTHER_KEY_PASSWORD"

`run_manifest` sends every context through the batch engine (`ksef_async.batch.engine.BatchSender`) with its own
state directory ``<state root>/<context>``, all contexts at once (at most ``contexts_at_once``) over one
`ksef_async.pool.ClientPool` (one connection pool, one per-IP limiter), and records the run (contexts, inputs,
names of the credential variables, never a secret) in ``<state root>/manifest-run.json``. `resume_manifest` finishes
such a run after a crash: a context whose plan exists is resumed (a closed session is never sent again, so no
invoice is sent twice); a context that never got a plan sent nothing and is sent now.
"""

from __future__ import annotations

import asyncio
import json
import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from ksef_async._private_files import write_private_in
from ksef_async.auth import CertificateCredentials, Credentials, KsefTokenCredentials
from ksef_async.batch.engine import BatchSender, SendConfig
from ksef_async.batch.reconcile import BatchReport
from ksef_async.batch.selection import select_files
from ksef_async.core.identifiers import nip_problem
from ksef_async.errors import ConfigurationError
from ksef_async.pool import ClientPool

__all__ = [
    "RUN_FILE",
    "ContextEntry",
    "Manifest",
    "ManifestReport",
    "load_manifest",
    "resume_manifest",
    "run_manifest",
    "set_aside_unplanned",
]

RUN_FILE = "manifest-run.json"
"""The record of a manifest run in its state root (no secrets)."""

_SECRET_KEYS = frozenset({"token", "key_password", "password"})
_KNOWN_KEYS = frozenset({"nip", "input", "token_env", "cert", "key", "key_password_env"})
_MAX_CONTEXTS = 10_000


@attrs.frozen
class ContextEntry:
    """One context of a manifest: where its invoices are and how to log in (names of secrets, never values)."""

    nip: str
    input: Path
    token_env: str | None = None
    cert: Path | None = None
    key: Path | None = None
    key_password_env: str | None = None

    def credentials(self, environ: Mapping[str, str]) -> Credentials:
        """Read this context's credentials now (from the environment and the certificate files).

        Raises:
            ConfigurationError: The variable is unset or the files are unusable (named, no secret shown).
        """
        if self.cert is not None and self.key is not None:
            password = environ.get(self.key_password_env) if self.key_password_env else None
            try:
                cert, key = self.cert.read_bytes(), self.key.read_bytes()
            except OSError as exc:
                raise ConfigurationError(f"context {self.nip}: cannot read {exc.filename}: {exc.strerror}") from None
            return CertificateCredentials.from_pem(cert, key, password.encode() if password else None)
        name = self.token_env or f"KSEF_TOKEN_{self.nip}"
        token = environ.get(name)
        if not token:
            raise ConfigurationError(f"context {self.nip}: no KSeF token: set {name}")
        return KsefTokenCredentials(token)

    def to_json(self) -> dict[str, Any]:
        """The run file's entry (paths absolute; variable names only)."""
        return {
            "nip": self.nip,
            "input": str(self.input),
            "token_env": self.token_env,
            "cert": None if self.cert is None else str(self.cert),
            "key": None if self.key is None else str(self.key),
            "key_password_env": self.key_password_env,
        }


@attrs.frozen
class Manifest:
    """A parsed manifest: an optional base URL and the contexts, in file order."""

    contexts: tuple[ContextEntry, ...]
    base_url: str | None = None


def _check_keys(raw: dict[str, Any], where: str) -> None:
    unknown = sorted(raw.keys() - _KNOWN_KEYS)
    if unknown:
        raise ConfigurationError(f"manifest {where}.{unknown[0]}: unknown key (known: {sorted(_KNOWN_KEYS)})")
    for name in _KNOWN_KEYS & raw.keys():
        if not isinstance(raw[name], str) or not raw[name]:
            raise ConfigurationError(f"manifest {where}.{name}: must be a non-empty string")


def _entry(raw: Any, index: int, root: Path) -> ContextEntry:
    where = f"contexts[{index}]"
    if not isinstance(raw, dict):
        raise ConfigurationError(f"manifest {where}: must be a table")
    secret = sorted(_SECRET_KEYS & raw.keys())
    if secret:
        raise ConfigurationError(
            f"manifest {where}.{secret[0]}: secrets never go in the manifest; name an environment variable "
            "instead (token_env, key_password_env)"
        )
    _check_keys(raw, where)
    nip = raw.get("nip")
    if nip is None or nip_problem(nip) is not None:
        raise ConfigurationError(f"manifest {where}.nip: {nip_problem(nip) if nip else 'missing'}")
    if "input" not in raw:
        raise ConfigurationError(f"manifest {where}.input: missing")
    if ("cert" in raw) != ("key" in raw):
        raise ConfigurationError(f"manifest {where}: cert and key go together")
    if "cert" in raw and "token_env" in raw:
        raise ConfigurationError(f"manifest {where}: give token_env or cert/key, not both")

    def path(name: str) -> Path | None:
        return None if name not in raw else (root / raw[name]).resolve()

    entry_input = path("input")
    assert entry_input is not None
    return ContextEntry(
        nip=nip,
        input=entry_input,
        token_env=raw.get("token_env"),
        cert=path("cert"),
        key=path("key"),
        key_password_env=raw.get("key_password_env"),
    )


def load_manifest(path: Path) -> Manifest:
    """Read and check a manifest file.

    Raises:
        ConfigurationError: Unreadable or malformed (the message names the key), a secret in the file, a context
            named twice.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"manifest {path}: cannot read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"manifest {path}: not TOML: {exc}") from None
    contexts = data.get("contexts")
    if not isinstance(contexts, list) or not contexts:
        raise ConfigurationError("manifest: needs at least one [[contexts]] table")
    if len(contexts) > _MAX_CONTEXTS:
        raise ConfigurationError(f"manifest: at most {_MAX_CONTEXTS} contexts")
    entries = tuple(_entry(raw, i, path.parent) for i, raw in enumerate(contexts))
    seen: set[str] = set()
    for entry in entries:
        if entry.nip in seen:
            raise ConfigurationError(f"manifest: context {entry.nip} appears twice")
        seen.add(entry.nip)
    base_url = data.get("base_url")
    if base_url is not None and not isinstance(base_url, str):
        raise ConfigurationError("manifest base_url: must be a string")
    return Manifest(contexts=entries, base_url=base_url)


@attrs.frozen
class ManifestReport:
    """One report for a manifest run: each context's batch report, or why the context failed."""

    reports: dict[str, BatchReport]
    errors: dict[str, str]
    state_root: Path

    @property
    def all_accepted(self) -> bool:
        """Every context ran and every invoice is in KSeF."""
        return not self.errors and all(r.all_accepted for r in self.reports.values())

    @property
    def complete(self) -> bool:
        """Every context ran and every invoice has a final outcome."""
        return not self.errors and all(r.complete for r in self.reports.values())

    def to_json(self) -> dict[str, Any]:
        """The report file's JSON object: totals, then per context its batch report or its error."""
        totals: dict[str, int] = {}
        for report in self.reports.values():
            for key, value in report.to_json()["summary"].items():
                totals[key] = totals.get(key, 0) + value
        return {
            "summary": {"contexts": len(self.reports) + len(self.errors), "failed_contexts": sorted(self.errors)}
            | totals,
            "stateRoot": str(self.state_root),
            "contexts": {
                **{nip: report.to_json() for nip, report in self.reports.items()},
                **{nip: {"error": error} for nip, error in self.errors.items()},
            },
        }


def set_aside_unplanned(state_dir: Path) -> Path | None:
    """Move a state directory without a plan (a prepare that was killed) aside, so a fresh send can use the name.

    The batch engine saves the plan before it opens any session, so such a directory sent nothing; it is renamed
    to ``<name>.unplanned-<n>`` (kept, not deleted, for inspection) and returned. Blocking: call it in a thread.
    """
    if not state_dir.exists() or (state_dir / "plan.json").exists() or not any(state_dir.iterdir()):
        return None
    for n in range(1, 10_000):
        target = state_dir.with_name(f"{state_dir.name}.unplanned-{n}")
        if not target.exists():
            state_dir.rename(target)
            return target
    raise ConfigurationError(f"{state_dir}: too many unplanned attempts set aside")


ProgressSink = Callable[[str, str], None]
"""Called with (context, message) as each context starts, finishes or fails."""


async def _run(
    pool: ClientPool,
    entries: tuple[ContextEntry, ...],
    state_root: Path,
    *,
    resume: bool,
    config: SendConfig,
    contexts_at_once: int,
    on_progress: ProgressSink | None,
) -> ManifestReport:
    reports: dict[str, BatchReport] = {}
    errors: dict[str, str] = {}
    gate = asyncio.Semaphore(contexts_at_once)

    def tell(nip: str, message: str) -> None:
        if on_progress is not None:
            on_progress(nip, message)

    async def one(entry: ContextEntry) -> None:
        async with gate:
            state_dir = state_root / entry.nip
            try:
                client = await pool.client(entry.nip)
                sender = BatchSender(client, state_dir, config)
                if resume and (state_dir / "plan.json").exists():
                    tell(entry.nip, "resuming")
                    report = await sender.resume()
                else:
                    if resume and await asyncio.to_thread(set_aside_unplanned, state_dir) is not None:
                        tell(entry.nip, "its prepare had been interrupted (nothing was sent): sending afresh")
                    selection = select_files([entry.input])
                    if selection.problems or not selection.files:
                        first = selection.problems[0].reason if selection.problems else "no *.xml files"
                        raise ConfigurationError(f"input {entry.input}: {first}")  # noqa: TRY301
                    tell(entry.nip, f"sending {len(selection.files)} invoices")
                    report = await sender.send([str(f) for f in selection.files])
            except Exception as exc:  # noqa: BLE001 - one context's failure is reported; the others go on
                errors[entry.nip] = f"{type(exc).__name__}: {exc}"
                tell(entry.nip, f"failed: {errors[entry.nip]}")
                return
            reports[entry.nip] = report
            tell(
                entry.nip, f"done: {report.count('accepted') + report.count('duplicate')}/{len(report.entries)} in KSeF"
            )

    await asyncio.gather(*(one(entry) for entry in entries))
    ordered = {e.nip: reports[e.nip] for e in entries if e.nip in reports}
    return ManifestReport(reports=ordered, errors=errors, state_root=state_root)


def _record_run(state_root: Path, record: dict[str, Any]) -> None:
    state_root.mkdir(parents=True, exist_ok=True, mode=0o700)
    if (state_root / RUN_FILE).exists():
        raise ConfigurationError(f"{state_root} already holds a manifest run: finish it with 'ksef-async resume'")
    write_private_in(state_root, RUN_FILE, (json.dumps(record, indent=2) + "\n").encode())


def _provider(entries: tuple[ContextEntry, ...], environ: Mapping[str, str]) -> Callable[[str], Credentials]:
    by_nip = {e.nip: e for e in entries}

    def provide(nip: str) -> Credentials:
        return by_nip[nip].credentials(environ)

    return provide


async def run_manifest(
    manifest: Manifest,
    base_url: str,
    state_root: Path,
    *,
    config: SendConfig | None = None,
    pool_options: Mapping[str, Any] | None = None,
    contexts_at_once: int = 8,
    on_progress: ProgressSink | None = None,
    environ: Mapping[str, str] | None = None,
) -> ManifestReport:
    """Send every context of ``manifest`` by batch, concurrently; record the run for `resume_manifest`.

    Raises:
        ConfigurationError: ``state_root`` already holds a run (resume it instead).
    """
    record = {"base_url": base_url, "contexts": [e.to_json() for e in manifest.contexts]}
    await asyncio.to_thread(_record_run, state_root, record)
    env = os.environ if environ is None else environ
    async with ClientPool(base_url, credentials=_provider(manifest.contexts, env), **(pool_options or {})) as pool:
        return await _run(
            pool, manifest.contexts, state_root, resume=False, config=config or SendConfig(),
            contexts_at_once=contexts_at_once, on_progress=on_progress,
        )  # fmt: skip


async def resume_manifest(
    state_root: Path,
    *,
    config: SendConfig | None = None,
    pool_options: Mapping[str, Any] | None = None,
    contexts_at_once: int = 8,
    on_progress: ProgressSink | None = None,
    environ: Mapping[str, str] | None = None,
) -> ManifestReport:
    """Finish the manifest run recorded in ``state_root`` without sending any invoice twice.

    Raises:
        ConfigurationError: No run file, or a malformed one.
    """
    try:
        record = json.loads(await asyncio.to_thread((state_root / RUN_FILE).read_text, encoding="utf-8"))
        base_url = str(record["base_url"])
        entries = tuple(
            ContextEntry(
                nip=str(c["nip"]),
                input=Path(c["input"]),
                token_env=c.get("token_env"),
                cert=None if c.get("cert") is None else Path(c["cert"]),
                key=None if c.get("key") is None else Path(c["key"]),
                key_password_env=c.get("key_password_env"),
            )
            for c in record["contexts"]
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(f"{state_root}/{RUN_FILE}: not a manifest run record ({exc})") from None
    env = os.environ if environ is None else environ
    async with ClientPool(base_url, credentials=_provider(entries, env), **(pool_options or {})) as pool:
        return await _run(
            pool, entries, state_root, resume=True, config=config or SendConfig(),
            contexts_at_once=contexts_at_once, on_progress=on_progress,
        )  # fmt: skip
