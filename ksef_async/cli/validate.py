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

from ksef_async.cli._app import app
from ksef_async.errors import InvoiceProblem
from ksef_async.xml.validation import ValidationResult, check_invoice

__all__ = ["check_paths", "expand_paths", "validate"]


def expand_paths(paths: Iterable[Path]) -> tuple[list[Path], list[Path]]:
    """Expand directories to their ``*.xml`` files (recursively, sorted); return ``(files, missing)``."""
    files: list[Path] = []
    missing: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*.xml") if p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            missing.append(path)
    return files, missing


def _check_file(path: Path) -> ValidationResult:
    name = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        problem = InvoiceProblem(name, f"cannot read the file: {exc.strerror or exc}", None, "io")
        return ValidationResult(name, (problem,), None, None)
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
    exits 0 when every invoice is valid, 1 when any is invalid, 2 when a path does not exist.

    Parameters
    ----------
    paths
        Invoice files, or directories searched recursively for ``*.xml``.
    as_json
        Print a JSON list of per-file results instead of problem lines.
    jobs
        Worker threads (default: one per CPU).
    """
    files, missing = expand_paths(paths)
    for path in missing:
        print(f"{path}: no such file or directory", file=sys.stderr)
    if missing:
        return 2
    if not files:
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
    return 1 if invalid else 0
