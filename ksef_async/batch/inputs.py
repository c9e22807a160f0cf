"""Where invoices come from: paths (files, directories, globs), bytes, or iterables of (name, bytes), read lazily.

Duplicates are reported, not silently dropped: a second input with the same archive name (the file's base name)
or the same SHA-256 as an earlier one gets an `InvoiceProblem` (rule ``duplicate-name`` or ``duplicate``), which
`ksef_async.batch.prepare` treats like any invalid invoice: it stops the batch by default, or is left out and
listed in the plan's ``skipped`` with ``on_invalid="skip"``. Identical bytes would be rejected by KSeF as a
duplicate anyway; two different invoices under one name would be ambiguous in the per-invoice results, which KSeF
reports by ``invoiceFileName``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, Iterable, Iterator
from pathlib import Path
from typing import TypeAlias

import attrs

from ksef_async.batch.selection import Sized, read_invoice_file, select_sized
from ksef_async.errors import ConfigurationError, InvoiceProblem

__all__ = [
    "MAX_FILE_NAME",
    "DuplicateCheck",
    "InputItem",
    "Inputs",
    "InvoiceInput",
    "PendingFile",
    "expand_paths",
    "iter_inputs",
    "iter_sources",
    "read_file_input",
]

MAX_FILE_NAME = 128
"""``invoiceFileName`` maxLength in the spec: longer archive names could not be matched to results."""


@attrs.frozen
class InvoiceInput:
    """One invoice to send: its archive name, exact bytes and where they came from.

    Attributes:
        name: Its file name in the archive.
        data: Its exact bytes (not shown in reprs).
        source: The file it was read from, if any (kept in the plan so a resume can read it again).
    """

    name: str
    data: bytes = attrs.field(repr=False)
    source: str | None = None


@attrs.frozen
class PendingFile:
    """An invoice file selected but not read yet: a pool worker reads it (`read`), so reads run on every core.

    Attributes:
        name: Its file name in the archive.
        path: The file.
        size: Its size when it was selected (bounds the read-ahead; `read` enforces the real limit).
    """

    name: str
    path: str
    size: int

    def read(self) -> InvoiceInput:
        """Read the file (refused by type and size before reading).

        Raises:
            UnusableFileError: The file cannot be opened, is not a regular file, or is too large.
        """
        return read_file_input(self.name, self.path)


def read_file_input(name: str, path: str) -> InvoiceInput:
    """Read the invoice file ``path`` as ``name`` (see `PendingFile.read`, which raises the same)."""
    return InvoiceInput(name, read_invoice_file(path), path)


InputItem: TypeAlias = "str | os.PathLike[str] | bytes | tuple[str, bytes] | InvoiceInput"
"""One input: a path (file, directory or glob), unnamed bytes, a (name, bytes) pair or an `InvoiceInput`."""
Inputs: TypeAlias = "InputItem | Iterable[InputItem] | AsyncIterable[InputItem]"
"""What `ksef_async.batch.prepare.prepare_batch` accepts: one input, or a sync or async iterable of them."""


def expand_paths(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield the invoice files ``path`` names: itself, the ``*.xml`` files under a directory, or a glob's matches.

    Directories are walked recursively and yield ``.xml`` files (any case) in sorted order; globs are expanded
    with ``**`` support, sorted (`ksef_async.batch.selection.select_files`).

    Raises:
        ConfigurationError: Nothing exists at ``path`` and, as a glob, it matches no file; or some directory
            cannot be searched or some ``*.xml`` entry is not a readable regular file (every one is named:
            sending part of a directory silently would leave invoices out).
    """
    for found, _ in _selected(path):
        yield Path(found)


def _selected(path: str | os.PathLike[str]) -> list[Sized]:
    files, problems = select_sized([path])
    if problems:
        raise ConfigurationError("; ".join(str(p) for p in problems))
    return files


