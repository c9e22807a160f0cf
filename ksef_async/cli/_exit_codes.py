"""The one table of exit codes: shown at the end of ``ksef-async --help`` and generated into the documentation."""

from __future__ import annotations

from typing import Final

from ksef_async.core.status_service import ServiceState

__all__ = [
    "EXIT_CODES",
    "EXIT_INTERRUPTED",
    "EXIT_LOCAL_IO",
    "EXIT_OK",
    "EXIT_REJECTED",
    "EXIT_USAGE",
    "STATE_EXIT_CODES",
    "STATUS_SERVICE_EXIT_CODES",
    "exit_codes_markdown",
    "exit_codes_text",
]

# Defined here, imported by the commands: ``--help`` shows this table without importing any command.
EXIT_OK: Final = 0
"""Every invoice accepted (or the command did what was asked)."""
EXIT_REJECTED: Final = 1
"""Some invoice rejected or invalid, or KSeF refused the operation."""
EXIT_USAGE: Final = 2
"""Bad options or configuration, unreadable inputs, failed login."""
EXIT_INTERRUPTED: Final = 3
"""A batch command was interrupted; its state directory lets ``resume`` finish."""
EXIT_LOCAL_IO: Final = 4
"""A local file could not be read or written; what KSeF accepted stays accepted."""

STATE_EXIT_CODES: Final = {
    ServiceState.AVAILABLE: 0,
    ServiceState.MAINTENANCE: 3,
    ServiceState.FAILURE: 4,
    ServiceState.TOTAL_FAILURE: 5,
    ServiceState.UNKNOWN: 6,
}
"""Exit code of ``ksef-async status`` (no reference) per state."""

EXIT_CODES: Final[tuple[tuple[int, str], ...]] = (
    (EXIT_OK, "done: every invoice accepted (a KSeF duplicate counts), or the command did what was asked"),
    (EXIT_REJECTED, "some invoice rejected or invalid, or KSeF refused or failed the operation"),
    (
        EXIT_USAGE,
        "usage or configuration: bad options, unreadable inputs, unusable keys, failed login, a missing secret",
    ),
    (
        EXIT_INTERRUPTED,
        (
            "interrupted (SIGINT/SIGTERM): batch state saved, 'ksef-async resume DIR' finishes it (nothing was sent "
            "when interrupted before the plan existed)"
        ),
    ),
    (
        EXIT_LOCAL_IO,
        (
            "a local file could not be read or written (disk full, permissions): the message names the path; what KSeF "
            "accepted stays accepted"
        ),
    ),
)
"""Every command's exit codes."""

STATUS_SERVICE_EXIT_CODES: Final[tuple[tuple[int, str], ...]] = tuple(
    (code, state.value) for state, code in sorted(STATE_EXIT_CODES.items(), key=lambda item: item[1])
)
"""``ksef-async status`` without a reference number: the status service's state (2 is still a usage error)."""


def exit_codes_text() -> str:
    """The table as a Markdown list (the epilogue of ``ksef-async --help``, which renders Markdown)."""
    lines = ["Exit codes:", ""]
    lines += [f"- {code}: {meaning}" for code, meaning in EXIT_CODES]
    states = ", ".join(f"{code} {state}" for code, state in STATUS_SERVICE_EXIT_CODES)
    lines.append(f"- 'ksef-async status' without a reference: {states}")
    return "\n".join(lines)


def exit_codes_markdown() -> str:
    """The table as Markdown (the documentation's exit-code page)."""
    rows = ["| code | meaning |", "|---|---|"]
    rows += [f"| {code} | {meaning} |" for code, meaning in EXIT_CODES]
    states = ["| code | state |", "|---|---|"] + [
        f"| {code} | `{state}` |" for code, state in STATUS_SERVICE_EXIT_CODES
    ]
    return (
        "Every command:\n\n"
        + "\n".join(rows)
        + "\n\n`ksef-async status` without a reference number tells the status service's state (2 is still a "
        "usage error; `UNKNOWN` means the service could not be read and says nothing about KSeF):\n\n"
        + "\n".join(states)
        + "\n"
    )
