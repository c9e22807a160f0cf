"""MkDocs hook: fills the generated pages (CLI reference, Python API reference, exit codes) from the code at build."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["api_reference", "cli_reference", "on_page_markdown"]

_CLI_MARKER = "<!-- generated: cli-reference -->"
_API_MARKER = "<!-- generated: api-reference -->"
_EXIT_MARKER = "<!-- generated: exit-codes -->"


def cli_reference() -> str:
    """Return the reference of every ``ksef-async`` command, rendered by cyclopts from the commands themselves."""
    from ksef_async.cli._commands import app  # noqa: PLC0415 - the cli extra is needed only here

    return app.generate_docs(output_format="markdown", heading_level=2)


def api_reference() -> str:
    """Return one mkdocstrings directive per public name of ``ksef_async`` (its ``__all__``), by defining module.

    The module comes from the package's lazy export map, not from ``obj.__module__``: a type alias such as
    ``Credentials`` (a union) reports ``types`` there.
    """
    package = importlib.import_module("ksef_async")
    exports: dict[str, str] = package._EXPORTS  # noqa: SLF001 - the map the package itself resolves names by
    lines: list[str] = []
    for name in sorted(package.__all__, key=str.lower):
        if name.startswith("_") or name not in exports:
            continue
        # Renamed exports are written "module:attribute".
        module_name, _, attribute = exports[name].partition(":")
        attribute = attribute or name
        lines.append(f"::: {module_name}.{attribute}\n    options:\n      heading: {name}\n      toc_label: {name}\n")
    return "\n".join(lines)


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:  # noqa: ARG001 - the hook's signature
    """Replace the markers of generated content."""
    if _CLI_MARKER in markdown:
        markdown = markdown.replace(_CLI_MARKER, cli_reference())
    if _API_MARKER in markdown:
        markdown = markdown.replace(_API_MARKER, api_reference())
    if _EXIT_MARKER in markdown:
        from ksef_async.cli._exit_codes import exit_codes_markdown  # noqa: PLC0415 - the cli extra

        markdown = markdown.replace(_EXIT_MARKER, exit_codes_markdown())
    return markdown
