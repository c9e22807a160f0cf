"""Print, check or rewrite tests/public_api.txt: the sorted public names (``__all__``) of each public module.

The file's ``[module]`` headers say which modules are public (CONTRIBUTING.md, "Public API"); this tool fills each
section from the module's ``__all__``:

    python tools/public_api.py           # print the current surface
    python tools/public_api.py --check   # exit 1 when the file differs (what tests/test_public_api_surface.py checks)
    python tools/public_api.py --write   # rewrite the file after a deliberate change of the public API
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

SURFACE = Path(__file__).resolve().parents[1] / "tests" / "public_api.txt"


def public_modules(text: str) -> list[str]:
    """The modules named by the ``[module]`` headers of the surface file, in file order."""
    return [line[1:-1] for line in text.splitlines() if line.startswith("[") and line.endswith("]")]


def render(modules: list[str]) -> str:
    """The surface file for ``modules``: a header per module, then its ``__all__`` sorted, one name a line."""
    out = [
        "# Public API: the __all__ of each public module; change it deliberately: python tools/public_api.py --write"
    ]
    for name in modules:
        module = importlib.import_module(name)
        out += ["", f"[{name}]", *sorted(module.__all__)]
    return "\n".join(out) + "\n"


def main() -> int:
    """Run the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true")
    group.add_argument("--write", action="store_true")
    args = parser.parse_args()
    current = SURFACE.read_text(encoding="utf-8")
    wanted = render(public_modules(current))
    if args.write:
        SURFACE.write_text(wanted, encoding="utf-8")
    elif args.check:
        return int(wanted != current)
    else:
        sys.stdout.write(wanted)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