def iter_inputs(inputs: InputItem | Iterable[InputItem]) -> Iterator[InvoiceInput]:
    """Yield every invoice of ``inputs`` lazily (a file is read when its turn comes).

    Unnamed bytes are named ``invoice-00001.xml`` and on by their position among the unnamed ones.

    Raises:
        ConfigurationError: A path names nothing or cannot be read, or an item is of an unknown type.
    """
    for item in iter_sources(inputs):
        # Refused by type and size before reading (a FIFO or a huge file never stalls or fills memory).
        yield item.read() if isinstance(item, PendingFile) else item


def iter_sources(inputs: InputItem | Iterable[InputItem]) -> Iterator[InvoiceInput | PendingFile]:
    """Like `iter_inputs`, but files are yielded unread, as `PendingFile`: whoever describes them reads them.

    Raises:
        ConfigurationError: A path names nothing, or an item is of an unknown type.
    """
    items: Iterable[InputItem]
    items = [inputs] if isinstance(inputs, (str, bytes, os.PathLike, tuple, InvoiceInput)) else inputs
    unnamed = 0
    for entry in items:
        item: object = entry  # checked at run time: callers may pass anything
        if isinstance(item, InvoiceInput):
            yield item
        elif isinstance(item, (bytes, bytearray, memoryview)):
            unnamed += 1
            yield InvoiceInput(f"invoice-{unnamed:05d}.xml", bytes(item))
        elif isinstance(item, tuple):
            name, data = _pair(item)
            yield InvoiceInput(name, data)
        elif isinstance(item, (str, os.PathLike)):
            for path, size in _selected(item):
                yield PendingFile(os.path.basename(path), path, size)  # noqa: PTH119 - a string, not a Path
        else:
            msg = f"cannot read invoices from a {type(item).__name__}; give paths, bytes or (name, bytes) pairs"
            raise ConfigurationError(msg)


def _pair(item: tuple[object, ...]) -> tuple[str, bytes]:
    if len(item) == 2 and isinstance(item[0], str) and isinstance(item[1], (bytes, bytearray, memoryview)):  # noqa: PLR2004
        return item[0], bytes(item[1])
    msg = "an invoice pair must be (name: str, data: bytes)"
    raise ConfigurationError(msg)


@attrs.define
class DuplicateCheck:
    """Remember archive names and SHA-256 hashes seen in one send and report repeats."""

    _names: dict[str, str] = attrs.field(factory=dict)  # archive name -> source (or name)
    _hashes: dict[str, str] = attrs.field(factory=dict)  # sha256 -> archive name

    def check(self, name: str, sha256: str, source: str | None = None) -> InvoiceProblem | None:
        """Record an invoice; return a problem if its name or content repeats an earlier one (then nothing is kept)."""
        shown = source or name
        if len(name) > MAX_FILE_NAME:
            reason = f"file name is {len(name)} characters; KSeF keeps at most {MAX_FILE_NAME}"
            return InvoiceProblem(shown, reason, None, "name")
        if not name or name.startswith("/") or "\\" in name:
            return InvoiceProblem(shown, f"{name!r} cannot name a file in the archive", None, "name")
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            # A file name whose bytes are not UTF-8 (surrogate-escaped by os.fsdecode) cannot be an archive
            # entry name or an invoiceFileName: refused for this file, with the reason, instead of a traceback.
            shown_name = name.encode("utf-8", "backslashreplace").decode("utf-8")
            return InvoiceProblem(
                shown.encode("utf-8", "backslashreplace").decode("utf-8"),
                f"file name {shown_name!r} is not valid UTF-8; rename the file",
                None,
                "name",
            )
        first = self._hashes.get(sha256)
        if first is not None:
            return InvoiceProblem(shown, f"identical to {first} (same SHA-256 {sha256})", None, "duplicate")
        earlier = self._names.get(name)
        if earlier is not None:
            return InvoiceProblem(
                shown, f"another invoice ({earlier}) already has the file name {name!r}", None, "duplicate-name"
            )
        self._names[name] = shown
        self._hashes[sha256] = name
        return None
