"""`ksef-async validate`: check invoice files offline (preflight and XSD) and print one line per problem."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated

from cyclopts import Parameter

from ksef_async.batch.selection import UnusableFileError, read_invoice_file, select_files
from ksef_async.cli._app import app
from ksef_async.errors import InvoiceProblem
from ksef_async.xml.validation import ValidationResult, check_invoice

__all__ = ["check_paths", "expand_paths", "validate"]


def expand_paths(paths: Iterable[Path]) -> tuple[list[Path], list[InvoiceProblem]]:
    """Expand directories to their ``*.xml`` files (recursively, sorted); return ``(files, problems)``.

    ``problems`` names every path that names nothing (rule ``missing``), every directory that cannot be searched
    and every ``*.xml`` entry that is not a readable regular file (rule ``io``).
    """
    selection = select_files(paths)
    return list(selection.files), list(selection.problems)


def _check_file(path: Path) -> ValidationResult:
    name = str(path)
    try:
        data = read_invoice_file(path)
    except UnusableFileError as exc:
        return ValidationResult(name, (InvoiceProblem(name, exc.reason, None, exc.rule),), None, None)
    return check_invoice(data, name)


def check_paths(files: list[Path], jobs: int | None = None) -> Iterator[ValidationResult]:
    """Check ``files`` on ``jobs`` threads (default: one per CPU), yielding results in input order.

    Threads pay off: lxml releases the GIL while it parses and validates.
    """
    workers = max(1, min(jobs or os.cpu_count() or 1, len(files) or 1))
    if workers == 1:
        yield from map(_check_file, files)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ksef-validate") as pool:
        yield from pool.map(_check_file, files)


@app.command(name="validate")
def validate(
    paths: list[Path],
    /,
    *,
    as_json: Annotated[bool, Parameter(name="--json", negative="")] = False,
    jobs: int | None = None,
) -> int:
    """Validate invoice files offline: encoding, prolog, characters, size, well-formedness and the XSD.

    Prints ``file:line: reason`` for every problem (or, with --json, a JSON list with one object per file) and
    exits 0 when every invoice is valid, 1 when any is invalid, 2 when a path does not exist or cannot be read
    (an unreadable directory, a symlink loop, a FIFO, a device: each is named with its reason).

    Parameters
    ----------
    paths
        Invoice files (any name), directories (searched recursively for names ending in ``.xml``, any case) or
        glob patterns (``*``, ``?``, ``[...]``, ``**`` for any depth; case-sensitive, as written). Names starting
        with a dot are skipped inside directories and by wildcards, as by the shell; symbolic links to files are
        followed, links to directories only when named or matched by the pattern's last part. Every unreadable
        directory or file is reported (exit 2), never skipped.
    as_json
        Print a JSON list of per-file results instead of problem lines.
    jobs
        Worker threads (default: one per CPU).
    """
    files, unusable = expand_paths(paths)
    for problem in unusable:
        print(problem, file=sys.stderr)
    if not files and not unusable:
        print("no *.xml files found in the given paths", file=sys.stderr)
        return 2
    invalid = 0
    results: list[ValidationResult] = []
    for result in check_paths(files, jobs):
        if not result.ok:
            invalid += 1
        if as_json:
            results.append(result)
        else:
            for problem in result.problems:
                print(problem)
    if as_json:
        print(json.dumps([r.to_json() for r in results], ensure_ascii=False, indent=2))
    print(f"{len(files) - invalid} valid, {invalid} invalid", file=sys.stderr)
    if unusable:
        # Exit 0 must mean every invoice was seen: a path that could not be read is never skipped silently.
        print(f"{len(unusable)} path(s) could not be read (listed above)", file=sys.stderr)
        return 2
    return 1 if invalid else 0
